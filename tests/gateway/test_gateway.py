"""Gateway mode (issue 15) against a real SeaweedFS: read-through, write-through, the
consistency contract, upstream trouble and crashes. Everything is asserted on bytes, status
codes, S3 error codes and headers."""

import concurrent.futures
import hashlib
import os
import subprocess
import threading
import time

import pytest
from botocore.exceptions import ClientError

from conftest import weed_bin  # noqa: F401  (skips the module when there is no weed)
from baleproc import bale_bin

MiB = 1 << 20


def body_of(c, bucket, key, **kw):
    return c.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


def err(fn, *a, **kw):
    with pytest.raises(ClientError) as e:
        fn(*a, **kw)
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def test_put_through_a_reads_through_b_and_directly(weed, bucket, gateway_factory):
    a = gateway_factory(weed.endpoint)
    b = gateway_factory(weed.endpoint)
    ca, cb, cw = a.client(), b.client(), weed.client()
    for key, data in [("small/1k", os.urandom(1024)), ("big/3m", os.urandom(3 * MiB + 17)),
                      ("empty", b""), ("dir/a b+c", os.urandom(5000))]:
        put = ca.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/x-test",
                            Metadata={"color": "blue"})
        assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
        direct = cw.get_object(Bucket=bucket, Key=key)
        assert direct["Body"].read() == data
        assert direct["ETag"] == put["ETag"]
        via_b = cb.get_object(Bucket=bucket, Key=key)
        assert via_b["Body"].read() == data
        assert via_b["ETag"] == put["ETag"]
        assert via_b["ContentType"] == "application/x-test"
        assert via_b["Metadata"] == {"color": "blue"}
        # A kept the bytes: a hit, byte-identical.
        assert body_of(ca, bucket, key) == data
        h = cb.head_object(Bucket=bucket, Key=key)
        assert h["ContentLength"] == len(data) and h["ETag"] == put["ETag"]


def test_put_directly_on_upstream_reads_through_both(weed, bucket, gateway_factory):
    a = gateway_factory(weed.endpoint)
    b = gateway_factory(weed.endpoint)
    cw = weed.client()
    objs = {f"d/{i}": os.urandom(n) for i, n in enumerate([1, 4096, 100_000, 2 * MiB + 5])}
    for k, v in objs.items():
        cw.put_object(Bucket=bucket, Key=k, Body=v)
    for g in (a, b):
        c = g.client()
        for k, v in objs.items():
            assert body_of(c, bucket, k) == v
            assert body_of(c, bucket, k) == v  # the hit
            r = c.get_object(Bucket=bucket, Key=k, Range="bytes=0-0")
            assert r["Body"].read() == v[:1] and r["ContentRange"] == f"bytes 0-0/{len(v)}"
    # A missing key is the upstream's answer.
    assert err(a.client().get_object, Bucket=bucket, Key="nope") == (404, "NoSuchKey")
    assert err(a.client().head_object, Bucket=bucket, Key="nope")[0] == 404
    assert err(a.client().get_object, Bucket="no-such-bucket-gw", Key="k")[0] == 404


def test_overwrite_and_delete_through_a_seen_by_b_within_ttl(weed, bucket, gateway_factory):
    a = gateway_factory(weed.endpoint)
    b = gateway_factory(weed.endpoint, ["--revalidate", "ttl:400"])
    ca, cb, cw = a.client(), b.client(), weed.client()
    ca.put_object(Bucket=bucket, Key="k", Body=b"v1" * 1000)
    assert body_of(cb, bucket, "k") == b"v1" * 1000
    ca.put_object(Bucket=bucket, Key="k", Body=b"v2" * 3000)
    assert body_of(ca, bucket, "k") == b"v2" * 3000  # the writer sees its write at once
    assert body_of(cw, bucket, "k") == b"v2" * 3000
    time.sleep(0.5)
    got = body_of(cb, bucket, "k")
    assert got == b"v2" * 3000, "B serves the overwrite once the TTL passed (never a mix)"
    # Overwrite directly on the upstream: seen by B within the TTL too.
    cw.put_object(Bucket=bucket, Key="k", Body=b"v3" * 10)
    time.sleep(0.5)
    assert body_of(cb, bucket, "k") == b"v3" * 10
    ca.delete_object(Bucket=bucket, Key="k")
    assert err(cw.get_object, Bucket=bucket, Key="k")[0] == 404
    assert err(ca.get_object, Bucket=bucket, Key="k")[0] == 404
    time.sleep(0.5)
    assert err(cb.get_object, Bucket=bucket, Key="k") == (404, "NoSuchKey")


