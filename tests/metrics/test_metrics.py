"""GET /metrics against a real bale: exact counter movement per operation and status, errors
by code, histogram shape, engine counters, auth rules, the second listener, OpenMetrics, and
request ids in the log."""

import json
import math
import re
import time
import uuid

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_prom

import baleproc
import sigv4
from conftest import TOKEN, s3_client

AUTH = {"Authorization": f"Bearer {TOKEN}"}
LAT_BOUNDS = ["0.000025", "0.00005", "0.000075", "0.0001", "0.00015", "0.00025", "0.0005", "0.001",
              "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "1.0", "2.5", "10.0", "+Inf"]


def scrape(endpoint, headers=AUTH):
    r = requests.get(endpoint + "/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for fam in parse_prom(r.text):
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = s.value
    return samples, r.text


def val(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name, **match):
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == w for k, w in match.items()))


def test_counters_move_by_exactly_the_requests_made(bale):
    s3 = s3_client(bale)
    bucket = "m-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=bucket)
    bodies = {f"k{i}": bytes([65 + i]) * (1000 + i) for i in range(3)}
    before, _ = scrape(bale.endpoint)
    for k, b in bodies.items():
        s3.put_object(Bucket=bucket, Key=k, Body=b)
    for k in ["k0", "k1", "k2", "k0"]:
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == bodies[k]
    s3.head_object(Bucket=bucket, Key="k1")
    s3.head_object(Bucket=bucket, Key="k2")
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="missing")
    with pytest.raises(Exception) as e:
        s3.head_object(Bucket=bucket, Key="missing")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k0", "k1", "k2"]
    s3.delete_object(Bucket=bucket, Key="k0")
    s3.delete_object(Bucket=bucket, Key="k1")
    after, _ = scrape(bale.endpoint)

    want = {("PutObject", "200"): 3, ("GetObject", "200"): 4, ("HeadObject", "200"): 2,
            ("GetObject", "404"): 1, ("HeadObject", "404"): 1, ("ListObjectsV2", "200"): 1,
            ("DeleteObject", "204"): 2, ("Metrics", "200"): 1}
    ops = {op for op, _ in want}
    got = {}
    for (name, labels), v in after.items():
        if name == "bale_requests_total":
            d = v - before.get((name, labels), 0)
            if d:
                got[(dict(labels)["op"], dict(labels)["status"])] = d
    assert got == want
    # The latency histogram counts the same requests, per op.
    for op in ops:
        n = sum(c for (o, _), c in want.items() if o == op)
        assert (val(after, "bale_request_duration_seconds_count", op=op)
                - val(before, "bale_request_duration_seconds_count", op=op)) == n, op
    # Errors by S3 code: the GET of a missing key is NoSuchKey (its XML body says so); the HEAD
    # has no body and is counted as NoSuchKey by bale's own code or NotFound.
    d_err = {c: total(after, "bale_s3_errors_total", code=c) - total(before, "bale_s3_errors_total", code=c)
             for c in ("NoSuchKey", "NotFound")}
    assert d_err["NoSuchKey"] >= 1 and d_err["NoSuchKey"] + d_err["NotFound"] == 2, d_err
    assert total(after, "bale_s3_errors_total") - total(before, "bale_s3_errors_total") == 2
    # Bytes: at least the bodies each way, not wildly more (heads are a few hundred bytes).
    put_bytes = sum(len(b) for b in bodies.values())
    get_bytes = sum(len(bodies[k]) for k in ["k0", "k1", "k2", "k0"])
    d_in = val(after, "bale_bytes_received_total") - val(before, "bale_bytes_received_total")
    d_out = val(after, "bale_bytes_sent_total") - val(before, "bale_bytes_sent_total")
    assert put_bytes <= d_in <= put_bytes + 16 * 2048, d_in
    assert get_bytes <= d_out <= get_bytes + 16 * 4096 + 200_000, d_out
    # Engine: 3 PUTs and 2 DELETEs are 5 journal entries; every commit was fdatasynced.
    d_commits = total(after, "bale_shard_commits_total") - total(before, "bale_shard_commits_total")
    assert d_commits == 5
    d_fsync = (total(after, "bale_fsync_duration_seconds_count")
               - total(before, "bale_fsync_duration_seconds_count"))
    assert 1 <= d_fsync <= 5
    assert (total(after, "bale_group_commit_batch_entries_sum")
            - total(before, "bale_group_commit_batch_entries_sum")) == 5
    assert total(after, "bale_shard_objects") - total(before, "bale_shard_objects") == 1
    # Cache and device: each key's first GET misses and reads the device once (a PUT does not
    # fill the cache), the second GET of k0 hits; HEADs read nothing.
    d = {n: total(after, n) - total(before, n) for n in (
        "bale_cache_hits_total", "bale_cache_misses_total", "bale_device_read_duration_seconds_count",
        "bale_device_read_bytes_total")}
    assert d["bale_cache_hits_total"] == 1 and d["bale_cache_misses_total"] == 3, d
    assert d["bale_device_read_duration_seconds_count"] == 3, d
    assert put_bytes <= d["bale_device_read_bytes_total"] <= 3 * 16384, d
    # k0 and k1 were deleted (their entries dropped); k2 is still cached.
    assert total(after, "bale_cache_bytes") >= len(bodies["k2"])
    assert total(after, "bale_shard_free_bytes") > 0


