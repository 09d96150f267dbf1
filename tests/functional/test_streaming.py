"""aws-chunked streaming PUTs signed in the test exactly as minio-go (and so Milvus) sends them,
the same with a checksum trailer, checksum/Content-MD5 validation, and the broken streams that
must be refused without leaving an object behind."""

import hashlib
import time

import pytest

import sigv4
from helpers import payload

KiB = 1024
MiB = 1024 * 1024


def etag_of(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


def hp(server):
    return f"{server.host}:{server.port}"


def assert_absent(raw, bucket, key, wait_s=0.0):
    """HEAD must say 404; when the server may still be finishing an aborted request, keep
    checking for wait_s seconds that the object never appears."""
    deadline = time.time() + wait_s
    while True:
        r = raw.request("HEAD", f"/{bucket}/{key}")
        assert r.status == 404, f"object {key} is visible after a refused upload: {r}"
        lst = raw.request("GET", f"/{bucket}", query=[("list-type", "2"), ("prefix", key)])
        assert f"<Key>{key}</Key>".encode() not in lst.body, f"{key} listed after a refused upload"
        if time.time() >= deadline:
            return
        time.sleep(0.2)


def assert_object(raw, bucket, key, data):
    r = raw.request("GET", f"/{bucket}/{key}")
    assert r.status == 200, r
    assert len(r.body) == len(data)
    assert r.body == data, "bytes differ"
    assert r.headers["etag"] == etag_of(data)


def send(server, target, headers, body, **kw):
    resp, info = server.raw().send("PUT", target, headers, body, **kw)
    assert not info["timed_out"], f"no answer and no close: server hung ({info})"
    return resp, info


@pytest.mark.parametrize("size", [0, 100 * KiB, 5 * MiB], ids=["0B", "100KiB", "5MiB"])
def test_streaming_put(server, raw, bucket, size):
    data = payload(size, seed=size + 1)
    target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/st-{size}", data)
    assert h["x-amz-content-sha256"] == sigv4.STREAMING
    resp, _ = send(server, target, h, body)
    assert resp is not None and resp.status == 200, resp
    assert resp.headers["etag"] == etag_of(data)
    assert_object(raw, bucket, f"st-{size}", data)


@pytest.mark.parametrize("size", [0, 100 * KiB, 5 * MiB], ids=["0B", "100KiB", "5MiB"])
def test_streaming_put_trailer(server, raw, bucket, size):
    data = payload(size, seed=size + 2)
    target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/tr-{size}", data,
                                                     trailer_crc32=sigv4.crc32_b64(data))
    assert h["x-amz-content-sha256"] == sigv4.STREAMING_TRAILER
    resp, _ = send(server, target, h, body)
    assert resp is not None and resp.status == 200, resp
    assert resp.headers["etag"] == etag_of(data)
    assert_object(raw, bucket, f"tr-{size}", data)


@pytest.mark.parametrize("size", [0, 100 * KiB], ids=["0B", "100KiB"])
def test_streaming_put_trailer_minio_go_layout(server, raw, bucket, size):
    data = payload(size, seed=size + 3)
    target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/mgtr-{size}", data,
                                                     trailer_crc32=sigv4.crc32_b64(data), minio_go_trailer=True)
    resp, _ = send(server, target, h, body)
    assert resp is not None and resp.status == 200, resp
    assert_object(raw, bucket, f"mgtr-{size}", data)


def test_streaming_odd_chunk_sizes(server, raw, bucket):
    """Other clients use other chunk sizes (the Rust SDK: 64 KiB too, but aws-cli 8 KiB...)."""
    data = payload(300 * KiB + 17, seed=4)
    for cs in (8 * KiB, 1000, 1 * MiB):
        target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/cs", data, chunk_size=cs)
        resp, _ = send(server, target, h, body)
        assert resp.status == 200, (cs, resp)
        assert_object(raw, bucket, "cs", data)


def test_streaming_with_metadata_and_content_type(server, s3, bucket):
    data = payload(70 * KiB, seed=8)
    target, h, body = server.signer().streaming_put(
        hp(server), f"/{bucket}/meta", data, headers={"x-amz-meta-origin": "minio-go", "Content-Type": "application/x-parquet"})
    resp, _ = send(server, target, h, body)
    assert resp.status == 200, resp
    g = s3.get_object(Bucket=bucket, Key="meta")
    assert g["Body"].read() == data
    assert g["Metadata"] == {"origin": "minio-go"}
    assert g["ContentType"] == "application/x-parquet"


# ------------------------------------------------------------------ refused streams
@pytest.fixture
def old(s3, bucket):
    """Each negative case runs twice: on a fresh key and over an existing object, which must
    survive the refused overwrite unchanged."""
    data = payload(5000, seed=77)
    s3.put_object(Bucket=bucket, Key="victim", Body=data)
    return data


def check_refused(raw, bucket, key, old_data, wait_s=1.0):
    if key == "victim":
        deadline = time.time() + wait_s
        while True:
            assert_object(raw, bucket, key, old_data)
            if time.time() >= deadline:
                break
            time.sleep(0.2)
    else:
        assert_absent(raw, bucket, key, wait_s)