def test_if_none_match_race_exactly_one_wins(weed, bucket, gateway_factory):
    a = gateway_factory(weed.endpoint)
    b = gateway_factory(weed.endpoint)
    ca, cb, cw = a.client(), b.client(), weed.client()
    for round_ in range(5):
        key = f"manifest/{round_}"
        bodies = {"a": b"from-a-" + os.urandom(64), "b": b"from-b-" + os.urandom(64)}
        barrier = threading.Barrier(2)

        def put(name, c):
            barrier.wait()
            try:
                r = c.put_object(Bucket=bucket, Key=key, Body=bodies[name], IfNoneMatch="*")
                return name, r["ResponseMetadata"]["HTTPStatusCode"], None
            except ClientError as e:
                return name, e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]

        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            res = list(ex.map(lambda x: put(*x), [("a", ca), ("b", cb)]))
        winners = [r for r in res if r[1] == 200]
        losers = [r for r in res if r[1] != 200]
        assert len(winners) == 1, res
        assert losers[0][1] in (409, 412), res
        w = winners[0][0]
        assert body_of(cw, bucket, key) == bodies[w]
        assert body_of(ca, bucket, key) == bodies[w]
        assert body_of(cb, bucket, key) == bodies[w]
    # A later conditional write on an existing key: 412 from the upstream, nothing changed.
    code, ecode = err(ca.put_object, Bucket=bucket, Key="manifest/0", Body=b"late", IfNoneMatch="*")
    assert code == 412 and ecode == "PreconditionFailed"


def test_ranged_get_of_a_big_object_fetches_only_the_blocks_it_needs(weed, bucket, relay, gateway_factory):
    data = os.urandom(64 * MiB)
    weed.client().put_object(Bucket=bucket, Key="big", Body=data)
    g = gateway_factory(relay.endpoint, ["--upstream-block-kb", "1024"])
    c = g.client()
    before = relay.counts()[0]
    off = 40 * MiB + 12345
    r = c.get_object(Bucket=bucket, Key="big", Range=f"bytes={off}-{off + 4095}")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert r["Body"].read() == data[off:off + 4096]
    assert r["ContentRange"] == f"bytes {off}-{off + 4095}/{64 * MiB}"
    # The answer came once the range's bytes arrived; the rest of the block still comes.
    deadline = time.time() + 10
    while relay.counts()[0] - before < MiB and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    first = relay.counts()[0] - before
    assert MiB <= first < 2 * MiB, f"fetched {first} bytes upstream for a 4 KiB range"
    # Same block again, and a neighbour in it: no upstream bytes at all.
    mid = relay.counts()[0]
    for o in (off, off + 100_000):
        assert body_of(c, bucket, "big", Range=f"bytes={o}-{o + 4095}") == data[o:o + 4096]
    assert relay.counts()[0] == mid
    # A range across a block boundary fetches the one block it lacks.
    o = 41 * MiB - 100
    assert body_of(c, bucket, "big", Range=f"bytes={o}-{o + 199}") == data[o:o + 200]
    assert relay.counts()[0] - mid < 2 * MiB
    # Suffix range, and a 416.
    assert body_of(c, bucket, "big", Range="bytes=-10") == data[-10:]
    code, ecode = err(c.get_object, Bucket=bucket, Key="big", Range=f"bytes={64 * MiB}-")
    assert code == 416 and ecode == "InvalidRange"
    # HEAD answers from what the gateway learned.
    h = c.head_object(Bucket=bucket, Key="big")
    assert h["ContentLength"] == 64 * MiB


