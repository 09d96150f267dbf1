"""Gateway read path (issue 15, part 2): big misses are served while they arrive and stored at
the same time; an upstream that fails mid-body cuts the client and leaves no local entry.

The upstream is a real SeaweedFS behind conftest's `Relay`, which can
throttle what the upstream sends and cut a connection after a number of response bytes."""

import concurrent.futures
import hashlib
import os
import threading
import time

import pytest

from conftest import weed_bin  # noqa: F401  (skips the module when there is no weed)

MiB = 1 << 20


def sha(b):
    return hashlib.sha256(b).hexdigest()


def test_big_miss_served_while_it_arrives(weed, bucket, relay, gateway_factory):
    data = os.urandom(64 * MiB)
    weed.client().put_object(Bucket=bucket, Key="big/64m", Body=data)
    g = gateway_factory(relay.endpoint)
    c = g.client()
    relay.rate_bytes_per_s = 24 * MiB  # the full transfer takes >= 2.6 s
    t0 = time.monotonic()
    r = c.get_object(Bucket=bucket, Key="big/64m")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert r["ContentLength"] == len(data)
    first = r["Body"].read(64 << 10)
    ttfb = time.monotonic() - t0
    rest = r["Body"].read()
    total = time.monotonic() - t0
    got = first + rest
    assert len(got) == len(data) and sha(got) == sha(data)
    assert total >= 2.0, f"the throttle did not hold: {total:.2f}s"
    # Before streaming, the first byte came after the whole transfer and the commit.
    assert ttfb < total / 4, f"first byte after {ttfb:.3f}s of {total:.3f}s"
    relay.rate_bytes_per_s = None
    # It was stored while served: the next read is a hit (no new upstream bytes).
    down0, _ = relay.counts()
    assert 64 * MiB <= down0 < 66 * MiB, down0
    again = c.get_object(Bucket=bucket, Key="big/64m")["Body"].read()
    assert sha(again) == sha(data)
    r = c.get_object(Bucket=bucket, Key="big/64m", Range="bytes=1000-1999")
    assert r["Body"].read() == data[1000:2000]
    assert relay.counts()[0] == down0, "the second read went upstream"


def read_all_or_error(c, bucket, key):
    """(bytes read, error or None): a cut body must not look complete."""
    r = c.get_object(Bucket=bucket, Key=key)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    n = r["ContentLength"]
    got = b""
    try:
        while True:
            d = r["Body"].read(1 << 20)
            if not d:
                break
            got += d
    except Exception as e:  # botocore's IncompleteRead / ResponseStreamingError, or a reset
        return n, got, e
    return n, got, None


def test_upstream_cut_mid_body_aborts_client_and_stores_nothing(weed, bucket, relay,
                                                                gateway_factory):
    data = os.urandom(8 * MiB + 123)
    weed.client().put_object(Bucket=bucket, Key="cut/8m", Body=data)
    g = gateway_factory(relay.endpoint)
    c = g.client()
    relay.cut_after_bytes = 3 * MiB  # head + ~3 MiB of body, then the upstream is gone
    n, got, e = read_all_or_error(c, bucket, "cut/8m")
    assert relay.cuts == 1
    assert n == len(data)
    # Never a complete-looking short 200: an error, or fewer bytes than announced.
    assert e is not None or len(got) < n, "the cut body looked complete"
    assert len(got) < n
    assert got == data[:len(got)], "the bytes before the cut are the object's"
    relay.cut_after_bytes = None
    # No torn local entry: the next GET fetches again and is whole.
    down0, _ = relay.counts()
    deadline = time.time() + 10
    while True:
        try:
            body = c.get_object(Bucket=bucket, Key="cut/8m")["Body"].read()
            break
        except Exception:  # the flight of the failed fill may still be ending
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    assert sha(body) == sha(data)
    assert relay.counts()[0] - down0 >= len(data), "the next GET did not refetch"
    assert c.head_object(Bucket=bucket, Key="cut/8m")["ContentLength"] == len(data)