def test_histograms_are_cumulative_and_fine(bale):
    samples, text = scrape(bale.endpoint)
    hists = {}
    for (name, labels), v in samples.items():
        if name.endswith("_bucket"):
            d = dict(labels)
            le = d.pop("le")
            hists.setdefault((name[:-7], tuple(sorted(d.items()))), []).append((le, v))
    assert ("bale_request_duration_seconds", (("op", "GetObject"),)) in hists
    for (base, labels), buckets in hists.items():
        order = [le for le, _ in buckets]
        if base in ("bale_request_duration_seconds", "bale_device_read_duration_seconds",
                    "bale_fsync_duration_seconds"):
            assert order == LAT_BOUNDS, (base, order)  # 50 µs and 100 µs are distinct buckets
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), (base, labels, counts)
        assert order[-1] == "+Inf"
        assert counts[-1] == samples[(base + "_count", labels)]
        assert samples[(base + "_sum", labels)] >= 0


def test_auth_rules(bale):
    r = requests.get(bale.endpoint + "/metrics", timeout=5)
    assert r.status_code == 403
    assert "<Code>AccessDenied</Code>" in r.text
    assert re.fullmatch(r"[0-9A-F]{16}", r.headers["x-amz-request-id"])
    assert f"<RequestId>{r.headers['x-amz-request-id']}</RequestId>" in r.text
    assert "bale_requests_total" not in r.text
    for bad in ("Bearer wrong-token-0123456789abc", f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}"):
        r = requests.get(bale.endpoint + "/metrics", headers={"Authorization": bad}, timeout=5)
        assert r.status_code == 403, bad
    # SigV4 with the server's key works (as with MinIO); with a wrong secret it does not.
    hostport = f"127.0.0.1:{bale.port}"
    for secret, want in ((bale.secret_key, 200), ("not-the-secret-key", 403)):
        target, h, _ = sigv4.Signer(bale.access_key, secret, bale.region).sign_headers("GET", hostport, "/metrics")
        r = requests.get(bale.endpoint + target, headers=h, timeout=5)
        assert r.status_code == want, r.text
        if want == 200:
            assert "bale_requests_total{" in r.text
    # With a query it is a listing of a bucket named "metrics", not the endpoint.
    s3 = s3_client(bale)
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket="metrics")


def test_metrics_listen_serves_the_same(bale):
    samples, _ = scrape(bale.metrics_endpoint)
    assert val(samples, "bale_cores") == 2
    assert total(samples, "bale_requests_total", op="GetObject") >= 4
    assert requests.get(bale.metrics_endpoint + "/metrics", timeout=5).status_code == 403
    r = requests.get(bale.metrics_endpoint + "/other", headers=AUTH, timeout=5)
    assert r.status_code == 404


