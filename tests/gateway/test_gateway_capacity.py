"""Gateway mode's local tier bound (`--cache-capacity-gb`, S3-FIFO over records; ADR 15
"Capacity", docs/gateway.md "Capacity") and its `/metrics` counters, against a real SeaweedFS
behind the byte-counting relay."""

import os
import re
import subprocess
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import weed_bin  # noqa: F401  (skips the module when there is no weed)

KiB = 1 << 10
MiB = 1 << 20
# What the data directory may hold past the capacity, per shard (docs/gateway.md "Capacity"):
# the engine preallocates volume space 64 MiB ahead of the write position, plus the journal,
# the index snapshot and partial punch granules.
SLACK_PER_SHARD_BYTES = 64 * MiB + 8 * MiB


def metrics(g):
    with urllib.request.urlopen(g.endpoint + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def total(m, family):
    """Sum of a family's samples (all labels)."""
    return sum(v for k, v in m.items() if k == family or k.startswith(family + "{"))


def put_many(weed, bucket, prefix, n, size):
    cw = weed.client()
    objs = {}
    for i in range(n):
        k = f"{prefix}/{i:05d}"
        v = os.urandom(size)
        cw.put_object(Bucket=bucket, Key=k, Body=v)
        objs[k] = v
    return objs


def read_all(c, bucket, objs):
    for k, v in objs.items():
        assert c.get_object(Bucket=bucket, Key=k)["Body"].read() == v, k


def served_without_upstream(c, bucket, keys):
    out = []
    for k in keys:
        try:
            c.get_object(Bucket=bucket, Key=k)["Body"].read()
            out.append(k)
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 503, e.response
            assert e.response["Error"]["Code"] == "ServiceUnavailable", e.response
    return out


def du_bytes(path):
    r = subprocess.run(["du", "-s", "-B1", path], capture_output=True, text=True, check=True)
    return int(r.stdout.split()[0])


def settle(g, want_bytes, timeout_s=10.0):
    """Waits until the engine's live bytes are at most `want_bytes` (fills commit in the
    background); returns the last scrape."""
    deadline = time.time() + timeout_s
    while True:
        m = metrics(g)
        if total(m, "bale_shard_live_bytes") <= want_bytes or time.time() > deadline:
            return m
        time.sleep(0.2)


def test_data_dir_bounded_after_3x_capacity_across_a_restart(weed, bucket, relay, gateway_factory):
    cap = 16 * MiB
    size = 256 * KiB
    objs = put_many(weed, bucket, "fill", 3 * cap // size, size)  # 3x capacity
    keys = list(objs)
    g = gateway_factory(relay.endpoint, ["--cache-capacity-gb", str(cap / (1 << 30)), "--metrics-public"], cores=1)
    c = g.client()
    half = len(keys) // 2
    read_all(c, bucket, {k: objs[k] for k in keys[:half]})
    time.sleep(1.0)
    g.restart()  # the entries stored before are counted again at the first fill
    c = g.client()
    read_all(c, bucket, {k: objs[k] for k in keys[half:]})
    m = settle(g, cap + size)
    shards = max(1, int(total(m, "bale_shards")))
    live = total(m, "bale_shard_live_bytes")
    # The queues bound the live bytes: capacity plus at most one entry per shard (the newest
    # entry is never evicted before it is served).
    assert live <= cap + shards * size, (live, cap)
    assert total(m, "bale_gateway_local_bytes") <= cap + shards * size, m
    assert total(m, "bale_gateway_evictions_total") > 0, m
    # What the disk holds: evicted records are punched out in the background.
    deadline = time.time() + 15
    while True:
        used = du_bytes(g.data_dirs[0])
        if used <= cap + shards * SLACK_PER_SHARD_BYTES or time.time() > deadline:
            break
        time.sleep(0.5)
    assert used <= cap + shards * SLACK_PER_SHARD_BYTES, (used, cap)
    # The newest keys are local: served with the upstream gone.
    relay.down()
    served = served_without_upstream(c, bucket, keys[-8:])
    assert len(served) == 8, served


def test_hot_set_survives_a_scan_larger_than_capacity(weed, bucket, relay, gateway_factory):
    cap = 4 * MiB
    size = 64 * KiB
    hot = put_many(weed, bucket, "hot", 16, size)  # 1 MiB
    cold = put_many(weed, bucket, "cold", 128, size)  # 8 MiB, 2x capacity
    g = gateway_factory(relay.endpoint, ["--cache-capacity-gb", str(cap / (1 << 30)), "--metrics-public"], cores=1)
    c = g.client()
    for _ in range(3):  # filled, then read again: their access counters say "hot"
        read_all(c, bucket, hot)
    time.sleep(0.5)
    read_all(c, bucket, cold)  # one pass over cold keys, twice the capacity
    time.sleep(1.0)
    down_before, _ = relay.counts()
    read_all(c, bucket, hot)
    down_after, _ = relay.counts()
    # Plain FIFO evicts the hot set here and refetches all 16 objects (1 MiB).
    assert down_after - down_before < size, (down_after - down_before)
    relay.down()
    assert len(served_without_upstream(c, bucket, list(hot))) == len(hot)
    m = metrics(g)
    assert total(m, "bale_gateway_local_bytes") <= cap + size, m


def test_ghost_hit_readmits_to_main(weed, bucket, relay, gateway_factory):
    cap = 4 * MiB
    size = 64 * KiB
    x = put_many(weed, bucket, "x", 1, size)
    scan1 = put_many(weed, bucket, "scan1", 96, size)  # 6 MiB
    scan2 = put_many(weed, bucket, "scan2", 96, size)
    g = gateway_factory(relay.endpoint, ["--cache-capacity-gb", str(cap / (1 << 30)), "--metrics-public"], cores=1)
    c = g.client()
    read_all(c, bucket, x)  # read once: small queue, counter 0
    time.sleep(0.3)
    read_all(c, bucket, scan1)  # x leaves through the small queue into the ghost queue
    time.sleep(0.5)
    ghost_before = total(metrics(g), "bale_gateway_ghost_hits_total")
    down_before, _ = relay.counts()
    read_all(c, bucket, x)  # a miss again (evicted), its key is a ghost: admitted to main
    down_after, _ = relay.counts()
    assert down_after - down_before >= size, "x was not evicted by the first scan"
    time.sleep(0.3)
    assert total(metrics(g), "bale_gateway_ghost_hits_total") == ghost_before + 1
    read_all(c, bucket, scan2)  # a second scan: the small queue absorbs it, main keeps x
    time.sleep(0.5)
    relay.down()
    assert served_without_upstream(c, bucket, list(x)) == list(x)


def test_metrics_count_hits_misses_writes_and_upstream_errors(weed, bucket, relay, gateway_factory):
    size = 10_000
    cw = weed.client()
    cw.put_object(Bucket=bucket, Key="m/a", Body=b"a" * size)
    g = gateway_factory(relay.endpoint, ["--cache-capacity-gb", "1", "--metrics-public"], cores=1)
    c = g.client()
    m0 = metrics(g)
    assert c.get_object(Bucket=bucket, Key="m/a")["Body"].read() == b"a" * size  # miss
    time.sleep(0.3)
    m1 = metrics(g)
    assert total(m1, "bale_gateway_misses_total") == total(m0, "bale_gateway_misses_total") + 1
    assert total(m1, "bale_gateway_fill_bytes_total") == total(m0, "bale_gateway_fill_bytes_total") + size
    get_ok = 'bale_gateway_upstream_requests_total{op="GET",outcome="2xx"}'
    assert m1.get(get_ok, 0) == m0.get(get_ok, 0) + 1, m1
    assert total(m1, "bale_gateway_upstream_duration_seconds_count") > total(
        m0, "bale_gateway_upstream_duration_seconds_count")
    assert total(m1, "bale_gateway_local_bytes") == total(m0, "bale_gateway_local_bytes") + size
    assert c.get_object(Bucket=bucket, Key="m/a")["Body"].read() == b"a" * size  # hit
    m2 = metrics(g)
    assert total(m2, "bale_gateway_hits_total") == total(m1, "bale_gateway_hits_total") + 1
    assert total(m2, "bale_gateway_misses_total") == total(m1, "bale_gateway_misses_total")
    assert m2.get(get_ok, 0) == m1.get(get_ok, 0)
    c.put_object(Bucket=bucket, Key="m/w", Body=b"w" * 3000)  # write-through
    m3 = metrics(g)
    put_ok = 'bale_gateway_upstream_requests_total{op="PUT",outcome="2xx"}'
    assert m3.get(put_ok, 0) == m2.get(put_ok, 0) + 1, m3
    assert total(m3, "bale_gateway_kept_write_bytes_total") == total(
        m2, "bale_gateway_kept_write_bytes_total") + 3000
    relay.down()  # a miss with the upstream gone: 503, one upstream error counted
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket=bucket, Key="m/absent-here")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert e.value.response["Error"]["Code"] == "ServiceUnavailable"
    m4 = metrics(g)
    assert total(m4, "bale_gateway_upstream_errors_total") >= total(
        m3, "bale_gateway_upstream_errors_total") + 1
    failed = 'bale_gateway_upstream_requests_total{op="GET",outcome="error"}'
    assert m4.get(failed, 0) >= m3.get(failed, 0) + 1, m4
    assert total(m4, "bale_gateway_misses_total") == total(m3, "bale_gateway_misses_total")
