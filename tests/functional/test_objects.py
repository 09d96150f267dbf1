"""Object operations: PutObject, GetObject (+Range), HeadObject, DeleteObject."""

import datetime
import email.utils
import hashlib

import pytest
from botocore.exceptions import ClientError

from helpers import err_code, payload

MiB = 1024 * 1024
SIZES = [0, 1, 4096, MiB + 1, 20 * MiB]


def etag_of(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


@pytest.mark.parametrize("size", SIZES, ids=lambda n: f"{n}B")
def test_put_get_sizes(s3, bucket, size):
    data = payload(size, seed=size)
    r = s3.put_object(Bucket=bucket, Key=f"obj-{size}", Body=data)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert r["ETag"] == etag_of(data)
    g = s3.get_object(Bucket=bucket, Key=f"obj-{size}")
    got = g["Body"].read()
    assert len(got) == size
    assert got == data, "bytes differ"
    assert g["ETag"] == etag_of(data)
    assert g["ContentLength"] == size
    h = s3.head_object(Bucket=bucket, Key=f"obj-{size}")
    assert h["ContentLength"] == size and h["ETag"] == etag_of(data)


def test_get_headers(s3, bucket, raw):
    data = b"hello headers"
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(seconds=2)
    s3.put_object(Bucket=bucket, Key="h", Body=data, ContentType="text/x-bale-test",
                  Metadata={"color": "blue", "Mixed-Case": "Value With Spaces"})
    after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    for op in (s3.get_object, s3.head_object):
        g = op(Bucket=bucket, Key="h")
        assert g["ContentType"] == "text/x-bale-test"
        assert g["Metadata"] == {"color": "blue", "mixed-case": "Value With Spaces"}, g["Metadata"]
        assert before <= g["LastModified"] <= after, g["LastModified"]
        assert g["ETag"] == etag_of(data)
        assert g["ContentLength"] == len(data)
    r = raw.request("GET", f"/{bucket}/h")
    assert r.status == 200 and r.body == data
    assert r.headers["etag"] == etag_of(data)
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["content-type"] == "text/x-bale-test"
    assert r.headers["x-amz-meta-color"] == "blue"
    lm = email.utils.parsedate_to_datetime(r.headers["last-modified"])  # RFC 7231 date
    assert before <= lm <= after
    assert r.headers["last-modified"].endswith("GMT"), r.headers["last-modified"]
    assert r.headers.get("accept-ranges") in (None, "bytes")


def test_default_content_type(s3, bucket, raw):
    # A PUT without Content-Type: S3 stores binary/octet-stream (MinIO: application/octet-stream).
    r = raw.request("PUT", f"/{bucket}/noct", body=b"abc")
    assert r.status == 200, r
    g = raw.request("GET", f"/{bucket}/noct")
    assert g.status == 200 and g.body == b"abc"
    assert g.headers.get("content-type") in ("binary/octet-stream", "application/octet-stream"), g.headers


def test_put_missing_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="no-such-bucket-bale-test", Key="k", Body=b"x")
    assert err_code(e.value) == ("NoSuchBucket", 404)


def test_get_missing(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="missing")
    assert err_code(e.value) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="no-such-bucket-bale-test", Key="missing")
    assert err_code(e.value) == ("NoSuchBucket", 404)


def test_head_missing(s3, bucket, raw):
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="missing")
    assert err_code(e.value)[1] == 404
    r = raw.request("HEAD", f"/{bucket}/missing")
    assert r.status == 404 and r.body == b""


def test_delete_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="d", Body=b"bye")
    r = s3.delete_object(Bucket=bucket, Key="d")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="d")
    assert err_code(e.value) == ("NoSuchKey", 404)
    # deleting a missing key is still 204 on S3
    r = s3.delete_object(Bucket=bucket, Key="d")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    r = s3.delete_object(Bucket=bucket, Key="never-existed")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_object_missing_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket="no-such-bucket-bale-test", Key="k")
    assert err_code(e.value) == ("NoSuchBucket", 404)


def test_overwrite(s3, bucket):
    a = payload(300_000, seed=1)
    b = payload(1000, seed=2)
    c = payload(2 * MiB + 7, seed=3)
    for data in (a, b, c, b""):
        r = s3.put_object(Bucket=bucket, Key="ow", Body=data)
        assert r["ETag"] == etag_of(data)
        g = s3.get_object(Bucket=bucket, Key="ow")
        assert g["Body"].read() == data
        assert g["ETag"] == etag_of(data)
    lst = s3.list_objects_v2(Bucket=bucket)
    assert lst["KeyCount"] == 1 and lst["Contents"][0]["Size"] == 0