def test_openmetrics_when_asked(bale):
    r = requests.get(bale.endpoint + "/metrics", timeout=10, headers={
        **AUTH, "Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8,text/plain;q=0.5"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    assert r.text.endswith("# EOF\n")
    fams = {f.name: f for f in parse_om(r.text)}  # the strict OpenMetrics parser
    assert fams["bale_requests"].type == "counter"
    assert fams["bale_request_duration_seconds"].type == "histogram"
    assert any(s.name == "bale_requests_total" for s in fams["bale_requests"].samples)


def test_request_id_in_the_log_and_no_colours(bale):
    r = requests.get(bale.endpoint + "/metrics", headers=AUTH, timeout=5)
    rid = r.headers["x-amz-request-id"]
    deadline = time.time() + 5
    while time.time() < deadline and f"request_id={rid}" not in bale.log_tail(200_000):
        time.sleep(0.05)
    log = bale.log_tail(200_000)
    line = next(ln for ln in log.splitlines() if f"request_id={rid}" in ln)
    assert "path=/metrics" in line and "status=200" in line and "op=Metrics" in line, line
    assert "\x1b[" not in log  # stderr is a file: plain text


def test_public_json_logs_and_flag_limits():
    with baleproc.running(extra_args=["--metrics-public", "--log-format", "json", "--log-requests"]) as b:
        r = requests.get(b.endpoint + "/metrics", timeout=5)
        assert r.status_code == 200 and "bale_cores 1" in r.text or "bale_cores " in r.text
        rid = r.headers["x-amz-request-id"]
        deadline = time.time() + 5
        while time.time() < deadline and rid not in b.log_tail(100_000):
            time.sleep(0.05)
        lines = [json.loads(ln) for ln in b.log_tail(100_000).splitlines() if ln.startswith("{")]
        mine = [ln for ln in lines if ln.get("request_id") == rid]
        assert mine and mine[0]["status"] == 200 and mine[0]["level"] == "INFO", lines[-3:]
    for bad in (["--metrics-token", "short"], ["--metrics-token", "x" * 1025],
                ["--metrics-token", "has a space in it!!"]):
        b = baleproc.Bale(extra_args=bad)
        try:
            with pytest.raises(RuntimeError, match="metrics-token"):
                b.start(timeout_s=10)
        finally:
            b.cleanup()
    b = baleproc.Bale()
    b.extra_args = ["--metrics-listen", f"127.0.0.1:{b.port}"]
    try:
        with pytest.raises(RuntimeError, match="metrics-listen"):
            b.start(timeout_s=10)
    finally:
        b.cleanup()


def test_latency_sum_is_plausible(bale):
    s, _ = scrape(bale.endpoint)
    n = val(s, "bale_request_duration_seconds_count", op="GetObject")
    total_s = val(s, "bale_request_duration_seconds_sum", op="GetObject")
    assert n > 0 and 0 < total_s / n < 1.0 and math.isfinite(total_s)


def test_token_from_the_environment():
    token = "env-token-" + uuid.uuid4().hex
    with baleproc.running(env={"BALE_METRICS_TOKEN": token}) as b:
        ok = requests.get(b.endpoint + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert ok.status_code == 200 and "bale_requests_total" in ok.text
        assert requests.get(b.endpoint + "/metrics", headers=AUTH, timeout=5).status_code == 403


def test_open_connections_and_inflight_are_exact():
    import socket
    with baleproc.running(cores=1, extra_args=["--metrics-token", TOKEN]) as b:
        socks = [socket.create_connection(("127.0.0.1", b.port)) for _ in range(3)]
        try:
            def gauges():
                s, _ = scrape(b.endpoint)
                return val(s, "bale_open_connections"), val(s, "bale_inflight_requests")
            deadline = time.time() + 5
            while gauges()[0] != 4 and time.time() < deadline:
                time.sleep(0.05)
            # Three idle connections and the scrape's own; the scrape is the one request in flight.
            assert gauges() == (4, 1)
        finally:
            for s in socks:
                s.close()
        deadline = time.time() + 5
        while gauges()[0] != 1 and time.time() < deadline:
            time.sleep(0.05)
        assert gauges() == (1, 1)


def test_a_warning_while_serving_carries_the_request_id():
    """A request refused with 503 SlowDown (the core's one in-flight slot is held by a PUT whose
    body has not finished) logs a warning; that line names the refused request's id."""
    import socket
    with baleproc.running(cores=1, extra_args=["--max-inflight-per-core", "1"]) as b:
        s3 = s3_client(b)
        s3.create_bucket(Bucket="slow")
        hostport = f"127.0.0.1:{b.port}"
        signer = sigv4.Signer(b.access_key, b.secret_key, b.region)
        target, h, _ = signer.sign_headers("PUT", hostport, "/slow/k", headers={"Content-Length": "1000"},
                                           payload_hash=sigv4.UNSIGNED)
        holder = socket.create_connection(("127.0.0.1", b.port))
        try:
            holder.sendall(sigv4.build_request("PUT", target, h, b"x" * 10))  # 990 bytes still owed
            time.sleep(0.3)
            target, h, _ = signer.sign_headers("GET", hostport, "/slow/k")
            r = requests.get(b.endpoint + target, headers=h, timeout=5)
            assert r.status_code == 503 and "<Code>SlowDown</Code>" in r.text
            rid = r.headers["x-amz-request-id"]
            deadline = time.time() + 5
            while time.time() < deadline and f"request_id={rid}" not in b.log_tail(100_000):
                time.sleep(0.05)
            lines = [ln for ln in b.log_tail(100_000).splitlines() if f"request_id={rid}" in ln]
            assert lines and " WARN " in lines[0] and "in-flight request limit reached" in lines[0], lines
        finally:
            holder.close()


def test_metrics_port_limits(bale):
    """--metrics-listen serves 16 connections at once (more are closed at accept) and gives a
    client 5 s to send its request head."""
    import socket
    port = int(bale.metrics_endpoint.rsplit(":", 1)[1])
    req = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", port), timeout=3)
        try:
            extra.sendall(req)
            got = extra.recv(64)
        except (ConnectionResetError, BrokenPipeError):
            got = b""
        assert got == b"", got  # closed without an answer
        extra.close()
        t0 = time.time()
        idle[0].settimeout(10)
        assert idle[0].recv(64) == b""  # no request head in 5 s: closed
        assert 4.0 <= time.time() - t0 <= 7.0
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    assert requests.get(bale.metrics_endpoint + "/metrics", headers=AUTH, timeout=5).status_code == 200


def test_a_request_abandoned_mid_body_leaves_nothing_in_flight():
    import socket
    with baleproc.running(cores=1, extra_args=["--metrics-token", TOKEN]) as b:
        s3_client(b).create_bucket(Bucket="gone")
        hostport = f"127.0.0.1:{b.port}"
        signer = sigv4.Signer(b.access_key, b.secret_key, b.region)
        target, h, _ = signer.sign_headers("PUT", hostport, "/gone/k", headers={"Content-Length": "100000"},
                                           payload_hash=sigv4.UNSIGNED)
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", b.port))
            s.sendall(sigv4.build_request("PUT", target, h, b"x" * 100))
            time.sleep(0.1)
            s.close()  # the handler is dropped unfinished

        def gauges():
            s, _ = scrape(b.endpoint)
            return val(s, "bale_open_connections"), val(s, "bale_inflight_requests")
        deadline = time.time() + 5
        while gauges() != (1, 1) and time.time() < deadline:
            time.sleep(0.05)
        assert gauges() == (1, 1)  # only the scrape itself


def test_scrub_and_compaction_progress():
    with baleproc.running(cores=1, extra_args=["--metrics-public", "--scrub-interval-s", "1",
                                               "--compact-interval-s", "1"]) as b:
        s3 = s3_client(b)
        s3.create_bucket(Bucket="scrubbed")
        sizes = [5000, 70000, 300000]
        for i, n in enumerate(sizes):
            s3.put_object(Bucket="scrubbed", Key=f"k{i}", Body=bytes([i]) * n)

        def now():
            s, _ = scrape(b.endpoint, headers={})
            return s
        # A pass that started after the PUTs sees all three objects.
        start = total(now(), "bale_shard_scrub_passes_total")
        deadline = time.time() + 15
        while total(now(), "bale_shard_scrub_passes_total") < start + 2 and time.time() < deadline:
            time.sleep(0.2)
        s = now()
        assert total(s, "bale_shard_scrub_passes_total") >= start + 2
        assert total(s, "bale_shard_scrub_objects_checked_total") >= 3
        assert total(s, "bale_shard_scrub_checked_bytes_total") >= sum(sizes)
        assert total(s, "bale_shard_scrub_corrupt_objects_total") == 0
        assert total(s, "bale_shard_compaction_passes_total") >= 1
        assert val(s, "bale_shard_scrub_running", shard="0") in (0, 1)