KEYS = ["fresh", "victim"]


@pytest.mark.parametrize("key", KEYS)
def test_body_shorter_than_decoded_length(server, raw, bucket, old, canary, key):
    data = payload(200 * KiB, seed=9)
    # the chunks carry 200 KiB and end properly with the final chunk, but the header promised more
    target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/{key}", data,
                                                     decoded_length=len(data) + 4096)
    resp, _ = send(server, target, h, body)
    check_refused(raw, bucket, key, old)
    assert resp is not None and 400 <= resp.status < 500, resp
    canary()


@pytest.mark.parametrize("key", KEYS)
def test_body_longer_than_decoded_length(server, raw, bucket, old, canary, key):
    data = payload(200 * KiB, seed=10)
    target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/{key}", data,
                                                     decoded_length=len(data) - 1)
    resp, _ = send(server, target, h, body)
    check_refused(raw, bucket, key, old)
    assert resp is not None and 400 <= resp.status < 500, resp
    canary()


@pytest.mark.parametrize("key", KEYS)
def test_missing_final_chunk_clean_end(server, raw, bucket, old, canary, key):
    """All data chunks, no 0-size final chunk, Content-Length says that is the whole body."""
    data = payload(150 * KiB, seed=12)
    target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/{key}", data, final_chunk=False)
    resp, _ = send(server, target, h, body)
    check_refused(raw, bucket, key, old)
    assert resp is not None and 400 <= resp.status < 500, resp
    canary()


@pytest.mark.parametrize("key", KEYS)
def test_missing_final_chunk_connection_closed(server, raw, bucket, old, canary, key):
    """Content-Length announces the full stream, the client sends every data chunk and then
    goes away: nothing may become visible, whatever the server answers (if anything)."""
    data = payload(5 * MiB, seed=13)
    signer = server.signer()
    target, h, full = signer.streaming_put(hp(server), f"/{bucket}/{key}", data)
    _, _, partial = signer.streaming_put(hp(server), f"/{bucket}/{key}", data, final_chunk=False,
                                         amz_date=h["x-amz-date"])
    assert full.startswith(partial)
    resp, info = server.raw().send("PUT", target, h, partial, timeout=5, shutdown_write=True)
    if resp is not None:
        assert 400 <= resp.status < 500, resp
    check_refused(raw, bucket, key, old, wait_s=2.0)
    canary()


@pytest.mark.parametrize("key", KEYS)
def test_cut_mid_chunk_connection_closed(server, raw, bucket, old, canary, key):
    data = payload(1 * MiB, seed=14)
    target, h, full = server.signer().streaming_put(hp(server), f"/{bucket}/{key}", data)
    resp, info = server.raw().send("PUT", target, h, full[: len(full) // 2 + 3], timeout=5, shutdown_write=True)
    if resp is not None:
        assert 400 <= resp.status < 500, resp
    check_refused(raw, bucket, key, old, wait_s=2.0)
    canary()


@pytest.mark.parametrize("key", KEYS)
def test_wrong_chunk_signature(server, raw, bucket, old, canary, key):
    data = payload(300 * KiB, seed=15)
    target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/{key}", data, corrupt_chunk=2)
    resp, _ = send(server, target, h, body)
    check_refused(raw, bucket, key, old)
    assert resp is not None and resp.status == 403 and resp.code() == "SignatureDoesNotMatch", resp
    canary()


@pytest.mark.parametrize("key", KEYS)
def test_streaming_wrong_content_md5(server, raw, bucket, old, canary, key):
    data = payload(100 * KiB, seed=16)
    target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/{key}", data,
                                                     headers={"Content-MD5": sigv4.md5_b64(b"other")})
    resp, _ = send(server, target, h, body)
    check_refused(raw, bucket, key, old)
    assert resp is not None and resp.status == 400 and resp.code() == "BadDigest", resp
    canary()


@pytest.mark.parametrize("key", KEYS)
def test_plain_put_wrong_content_md5(raw, bucket, old, canary, key):
    data = payload(10 * KiB, seed=17)
    r = raw.request("PUT", f"/{bucket}/{key}", body=data, headers={"Content-MD5": sigv4.md5_b64(b"other")})
    check_refused(raw, bucket, key, old)
    assert r.status == 400 and r.code() == "BadDigest", r
    r = raw.request("PUT", f"/{bucket}/{key}", body=data, headers={"Content-MD5": "not base64 at all!"})
    check_refused(raw, bucket, key, old)
    assert r.status == 400 and r.code() in ("InvalidDigest", "BadDigest"), r
    canary()


def test_plain_put_right_content_md5(raw, bucket):
    data = payload(10 * KiB, seed=18)
    r = raw.request("PUT", f"/{bucket}/md5ok", body=data, headers={"Content-MD5": sigv4.md5_b64(data)})
    assert r.status == 200, r
    assert_object(raw, bucket, "md5ok", data)


@pytest.mark.parametrize("key", KEYS)
def test_wrong_checksum_crc32_header(raw, bucket, old, canary, key):
    data = payload(10 * KiB, seed=19)
    r = raw.request("PUT", f"/{bucket}/{key}", body=data,
                    headers={"x-amz-checksum-crc32": sigv4.crc32_b64(b"other")})
    check_refused(raw, bucket, key, old)
    # AWS answers 400 BadDigest ("The CRC32 you specified did not match the calculated checksum.")
    assert r.status == 400 and r.code() in ("BadDigest", "XAmzContentChecksumMismatch"), r
    canary()


def test_right_checksum_crc32_header(raw, bucket):
    data = payload(10 * KiB, seed=20)
    r = raw.request("PUT", f"/{bucket}/crcok", body=data, headers={"x-amz-checksum-crc32": sigv4.crc32_b64(data)})
    assert r.status == 200, r
    assert_object(raw, bucket, "crcok", data)


@pytest.mark.parametrize("key", KEYS)
def test_streaming_wrong_checksum_header(server, raw, bucket, old, canary, key):
    data = payload(100 * KiB, seed=21)
    target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/{key}", data,
                                                     headers={"x-amz-checksum-crc32": sigv4.crc32_b64(b"x")})
    resp, _ = send(server, target, h, body)
    check_refused(raw, bucket, key, old)
    assert resp is not None and resp.status == 400 and resp.code() in ("BadDigest", "XAmzContentChecksumMismatch"), resp
    canary()


