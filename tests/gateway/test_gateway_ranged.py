"""Ranged misses of big objects (issue 15, part 5): the aligned blocks around the range are
fetched, the client is answered as soon as the requested bytes arrived (not after the whole
block), the rest of the block is stored in the background, concurrent misses of the same
block fetch it once, and a fill cut after the range never leaves a torn block.

The upstream is a real SeaweedFS behind conftest's `Relay` (throttle, cut, byte counts); the
gateway's own `/metrics` counts its upstream GETs."""

import concurrent.futures
import os
import threading
import time
import urllib.request

import pytest

from conftest import weed_bin  # noqa: F401  (skips the module when there is no weed)

MiB = 1 << 20


def upstream_gets(g):
    """The gateway's upstream GETs answered 2xx so far."""
    with urllib.request.urlopen(g.endpoint + "/metrics", timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith('bale_gateway_upstream_requests_total{op="GET",outcome="2xx"}'):
            return int(float(line.split()[-1]))
    return 0


def ranged(c, bucket, key, rng):
    r = c.get_object(Bucket=bucket, Key=key, Range=rng)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206, rng
    return r


def wait_down_bytes(relay, at_least, timeout_s=20):
    deadline = time.time() + timeout_s
    while relay.counts()[0] < at_least:
        assert time.time() < deadline, f"only {relay.counts()[0]} of {at_least} bytes came"
        time.sleep(0.05)


def test_ranged_miss_answered_before_its_block_arrives(weed, bucket, relay, gateway_factory):
    """4 KiB of an 8 MiB block sent at 4 MiB/s: answered long before the 2 s the block takes;
    the block is stored meanwhile, and the next read inside it is a hit."""
    data = os.urandom(24 * MiB)
    weed.client().put_object(Bucket=bucket, Key="stream/24m", Body=data)
    g = gateway_factory(relay.endpoint, ["--upstream-block-kb", "8192", "--metrics-public"], cores=1)
    c = g.client()
    relay.rate_bytes_per_s = 4 * MiB
    off = 8 * MiB + 4096
    t0 = time.monotonic()
    r = ranged(c, bucket, "stream/24m", f"bytes={off}-{off + 4095}")
    got = r["Body"].read()
    took = time.monotonic() - t0
    assert got == data[off:off + 4096]
    assert r["ContentRange"] == f"bytes {off}-{off + 4095}/{len(data)}"
    assert took < 1.0, f"the answer waited for the block: {took:.2f} s"
    # The rest of the block keeps coming and is stored; then the block serves locally.
    wait_down_bytes(relay, 8 * MiB)
    relay.rate_bytes_per_s = None
    gets = upstream_gets(g)
    deadline = time.time() + 10
    while True:  # the background commit
        o = 16 * MiB - 4096
        r = ranged(c, bucket, "stream/24m", f"bytes={o}-{o + 4095}")
        assert r["Body"].read() == data[o:o + 4096]
        if upstream_gets(g) == gets or time.time() > deadline:
            break
        gets = upstream_gets(g)
        time.sleep(0.2)
    down0 = relay.counts()[0]
    r = ranged(c, bucket, "stream/24m", f"bytes={off + 100}-{off + 199}")
    assert r["Body"].read() == data[off + 100:off + 200]
    assert upstream_gets(g) == gets and relay.counts()[0] == down0, "a read inside the stored block went upstream"


def test_ranged_miss_bytes_exact(weed, bucket, relay, gateway_factory):
    """First and last byte, ranges across one and two block edges, suffix and open ranges, each
    a miss or partly a miss: bytes and Content-Range exact."""
    size = 5 * MiB + 77
    data = os.urandom(size)
    weed.client().put_object(Bucket=bucket, Key="exact/5m", Body=data)
    g = gateway_factory(relay.endpoint, ["--upstream-block-kb", "1024"], cores=1)
    c = g.client()
    cases = [
        ("bytes=0-0", 0, 1),
        (f"bytes={size - 1}-{size - 1}", size - 1, size),
        (f"bytes={MiB - 10}-{MiB + 9}", MiB - 10, MiB + 10),  # one edge, block 0 local already
        (f"bytes={2 * MiB - 5}-{4 * MiB + 4}", 2 * MiB - 5, 4 * MiB + 5),  # blocks 1-4
        ("bytes=-100", size - 100, size),
        (f"bytes={5 * MiB - 3}-", 5 * MiB - 3, size),
        (f"bytes={3 * MiB}-{3 * MiB}", 3 * MiB, 3 * MiB + 1),
        (f"bytes={size - 5}-{size + 1000}", size - 5, size),  # past the end: cut to it
    ]
    for rng, s, e in cases:
        r = ranged(c, bucket, "exact/5m", rng)
        got = r["Body"].read()
        assert got == data[s:e], rng
        assert r["ContentRange"] == f"bytes {s}-{e - 1}/{size}", rng
        assert r["ContentLength"] == e - s, rng
    # A second gateway, everything a miss of an unknown object, across two edges at once.
    g2 = gateway_factory(relay.endpoint, ["--upstream-block-kb", "1024"], cores=1)
    c2 = g2.client()
    r = ranged(c2, bucket, "exact/5m", f"bytes={MiB - 1}-{3 * MiB}")
    assert r["Body"].read() == data[MiB - 1:3 * MiB + 1]
    r = ranged(c2, bucket, "exact/5m", "bytes=-1")
    assert r["Body"].read() == data[-1:]


def test_concurrent_same_block_misses_fetched_once(weed, bucket, relay, gateway_factory):
    """Six readers of six ranges inside one block, at once, while the block comes slowly: one
    upstream GET for it, every answer exact; the same for an object not known yet."""
    data = os.urandom(16 * MiB)
    weed.client().put_object(Bucket=bucket, Key="conc/16m", Body=data)
    g = gateway_factory(relay.endpoint, ["--upstream-block-kb", "4096", "--metrics-public"], cores=2)
    c = g.client()
    for attempt, block in (("unknown object", 2), ("known object", 3)):
        relay.rate_bytes_per_s = 8 * MiB  # a 4 MiB block takes 0.5 s
        gets0, down0 = upstream_gets(g), relay.counts()[0]
        start = threading.Barrier(6)

        def read(i, block=block):
            cc = g.client()
            o = block * 4 * MiB + i * 600_000
            start.wait()
            return cc.get_object(Bucket=bucket, Key="conc/16m", Range=f"bytes={o}-{o + 4095}")["Body"].read(), o

        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            outs = list(ex.map(read, range(6)))
        for got, o in outs:
            assert got == data[o:o + 4096], attempt
        relay.rate_bytes_per_s = None
        assert upstream_gets(g) - gets0 == 1, f"{attempt}: {upstream_gets(g) - gets0} upstream GETs"
        assert relay.counts()[0] - down0 < 5 * MiB, attempt
        wait_down_bytes(relay, down0 + 4 * MiB)
        time.sleep(0.3)  # the background commit
    assert c.get_object(Bucket=bucket, Key="conc/16m", Range="bytes=0-9")["Body"].read() == data[:10]


def test_block_fill_cut_after_the_range_stores_nothing(weed, bucket, relay, gateway_factory):
    """The upstream goes away after the requested bytes but before the block's end: the reader
    got exact bytes, no torn block is stored, and the next read fetches the block again."""
    data = os.urandom(12 * MiB)
    weed.client().put_object(Bucket=bucket, Key="cut/12m", Body=data)
    g = gateway_factory(relay.endpoint, ["--upstream-block-kb", "4096", "--metrics-public"], cores=1)
    c = g.client()
    relay.cut_after_bytes = 1 * MiB  # the head and ~1 MiB of block 1, then both sides shut
    off = 4 * MiB + 1000
    r = ranged(c, bucket, "cut/12m", f"bytes={off}-{off + 4095}")
    assert r["Body"].read() == data[off:off + 4096]
    # The reader is answered once its range arrived; the relay cuts the rest of the block
    # after that, on its own thread.
    deadline = time.time() + 5
    while relay.cuts == 0 and time.time() < deadline:
        time.sleep(0.02)
    assert relay.cuts == 1
    relay.cut_after_bytes = None
    time.sleep(0.3)  # the fill notices the cut and gives up
    gets0, down0 = upstream_gets(g), relay.counts()[0]
    o = 8 * MiB - 4096  # the end of block 1: it was never stored, so it is fetched again
    deadline = time.time() + 10
    while True:
        try:
            r = ranged(c, bucket, "cut/12m", f"bytes={o}-{o + 4095}")
            break
        except Exception:  # the failed fill's flight may still be ending
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    assert r["Body"].read() == data[o:o + 4096]
    assert upstream_gets(g) - gets0 >= 1, "a torn block was served locally"
    assert relay.counts()[0] - down0 >= 4 * MiB - 4096
    wait_down_bytes(relay, down0 + 4 * MiB)
    time.sleep(0.3)
    gets1 = upstream_gets(g)
    r = ranged(c, bucket, "cut/12m", f"bytes={off}-{off + 4095}")
    assert r["Body"].read() == data[off:off + 4096]
    assert upstream_gets(g) == gets1, "the block fetched again was not stored"