@pytest.mark.parametrize("key", [
    "plain",
    "dir/sub/file.txt",
    "with space and+plus",
    "pct%20literal%2Fslash",
    "sym!$&'()*,;=:@~",
    "q?mark#hash[brackets]{braces}",
    "unicode/ключ/日本語/é",
    "trailing/slash/",
    "a//double//slash",
    "dots/./and/../x",
    "x" * 1024,
])
def test_key_names(s3, bucket, raw, key):
    data = key.encode()[:100] + b"-payload"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    r = raw.request("GET", f"/{bucket}/{key}")  # our own signer and encoding
    assert r.status == 200 and r.body == data, r
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [key]


# ---------------------------------------------------------------------------- Range
RANGE_SIZE = 10_000


@pytest.fixture
def ranged(s3, bucket):
    data = payload(RANGE_SIZE, seed=7)
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    return bucket, data


@pytest.mark.parametrize("hdr,start,end", [
    ("bytes=0-0", 0, 0),
    ("bytes=0-9", 0, 9),
    ("bytes=100-4195", 100, 4195),
    ("bytes=4096-8191", 4096, 8191),
    ("bytes=9999-9999", 9999, 9999),
    ("bytes=5000-", 5000, RANGE_SIZE - 1),
    ("bytes=-1", RANGE_SIZE - 1, RANGE_SIZE - 1),
    ("bytes=-300", RANGE_SIZE - 300, RANGE_SIZE - 1),
    ("bytes=-20000", 0, RANGE_SIZE - 1),         # suffix longer than object: whole object, 206
    ("bytes=9000-20000", 9000, RANGE_SIZE - 1),  # end past size is clamped
])
def test_range(s3, ranged, raw, hdr, start, end):
    bucket, data = ranged
    g = s3.get_object(Bucket=bucket, Key="r", Range=hdr)
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert g["Body"].read() == data[start:end + 1]
    assert g["ContentRange"] == f"bytes {start}-{end}/{RANGE_SIZE}"
    assert g["ContentLength"] == end - start + 1
    assert g["ETag"] == etag_of(data)
    r = raw.request("GET", f"/{bucket}/r", headers={"Range": hdr})
    assert r.status == 206 and r.body == data[start:end + 1]
    assert r.headers["content-range"] == f"bytes {start}-{end}/{RANGE_SIZE}"
    assert r.headers["content-length"] == str(end - start + 1)


@pytest.mark.parametrize("hdr", ["bytes=10000-", "bytes=10000-10005", "bytes=20000-30000"])
def test_range_unsatisfiable(s3, ranged, raw, canary, hdr):
    bucket, _ = ranged
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", Range=hdr)
    assert err_code(e.value) == ("InvalidRange", 416)
    r = raw.request("GET", f"/{bucket}/r", headers={"Range": hdr})
    assert r.status == 416 and r.code() == "InvalidRange", r
    canary()


@pytest.mark.parametrize("hdr", [
    "bytes=abc", "bytes=5-2", "bytes=", "bytes=--1", "chars=0-5", "bytes=1-2-3", "bytes=-", "bytes= 0-1x",
])
def test_range_malformed_ignored(ranged, raw, canary, hdr):
    """S3 ignores a Range header it cannot parse (and a reversed one): 200 + the whole object."""
    bucket, data = ranged
    r = raw.request("GET", f"/{bucket}/r", headers={"Range": hdr})
    assert r.status == 200, r
    assert r.body == data
    assert "content-range" not in r.headers
    canary()


def test_range_multi_not_5xx(ranged, raw, canary):
    # Multiple ranges: S3 does not support them and returns the whole object.
    bucket, data = ranged
    r = raw.request("GET", f"/{bucket}/r", headers={"Range": "bytes=0-1,5-6"})
    assert r.status in (200, 206, 400, 416), r
    if r.status == 200:
        assert r.body == data
    canary()


def test_range_large_object(s3, bucket):
    """Ranged reads across every internal boundary of a large object are byte-exact."""
    size = 20 * MiB + 12345
    data = payload(size, seed=11)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    points = [0, 1, 4095, 4096, 4097, 16383, 16384, 65535, 65536, MiB - 1, MiB, MiB + 1,
              4 * MiB - 3, 8 * MiB, 16 * MiB - 1, 16 * MiB, size - 4097, size - 2]
    for p in points:
        for ln in (1, 2, 4096, 70_000):
            end = min(p + ln - 1, size - 1)
            g = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={p}-{end}")
            got = g["Body"].read()
            assert got == data[p:end + 1], f"range {p}-{end}"
    g = s3.get_object(Bucket=bucket, Key="big", Range="bytes=-100000")
    assert g["Body"].read() == data[-100000:]
    g = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={3 * MiB + 5}-")
    assert g["Body"].read() == data[3 * MiB + 5:]