def test_client_gone_mid_miss_fill_completes(weed, bucket, relay, gateway_factory):
    data = os.urandom(16 * MiB)
    weed.client().put_object(Bucket=bucket, Key="gone/16m", Body=data)
    g = gateway_factory(relay.endpoint)
    c = g.client()
    relay.rate_bytes_per_s = 32 * MiB
    r = c.get_object(Bucket=bucket, Key="gone/16m")
    assert r["Body"].read(1 << 16) == data[:1 << 16]
    r["Body"].close()  # the client leaves
    relay.rate_bytes_per_s = None
    # The fill goes on and commits: a later read is a hit.
    deadline = time.time() + 20
    while True:
        down0, _ = relay.counts()
        if down0 >= len(data):
            break
        assert time.time() < deadline, f"fill stopped at {down0} bytes"
        time.sleep(0.1)
    body = c.get_object(Bucket=bucket, Key="gone/16m")["Body"].read()
    assert sha(body) == sha(data)
    assert relay.counts()[0] < len(data) + 2 * MiB, "the object was fetched twice"


def test_concurrent_misses_fetch_once(weed, bucket, relay, gateway_factory):
    data = os.urandom(12 * MiB + 5)
    weed.client().put_object(Bucket=bucket, Key="conc/12m", Body=data)
    g = gateway_factory(relay.endpoint)
    relay.rate_bytes_per_s = 24 * MiB
    start = threading.Barrier(4)

    def read(_):
        c = g.client()
        start.wait()
        return sha(c.get_object(Bucket=bucket, Key="conc/12m")["Body"].read())

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        shas = list(ex.map(read, range(4)))
    assert shas == [sha(data)] * 4
    down, _ = relay.counts()
    assert down < len(data) + 2 * MiB, f"{down} bytes fetched for 4 concurrent misses"