@pytest.mark.parametrize("key", KEYS)
def test_streaming_wrong_trailer_checksum(server, raw, bucket, old, canary, key):
    data = payload(100 * KiB, seed=22)
    target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/{key}", data,
                                                     trailer_crc32=sigv4.crc32_b64(b"not the data"))
    resp, _ = send(server, target, h, body)
    check_refused(raw, bucket, key, old)
    assert resp is not None and resp.status == 400 and resp.code() in ("BadDigest", "XAmzContentChecksumMismatch"), resp
    canary()


@pytest.mark.parametrize("key", KEYS)
def test_chunk_over_limit(server, raw, bucket, old, canary, key):
    """bale bounds an aws-chunked chunk at 16 MiB; one of 16 MiB + 1 is refused with a 4xx."""
    data = payload(16 * MiB + 1, seed=23)
    target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/{key}", data, chunk_size=16 * MiB + 1)
    resp, info = send(server, target, h, body, timeout=30)
    check_refused(raw, bucket, key, old)
    assert resp is not None and 400 <= resp.status < 500, (resp, info)
    canary()


def test_chunk_at_limit_ok(server, raw, bucket):
    data = payload(16 * MiB, seed=24)
    target, h, body = server.signer().streaming_put(hp(server), f"/{bucket}/limit", data, chunk_size=16 * MiB)
    resp, _ = send(server, target, h, body, timeout=60)
    assert resp is not None and resp.status == 200, resp
    assert_object(raw, bucket, "limit", data)


@pytest.mark.parametrize("size_hex", ["7fffffff", "ffffffffffff"])
def test_chunk_header_absurd_size(server, raw, bucket, canary, size_hex):
    """A chunk header declaring gigabytes, followed by a few bytes and the end of the body:
    answered promptly with a 4xx, no attempt to buffer the declared size."""
    signer = server.signer()
    target, h, _ = signer.streaming_put(hp(server), f"/{bucket}/absurd", b"", decoded_length=int(size_hex, 16))
    body = f"{size_hex};chunk-signature={'0' * 64}\r\n".encode() + b"abc"
    h["Content-Length"] = str(len(body))
    resp, info = send(server, target, h, body, timeout=10)
    assert resp is not None and 400 <= resp.status < 500, (resp, info)
    assert_absent(raw, bucket, "absurd")
    canary()


def test_chunk_format_garbage(server, raw, bucket, canary):
    signer = server.signer()
    data = payload(1000, seed=25)
    target, h, body = signer.streaming_put(hp(server), f"/{bucket}/garbage", data)
    bad = body.replace(b";chunk-signature=", b";chunk-signaturX=", 1)
    resp, _ = send(server, target, h, bad)
    assert resp is not None and 400 <= resp.status < 500, resp
    assert_absent(raw, bucket, "garbage")
    canary()


@pytest.mark.parametrize("key", KEYS)
def test_trailer_declared_but_missing(server, raw, bucket, old, canary, key):
    """x-amz-trailer: x-amz-checksum-crc32 announced, the body ends after the final chunk with
    no trailer: the announced checksum cannot be checked, so the upload is refused."""
    data = payload(100 * KiB, seed=26)
    signer = server.signer()
    target, h, _ = signer.streaming_put(hp(server), f"/{bucket}/{key}", data, trailer_crc32=sigv4.crc32_b64(data))
    seed = h["Authorization"].split("Signature=")[1]
    body = signer.chunked_body(data, h["x-amz-date"], seed)  # no trailer section
    h["Content-Length"] = str(len(body))
    resp, _ = send(server, target, h, body)
    check_refused(raw, bucket, key, old)
    assert resp is not None and 400 <= resp.status < 500, resp
    canary()