def test_upstream_down_hits_serve_misses_and_writes_refused(weed, bucket, relay, gateway_factory):
    cw = weed.client()
    cw.put_object(Bucket=bucket, Key="cold", Body=b"cold bytes")
    g = gateway_factory(relay.endpoint)
    c = g.client()
    c.put_object(Bucket=bucket, Key="hot", Body=b"hot bytes")
    assert body_of(c, bucket, "hot") == b"hot bytes"

    relay.down()
    assert body_of(c, bucket, "hot") == b"hot bytes"
    t0 = time.time()
    assert err(c.get_object, Bucket=bucket, Key="cold") == (503, "ServiceUnavailable")
    assert time.time() - t0 < 3
    assert err(c.put_object, Bucket=bucket, Key="new", Body=b"never acked")[0] == 503
    assert err(c.list_objects_v2, Bucket=bucket)[0] == 503

    relay.blackhole()  # accepts, never answers: bounded by --upstream-timeout-ms 1500
    assert body_of(c, bucket, "hot") == b"hot bytes"
    for fn, kw in [(c.get_object, {"Key": "cold"}), (c.put_object, {"Key": "new2", "Body": b"x"})]:
        t0 = time.time()
        assert err(fn, Bucket=bucket, **kw)[0] == 503
        took = time.time() - t0
        assert 1.0 < took < 4.5, took

    relay.up()  # back: no restart needed
    assert body_of(c, bucket, "cold") == b"cold bytes"
    for k in ("new", "new2"):
        assert err(cw.get_object, Bucket=bucket, Key=k)[0] == 404
        assert err(c.get_object, Bucket=bucket, Key=k)[0] == 404
    c.put_object(Bucket=bucket, Key="new", Body=b"now acked")
    assert body_of(cw, bucket, "new") == b"now acked"


def test_sigkill_during_fills_and_write_through(weed, bucket, gateway_factory):
    cw = weed.client()
    src = {f"src/{i}": os.urandom(50_000 + i * 7919) for i in range(40)}
    for k, v in src.items():
        cw.put_object(Bucket=bucket, Key=k, Body=v)
    g = gateway_factory(weed.endpoint)
    acked = {}
    stop = threading.Event()

    def writer(n):
        c = g.client()
        i = 0
        while not stop.is_set():
            k, v = f"w{n}/{i}", os.urandom(20_000 + (i % 7) * 100_000)
            try:
                c.put_object(Bucket=bucket, Key=k, Body=v)
                acked[k] = v
            except Exception:
                return
            i += 1

    def reader():
        c = g.client()
        while not stop.is_set():
            for k in src:
                try:
                    c.get_object(Bucket=bucket, Key=k)["Body"].read()
                except Exception:
                    return

    ts = [threading.Thread(target=writer, args=(n,)) for n in range(3)] + [threading.Thread(target=reader)]
    for t in ts:
        t.start()
    time.sleep(2.0)
    g.kill9()
    stop.set()
    for t in ts:
        t.join()
    assert len(acked) > 3
    g.start_again()
    c = g.client()
    for k, v in acked.items():
        assert body_of(cw, bucket, k) == v, f"acknowledged write {k} missing upstream"
        assert body_of(c, bucket, k) == v
    for k, v in src.items():
        assert body_of(c, bucket, k) == v


def test_boto3_checksum_mode_and_upstream_etag(weed, bucket, gateway_factory):
    g = gateway_factory(weed.endpoint)
    c, cw = g.client(), weed.client()
    data = os.urandom(300_000)
    cw.put_object(Bucket=bucket, Key="ck", Body=data, ContentType="text/x-ck")
    etag = cw.head_object(Bucket=bucket, Key="ck")["ETag"]
    for _ in range(2):  # miss, then hit
        r = c.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
        assert r["Body"].read() == data
        assert r["ETag"] == etag
        assert r["ContentType"] == "text/x-ck"
    assert r["ETag"].strip('"') == hashlib.md5(data).hexdigest()


