"""What real clients do, through a gateway (issue 15, compat): each test here failed against a
bale gateway in front of SeaweedFS while SeaweedFS direct (and plain bale) answered right
(`tests/compat/run.py --gateway` found them; tests/compat/FINDINGS.md "Through a gateway").

- GET / HEAD with `?partNumber=N` (boto3's `PartNumber`, aws-sdk downloaders): a local entry
  knows no part layout, so the gateway answered 400 InvalidPart for every part but 1.
- presigned PUT (and any presigned write, LIST, ...): the client's presign query went upstream
  with the request, and the upstream answered 403 InvalidAccessKeyId for bale's key.
- `x-amz-checksum-*` given with a PUT (boto3 >= 1.36 sends CRC32 by default) was not kept with
  the local copy: HEAD / GET with `x-amz-checksum-mode: ENABLED` answered no checksum.
- a checksum in an aws-chunked trailer (the Rust SDK, minio-go) was neither checked nor sent
  upstream: a body that did not match its trailer was acknowledged and stored.
"""

import base64
import os
import sys
import zlib

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import WEED_AK, WEED_SK, weed_bin  # noqa: F401  (weed_bin: skips the module when there is no weed)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "functional"))
import sigv4  # noqa: E402

MiB = 1 << 20


def crc32_b64(data):
    return base64.b64encode((zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")).decode()


def err(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response.get("Error", {}).get("Code")
    raise AssertionError("call succeeded, want an error")


def test_part_number_get_and_head(weed, bucket, gateway_factory):
    g = gateway_factory(weed.endpoint)
    c = g.client()
    parts = [bytes([i + 1]) * (5 * MiB) for i in range(2)] + [b"tail" * 250]
    body = b"".join(parts)
    up = c.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    done = []
    for i, p in enumerate(parts):
        r = c.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=i + 1, Body=p)
        done.append({"PartNumber": i + 1, "ETag": r["ETag"]})
    c.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": done})
    starts = [0, 5 * MiB, 10 * MiB]
    # A miss first (nothing local), then hits once the whole object was read.
    for round_ in ("miss", "hit"):
        for n in (2, 1, 3):
            a = starts[n - 1]
            z = a + len(parts[n - 1]) - 1
            r = c.get_object(Bucket=bucket, Key="mp", PartNumber=n)
            assert r["ResponseMetadata"]["HTTPStatusCode"] == 206, (round_, n)
            assert r["ContentRange"] == f"bytes {a}-{z}/{len(body)}", (round_, n)
            assert r["PartsCount"] == 3, (round_, n)
            assert r["Body"].read() == parts[n - 1], (round_, n)
            h = c.head_object(Bucket=bucket, Key="mp", PartNumber=n)
            assert h["ResponseMetadata"]["HTTPStatusCode"] == 206, (round_, n)
            assert (h["ContentLength"], h["ContentRange"], h["PartsCount"]) == \
                (len(parts[n - 1]), f"bytes {a}-{z}/{len(body)}", 3), (round_, n)
        assert err(lambda: c.get_object(Bucket=bucket, Key="mp", PartNumber=4)) == (400, "InvalidPart")
        assert err(lambda: c.get_object(Bucket=bucket, Key="mp", PartNumber=1, Range="bytes=0-1")) == \
            (400, "InvalidRequest")
        assert c.get_object(Bucket=bucket, Key="mp")["Body"].read() == body
    # A single-part object: part 1 is all of it.
    c.put_object(Bucket=bucket, Key="one", Body=b"single")
    r = c.get_object(Bucket=bucket, Key="one", PartNumber=1)
    assert r["Body"].read() == b"single"
    assert r.get("PartsCount") == 1
    assert err(lambda: c.get_object(Bucket=bucket, Key="one", PartNumber=2)) == (400, "InvalidPart")
    assert err(lambda: c.get_object(Bucket=bucket, Key="nope", PartNumber=1))[0] == 404


def test_presigned_put_and_get(weed, bucket, gateway_factory):
    g = gateway_factory(weed.endpoint)
    c = g.client(signature_version="s3v4")
    url = c.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre/put"}, ExpiresIn=300)
    r = requests.put(url, data=b"put through a presigned URL", timeout=30)
    assert r.status_code == 200, r.text
    assert weed.client().get_object(Bucket=bucket, Key="pre/put")["Body"].read() == b"put through a presigned URL"
    url = c.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre/put"}, ExpiresIn=300)
    r = requests.get(url, timeout=30)
    assert (r.status_code, r.content) == (200, b"put through a presigned URL")
    # A presigned LIST and DELETE go upstream too (the custom route).
    url = c.generate_presigned_url("list_objects_v2", Params={"Bucket": bucket, "Prefix": "pre/"}, ExpiresIn=300)
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and b"<Key>pre/put</Key>" in r.content, r.text
    url = c.generate_presigned_url("delete_object", Params={"Bucket": bucket, "Key": "pre/put"}, ExpiresIn=300)
    assert requests.delete(url, timeout=30).status_code == 204
    assert err(lambda: weed.client().head_object(Bucket=bucket, Key="pre/put"))[0] == 404
    # Still checked against bale's keys: a wrong secret is refused here, before the upstream.
    bad = sigv4.Signer(g.access_key, g.secret_key + "x", g.region)
    url = bad.presign("PUT", f"127.0.0.1:{g.port}", f"/{bucket}/pre/bad")
    r = requests.put(f"http://127.0.0.1:{g.port}{url}", data=b"x", timeout=30)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content, r.text
    assert err(lambda: weed.client().head_object(Bucket=bucket, Key="pre/bad"))[0] == 404


def test_checksum_of_a_put_is_served_with_checksum_mode(weed, bucket, gateway_factory):
    g = gateway_factory(weed.endpoint)
    c = g.client()
    data = b"checksummed body " * 100
    c.put_object(Bucket=bucket, Key="ck", Body=data, ChecksumAlgorithm="CRC32")
    want = crc32_b64(data)
    h = c.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")  # the PUT's local copy
    assert h.get("ChecksumCRC32") == want
    r = c.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert r.get("ChecksumCRC32") == want
    assert r["Body"].read() == data
    # Not asked for: not sent (as plain bale and S3).
    assert "ChecksumCRC32" not in c.head_object(Bucket=bucket, Key="ck")
    # Written upstream directly, read through the gateway (a fill): the upstream's checksum is
    # kept with the local entry.
    weed.client().put_object(Bucket=bucket, Key="direct", Body=data, ChecksumAlgorithm="CRC32")
    assert c.get_object(Bucket=bucket, Key="direct")["Body"].read() == data
    r = c.get_object(Bucket=bucket, Key="direct", ChecksumMode="ENABLED")
    assert r["Body"].read() == data
    assert r.get("ChecksumCRC32") == want
    # The very first read (a miss answered by the fast path's hook, and a HEAD miss) too.
    big = os.urandom(3 * MiB + 17)  # over 1 MiB: served while it arrives
    for key, body in (("first", data), ("first-big", big)):
        weed.client().put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="CRC32")
        h = c.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert h.get("ChecksumCRC32") == crc32_b64(body), key
        r = c.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert r.get("ChecksumCRC32") == crc32_b64(body), key
        assert r["Body"].read() == body, key
    # A range never carries the whole object's checksum (boto3 would check the range's bytes
    # against it), miss or hit.
    for key in ("first-big", "ranged-miss"):
        if key == "ranged-miss":
            weed.client().put_object(Bucket=bucket, Key=key, Body=big, ChecksumAlgorithm="CRC32")
        r = c.get_object(Bucket=bucket, Key=key, Range="bytes=100-2000000", ChecksumMode="ENABLED")
        assert "ChecksumCRC32" not in r, key
        assert r["Body"].read() == big[100:2000001], key


def trailer_put(g, bucket, key, data, crc):
    s = sigv4.Signer(g.access_key, g.secret_key, g.region)
    target, h, body = s.streaming_put(f"127.0.0.1:{g.port}", f"/{bucket}/{key}", data, trailer_crc32=crc)
    req = sigv4.build_request("PUT", target, h, body)
    resp, info = sigv4.raw_exchange("127.0.0.1", g.port, req, timeout=30)
    assert resp is not None, info
    return resp


@pytest.mark.parametrize("size", [0, 5, 200_000])
def test_trailer_checksum_is_checked_and_sent_upstream(weed, bucket, gateway_factory, size):
    g = gateway_factory(weed.endpoint)
    c = g.client()
    data = os.urandom(size)
    r = trailer_put(g, bucket, "good", data, crc32_b64(data))
    assert r.status == 200, r
    up = weed.client().head_object(Bucket=bucket, Key="good", ChecksumMode="ENABLED")
    assert up.get("ChecksumCRC32") == crc32_b64(data)  # the upstream has it, as sent direct
    h = c.head_object(Bucket=bucket, Key="good", ChecksumMode="ENABLED")
    assert (h["ContentLength"], h.get("ChecksumCRC32")) == (size, crc32_b64(data))
    assert c.get_object(Bucket=bucket, Key="good")["Body"].read() == data
    # A trailer that does not match the body: refused, and nothing reaches the upstream.
    r = trailer_put(g, bucket, "bad", data, crc32_b64(data + b"x"))
    assert (r.status, r.code()) == (400, "BadDigest"), r
    assert err(lambda: weed.client().head_object(Bucket=bucket, Key="bad"))[0] == 404
    assert err(lambda: c.head_object(Bucket=bucket, Key="bad"))[0] == 404


def signed_get(port, ak, sk, path, rng):
    s = sigv4.Signer(ak, sk)
    target, h, _ = s.sign_headers("GET", f"127.0.0.1:{port}", path, (), {"Range": rng} if rng else {},
                                  sigv4.EMPTY_SHA256)
    r = requests.get(f"http://127.0.0.1:{port}{target}", headers=h, timeout=30)
    if r.status_code >= 300:
        code = sigv4.RawResponse(r.status_code, "", {}, r.content, False).code()
        return r.status_code, r.headers.get("Content-Range"), code
    return r.status_code, r.headers.get("Content-Range"), r.content


def test_ranges_across_and_past_block_edges_answer_as_the_upstream(weed, bucket, gateway_factory):
    """Every range a client sends, answered by the gateway (miss, then hit; 64 KiB blocks) and
    by SeaweedFS direct: same status, Content-Range, bytes or S3 error code. Before the fix a
    416 of a ranged miss of an empty object came without `Content-Range: bytes */0`."""
    B = 64 * 1024
    g = gateway_factory(weed.endpoint, ["--upstream-block-kb", "64"])
    size = 5 * B - 3
    data = os.urandom(size)
    weed.client().put_object(Bucket=bucket, Key="o", Body=data)
    weed.client().put_object(Bucket=bucket, Key="empty", Body=b"")
    ranges = ["bytes=0-0", f"bytes={B - 1}-{B}", f"bytes={B}-{2 * B - 1}", f"bytes={B - 6}-{3 * B + 6}",
              f"bytes={size - 1}-{size - 1}", f"bytes={size - 10}-", "bytes=-10", f"bytes=-{size + 5}",
              "bytes=0-", f"bytes={size}-{size + 10}", f"bytes={size + 100}-{size + 200}", "bytes=-0",
              f"bytes=0-{size + 1000}", f"bytes={4 * B}-{5 * B + 10}", "bytes=abc", "bytes=0-1,5-6", None]
    for key in ("o", "empty"):
        for round_ in ("miss", "hit"):
            for rng in ranges:
                want = signed_get(weed.port, WEED_AK, WEED_SK, f"/{bucket}/{key}", rng)
                got = signed_get(g.port, g.access_key, g.secret_key, f"/{bucket}/{key}", rng)
                assert got == want, (key, round_, rng)
            # An unsatisfiable spec (last < first) is ignored, as plain bale and RFC 9110 do
            # (SeaweedFS answers 416 here).
            st, cr, body = signed_get(g.port, g.access_key, g.secret_key, f"/{bucket}/{key}", "bytes=100-50")
            assert (st, cr, body) == (200, None, data if key == "o" else b"")


def test_trailer_checksum_of_a_body_over_64_mib_is_checked_while_it_streams(weed, bucket, gateway_factory):
    """Over 64 MiB the body is not read first: it streams upstream with its last chunk held
    back until the trailer matched. A wrong trailer cuts the body short, so the upstream stores
    nothing, and the client gets 400 BadDigest."""
    import hashlib
    g = gateway_factory(weed.endpoint)
    data = os.urandom(64 * MiB + 4097)
    r = trailer_put(g, bucket, "big-bad", data, crc32_b64(data[:-1]))
    assert (r.status, r.code()) == (400, "BadDigest"), r
    assert err(lambda: weed.client().head_object(Bucket=bucket, Key="big-bad"))[0] == 404
    r = trailer_put(g, bucket, "big-good", data, crc32_b64(data))
    assert r.status == 200, r
    h = weed.client().head_object(Bucket=bucket, Key="big-good")
    assert (h["ContentLength"], h["ETag"].strip('"')) == (len(data), hashlib.md5(data).hexdigest())
    assert g.client().get_object(Bucket=bucket, Key="big-good")["Body"].read() == data