def test_ranged_hits_of_block_entries(weed, bucket, relay, gateway_factory):
    """Ranged reads of a big object are kept as block entries; a ranged hit inside one block
    is answered locally (the fast path's block hook), byte-exact with S3's headers."""
    data = os.urandom(6 * MiB + 99)
    put = weed.client().put_object(Bucket=bucket, Key="rng/6m", Body=data, ContentType="x/y")
    g = gateway_factory(relay.endpoint, ["--upstream-block-kb", "1024"])
    c = g.client()
    r = c.get_object(Bucket=bucket, Key="rng/6m", Range="bytes=1048576-1052671")  # block 1: a miss
    assert r["Body"].read() == data[1048576:1052672]
    # Answered once the range's bytes came; the rest of the block still comes and is stored.
    deadline = time.time() + 10
    while relay.counts()[0] < MiB and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    down0, _ = relay.counts()
    for rng, (s, e) in [("bytes=1048576-1052671", (1048576, 1052672)),
                        ("bytes=1050000-1050000", (1050000, 1050001)),
                        ("bytes=1048576-2097151", (1048576, 2097152))]:
        r = c.get_object(Bucket=bucket, Key="rng/6m", Range=rng)
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert r["Body"].read() == data[s:e]
        assert r["ContentRange"] == f"bytes {s}-{e - 1}/{len(data)}"
        assert r["ContentLength"] == e - s
        assert r["ETag"] == put["ETag"] and r["ContentType"] == "x/y"
    h = c.head_object(Bucket=bucket, Key="rng/6m", Range="bytes=1048576-1048577")
    assert h["ResponseMetadata"]["HTTPStatusCode"] == 206 and h["ContentLength"] == 2
    # Conditions are decided as before (not by the hook).
    r = c.get_object(Bucket=bucket, Key="rng/6m", Range="bytes=1048576-1048579",
                     IfMatch=put["ETag"])
    assert r["Body"].read() == data[1048576:1048580]
    assert relay.counts()[0] == down0, "a ranged hit went upstream"
    # A range past the end is 416 with the object's size.
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket=bucket, Key="rng/6m", Range=f"bytes={len(data)}-")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_ranged_miss_of_unknown_small_object_keeps_it_whole(weed, bucket, relay,
                                                             gateway_factory):
    """A ranged miss learns the object from its ranged GET (no HEAD first); an object that
    fits one block comes whole in that answer and is kept whole: later reads are hits."""
    data = os.urandom(300_000)
    put = weed.client().put_object(Bucket=bucket, Key="small/300k", Body=data,
                                   Metadata={"color": "red"})
    g = gateway_factory(relay.endpoint, ["--upstream-block-kb", "1024"])
    c = g.client()
    r = c.get_object(Bucket=bucket, Key="small/300k", Range="bytes=100-199")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert r["Body"].read() == data[100:200]
    assert r["ContentRange"] == f"bytes 100-199/{len(data)}"
    assert r["ETag"] == put["ETag"] and r["Metadata"] == {"color": "red"}
    time.sleep(0.5)  # the background commit
    down0, _ = relay.counts()
    r = c.get_object(Bucket=bucket, Key="small/300k")
    assert r["Body"].read() == data and r["ETag"] == put["ETag"]
    assert r["Metadata"] == {"color": "red"}
    assert relay.counts()[0] == down0, "the whole read after the ranged miss went upstream"
    # An unsatisfiable range of an unknown object: the upstream's 416.
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError) as e:
        g.client().get_object(Bucket=bucket, Key="rng-unknown-416", Range="bytes=0-9")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    weed.client().put_object(Bucket=bucket, Key="tiny", Body=b"abc")
    with pytest.raises(ClientError) as e:
        g.client().get_object(Bucket=bucket, Key="tiny", Range="bytes=10-20")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_misses_answered_on_the_front(weed, bucket, relay, gateway_factory):
    """Misses are answered by the fast path's hook (no s3s): conditions, HEAD, errors and the
    answer's headers are S3's, and the same kept-alive connection then serves hits and further
    misses (a one-core gateway, one client connection)."""
    from botocore.exceptions import ClientError

    def err(fn, **kw):
        try:
            fn(**kw)
        except ClientError as e:
            r = e.response
            return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]
        raise AssertionError("no error")

    wc = weed.client()
    objs = {f"front/{i}": os.urandom(4096 + i) for i in range(6)}
    etags = {k: wc.put_object(Bucket=bucket, Key=k, Body=v, ContentType="a/b")["ETag"]
             for k, v in objs.items()}
    g = gateway_factory(relay.endpoint, cores=1)
    c = g.client()
    # HEAD miss: the upstream's headers, no fill.
    h = c.head_object(Bucket=bucket, Key="front/0")
    assert h["ContentLength"] == 4096 and h["ETag"] == etags["front/0"] and h["ContentType"] == "a/b"
    # Conditional misses decided on the upstream's ETag: 304, 412; then a plain miss fills.
    assert err(c.get_object, Bucket=bucket, Key="front/1", IfNoneMatch=etags["front/1"])[0] == 304
    assert err(c.get_object, Bucket=bucket, Key="front/2", IfMatch='"0123"') == (412, "PreconditionFailed")
    r = c.get_object(Bucket=bucket, Key="front/2", IfMatch=etags["front/2"])
    assert r["Body"].read() == objs["front/2"] and r["ContentType"] == "a/b"
    # A missing key: the upstream's 404 NoSuchKey; a miss of an existing one right after it.
    assert err(c.get_object, Bucket=bucket, Key="front/none") == (404, "NoSuchKey")
    for k in ["front/3", "front/4"]:
        r = c.get_object(Bucket=bucket, Key=k)
        assert r["Body"].read() == objs[k] and r["ETag"] == etags[k]
        assert r["ContentLength"] == len(objs[k])
    # Ranged miss of a small object: 206 with its Content-Range, then hits from the local copy.
    r = c.get_object(Bucket=bucket, Key="front/5", Range="bytes=10-19")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206 and r["Body"].read() == objs["front/5"][10:20]
    assert r["ContentRange"] == f"bytes 10-19/{len(objs['front/5'])}"
    time.sleep(0.3)  # the background commits
    down0, _ = relay.counts()
    for k, v in objs.items():
        if k in ("front/0", "front/1"):
            continue  # HEAD and 304 do not fill
        assert c.get_object(Bucket=bucket, Key=k)["Body"].read() == v
    assert relay.counts()[0] == down0, "a hit went upstream"