def test_list_buckets_multipart_and_deletes_go_upstream(weed, gateway_factory):
    g = gateway_factory(weed.endpoint)
    c, cw = g.client(), weed.client()
    name = f"gwmade{os.getpid()}{int(time.time() * 1000) % 100000}"
    c.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in cw.list_buckets()["Buckets"]]
    assert err(c.create_bucket, Bucket=name)[0] == 409
    cw.put_object(Bucket=name, Key="p/direct", Body=b"d")
    c.put_object(Bucket=name, Key="p/via", Body=b"v")
    keys = [o["Key"] for o in c.list_objects_v2(Bucket=name, Prefix="p/")["Contents"]]
    assert keys == ["p/direct", "p/via"]
    assert [p["Prefix"] for p in c.list_objects_v2(Bucket=name, Delimiter="/")["CommonPrefixes"]] == ["p/"]
    # Multipart through the gateway: parts go to the upstream's multipart upload.
    parts = [os.urandom(5 * MiB), os.urandom(1234)]
    up = c.create_multipart_upload(Bucket=name, Key="mp")
    etags = [c.upload_part(Bucket=name, Key="mp", UploadId=up["UploadId"], PartNumber=i + 1, Body=p)["ETag"]
             for i, p in enumerate(parts)]
    c.complete_multipart_upload(Bucket=name, Key="mp", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"ETag": e, "PartNumber": i + 1} for i, e in enumerate(etags)]})
    whole = b"".join(parts)
    assert body_of(cw, name, "mp") == whole
    assert body_of(c, name, "mp") == whole
    assert body_of(c, name, "mp", Range="bytes=5242870-5242889") == whole[5242870:5242890]
    # Copy through the gateway.
    c.copy_object(Bucket=name, Key="p/copy", CopySource={"Bucket": name, "Key": "p/via"})
    assert body_of(cw, name, "p/copy") == b"v"
    # DeleteObjects: gone upstream and locally.
    assert body_of(c, name, "p/via") == b"v"
    r = c.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "p/via"}, {"Key": "p/direct"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["p/direct", "p/via"]
    for k in ("p/via", "p/direct"):
        assert err(c.get_object, Bucket=name, Key=k)[0] == 404
        assert err(cw.get_object, Bucket=name, Key=k)[0] == 404


def test_warm_then_upstream_down(weed, bucket, relay, gateway_factory):
    cw = weed.client()
    objs = {f"coll/seg{i}": os.urandom(10_000 * (i + 1)) for i in range(12)}
    for k, v in objs.items():
        cw.put_object(Bucket=bucket, Key=k, Body=v)
    g = gateway_factory(relay.endpoint)
    r = subprocess.run([bale_bin(), "warm", f"s3://{bucket}/coll/", "--endpoint", g.endpoint,
                        "--access-key", g.access_key, "--secret-key", g.secret_key],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "12/12 objects" in r.stderr
    relay.down()
    c = g.client()
    for k, v in objs.items():
        assert body_of(c, bucket, k) == v


def test_capacity_bound_evicts_oldest(weed, bucket, relay, gateway_factory):
    cw = weed.client()
    objs = {f"cap/{i}": os.urandom(MiB) for i in range(8)}
    for k, v in objs.items():
        cw.put_object(Bucket=bucket, Key=k, Body=v)
    # 4 MiB over 1 shard.
    g = gateway_factory(relay.endpoint, ["--cache-capacity-gb", str(4 / 1024)], cores=1)
    c = g.client()
    for k, v in objs.items():
        assert body_of(c, bucket, k) == v
    time.sleep(1.0)  # small fills are committed (and older entries evicted) in the background
    relay.down()
    served = [k for k in objs if _try(c, bucket, k)]
    assert "cap/7" in served and "cap/0" not in served, served
    assert len(served) <= 4, served


def _try(c, bucket, k):
    try:
        c.get_object(Bucket=bucket, Key=k)["Body"].read()
        return True
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        return False