def test_range_empty_object(s3, bucket, raw, canary):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    r = raw.request("GET", f"/{bucket}/empty", headers={"Range": "bytes=0-"})
    # AWS: a range on a 0-byte object is unsatisfiable (416 InvalidRange).
    assert r.status == 416 and r.code() == "InvalidRange", r
    r = raw.request("GET", f"/{bucket}/empty")
    assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "0"
    canary()


def test_abandoned_get_keeps_serving(server, s3, bucket, canary):
    """Milvus abandons whole-object GETs after n bytes: the server must shrug it off."""
    import socket

    import sigv4

    data = payload(8 * MiB, seed=5)
    s3.put_object(Bucket=bucket, Key="abandon", Body=data)
    signer = server.signer()
    for _ in range(5):
        target, h, _ = signer.sign_headers("GET", f"{server.host}:{server.port}", f"/{bucket}/abandon")
        s = socket.create_connection((server.host, server.port), timeout=10)
        s.sendall(sigv4.build_request("GET", target, h))
        got = s.recv(1000)
        assert got.startswith(b"HTTP/1.1 200"), got[:100]
        s.close()
    g = s3.get_object(Bucket=bucket, Key="abandon")
    assert g["Body"].read() == data
    canary()


# ---------------------------------------------------------------------------- minio SDK
def test_minio_sdk_objects(server, s3, bucket):
    import io

    mc = server.minio()
    small = payload(3000, seed=21)
    big = payload(7 * MiB + 3, seed=22)
    mc.put_object(bucket, "m/small", io.BytesIO(small), len(small), content_type="application/x-test",
                  metadata={"x-amz-meta-k": "v"})
    mc.put_object(bucket, "m/big", io.BytesIO(big), len(big))
    st = mc.stat_object(bucket, "m/small")
    assert st.size == len(small) and st.etag == hashlib.md5(small).hexdigest()
    assert st.content_type == "application/x-test"
    r = mc.get_object(bucket, "m/big")
    try:
        assert r.read() == big
    finally:
        r.close()
        r.release_conn()
    r = mc.get_object(bucket, "m/big", offset=MiB, length=1000)
    try:
        assert r.read() == big[MiB:MiB + 1000]
    finally:
        r.close()
        r.release_conn()
    names = [o.object_name for o in mc.list_objects(bucket, prefix="m/", recursive=True)]
    assert names == ["m/big", "m/small"]
    names = [o.object_name for o in mc.list_objects(bucket)]
    assert names == ["m/"]
    mc.remove_object(bucket, "m/small")
    mc.remove_object(bucket, "m/big")
    assert list(mc.list_objects(bucket, recursive=True)) == []


def test_reads_during_overwrites_are_whole(server, s3, bucket):
    """GETs racing overwrites see one whole version, old or new, never a mix (sizes differ, so
    a body of the wrong length or with the wrong bytes shows it)."""
    import threading

    versions = [payload(n, seed=100 + i) for i, n in enumerate([3000, 1 * MiB + 5, 70_000, 2 * MiB + 1, 0])]
    s3.put_object(Bucket=bucket, Key="race", Body=versions[0])
    stop = threading.Event()
    bad = []

    def writer():
        c = server.boto3()
        i = 0
        while not stop.is_set():
            i += 1
            c.put_object(Bucket=bucket, Key="race", Body=versions[i % len(versions)])

    def reader():
        c = server.boto3()
        while not stop.is_set():
            g = c.get_object(Bucket=bucket, Key="race")
            body = g["Body"].read()
            if body not in versions:
                bad.append((len(body), g["ETag"]))
            elif g["ETag"] != etag_of(body):
                bad.append(("etag", len(body), g["ETag"]))

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    import time

    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(30)
    assert not bad, f"torn or mismatched reads: {bad[:5]}"


@pytest.mark.parametrize("key_len", [991, 992, 1024])
def test_multipart_with_longest_keys(s3, bucket, key_len):
    """A multipart upload takes every key a single PUT takes (issue 11: keys of 992–1,024 bytes
    failed, the upload's record key added 33 bytes to the engine's limit)."""
    key = "m" * (key_len - 4) + "/end"
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=b"only part")
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [key]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"only part"
