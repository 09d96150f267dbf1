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
    # Every GET of a stored key went to the cache or the device.
    looked = sum(total(after, n) - total(before, n) for n in ("bale_cache_hits_total", "bale_cache_misses_total"))
    assert looked >= 4
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
