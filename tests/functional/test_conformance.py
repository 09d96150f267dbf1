"""S3 behaviours SDKs and tools rely on (issue 12, conformance findings).

Each test pins one behaviour AWS S3 (or MinIO where AWS does not apply) shows and a third-party
conformance suite found missing: retried CompleteMultipartUpload, aws-chunked never stored as
Content-Encoding, multipart checksums (COMPOSITE), list corner cases, empty Content-MD5,
unknown-length PUTs, owner-only ACLs, metadata that must round-trip or be refused.
"""

import base64
import hashlib
import re
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
import zlib

import pytest
from botocore.exceptions import ClientError

from helpers import err_code, needs_own_bale, payload

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
MIB = 1 << 20


def rfc2047(s):
    return "=?UTF-8?B?" + base64.b64encode(s.encode()).decode() + "?="


def crc32_raw(b):
    return zlib.crc32(b).to_bytes(4, "big")


def xml_of(resp):
    return ET.fromstring(resp.body)


# -- 1. repeated CompleteMultipartUpload ---------------------------------------------------

def _mpu(s3, bucket, key, sizes, **create_kw):
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_kw)
    parts = []
    data = b""
    for i, n in enumerate(sizes, start=1):
        body = payload(n, seed=i)
        data += body
        kw = {}
        if "ChecksumAlgorithm" in create_kw:
            kw["ChecksumAlgorithm"] = create_kw["ChecksumAlgorithm"]
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=i, Body=body, **kw)
        p = {"PartNumber": i, "ETag": r["ETag"]}
        for k in ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumSHA1", "ChecksumSHA256"):
            if k in r:
                p[k] = r[k]
        parts.append(p)
    return up, parts, data


def test_complete_retry_answers_same_etag(s3, bucket):
    up, parts, data = _mpu(s3, bucket, "retry", [5 * MIB, 1000])
    first = s3.complete_multipart_upload(Bucket=bucket, Key="retry", UploadId=up["UploadId"],
                                         MultipartUpload={"Parts": parts})
    again = s3.complete_multipart_upload(Bucket=bucket, Key="retry", UploadId=up["UploadId"],
                                         MultipartUpload={"Parts": parts})
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert again["ETag"] == first["ETag"]
    assert again["Key"] == "retry"
    assert s3.get_object(Bucket=bucket, Key="retry")["Body"].read() == data
    # The upload is gone for everything else.
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="retry", UploadId=up["UploadId"])
    assert err_code(e.value) == ("NoSuchUpload", 404)
    # An upload id that never completed is still NoSuchUpload; so is a completed id under
    # another key.
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="retry", UploadId="0" * 32,
                                     MultipartUpload={"Parts": parts})
    assert err_code(e.value) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="other", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": parts})
    assert err_code(e.value) == ("NoSuchUpload", 404)


def test_complete_retry_after_abort_is_no_such_upload(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="ab")
    s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=up["UploadId"])
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="ab", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]})
    assert err_code(e.value) == ("NoSuchUpload", 404)


# -- 2. aws-chunked is transport framing, never stored -------------------------------------

@pytest.mark.parametrize("sent,stored", [
    ("gzip, aws-chunked", "gzip"),
    ("aws-chunked,gzip", "gzip"),
    ("aws-chunked", None),
    ("AWS-Chunked", None),
    ("gzip", "gzip"),
])
def test_put_content_encoding_drops_aws_chunked(server, raw, s3, bucket, sent, stored):
    data = b"hello"
    r = raw.request("PUT", f"/{bucket}/ce", headers={"Content-Encoding": sent}, body=data)
    assert r.status == 200, r
    h = s3.head_object(Bucket=bucket, Key="ce")
    assert h.get("ContentEncoding") == stored
    g = raw.request("GET", f"/{bucket}/ce")
    assert g.status == 200
    assert g.headers.get("content-encoding") == stored
    assert g.body == data


def test_streaming_trailer_put_stores_no_content_encoding(server, raw, s3, bucket):
    # STREAMING-...-TRAILER as the AWS SDKs send it: Content-Encoding: aws-chunked.
    data = payload(70000)
    target, h, body = raw.signer.streaming_put(raw.hostport, f"/{bucket}/st", data,
                                               trailer_crc32=base64.b64encode(crc32_raw(data)).decode())
    assert h["Content-Encoding"] == "aws-chunked"
    resp, info = raw.send("PUT", target, h, body)
    assert resp is not None and resp.status == 200, (resp, info)
    assert "ContentEncoding" not in s3.head_object(Bucket=bucket, Key="st")


def test_create_multipart_content_encoding_drops_aws_chunked(raw, s3, bucket):
    r = raw.request("POST", f"/{bucket}/mce", query=[("uploads", "")],
                    headers={"Content-Encoding": "gzip, aws-chunked"})
    assert r.status == 200, r
    uid = xml_of(r).find(f"{NS}UploadId").text
    p = s3.upload_part(Bucket=bucket, Key="mce", UploadId=uid, PartNumber=1, Body=b"abc")
    s3.complete_multipart_upload(Bucket=bucket, Key="mce", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]})
    assert s3.head_object(Bucket=bucket, Key="mce")["ContentEncoding"] == "gzip"


# -- 3. multipart checksums ----------------------------------------------------------------

def test_multipart_crc32_composite(s3, bucket):
    sizes = [5 * MIB, 5 * MIB, 12345]
    up = s3.create_multipart_upload(Bucket=bucket, Key="ck", ChecksumAlgorithm="CRC32")
    assert up["ChecksumAlgorithm"] == "CRC32"
    assert up.get("ChecksumType") == "COMPOSITE"
    uid = up["UploadId"]
    parts, raws, data = [], [], b""
    for i, n in enumerate(sizes, start=1):
        body = payload(n, seed=10 + i)
        data += body
        r = s3.upload_part(Bucket=bucket, Key="ck", UploadId=uid, PartNumber=i, Body=body,
                           ChecksumAlgorithm="CRC32")
        want = base64.b64encode(crc32_raw(body)).decode()
        assert r["ChecksumCRC32"] == want
        raws.append(crc32_raw(body))
        parts.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    lp = s3.list_parts(Bucket=bucket, Key="ck", UploadId=uid)
    assert lp["ChecksumAlgorithm"] == "CRC32"
    assert lp.get("ChecksumType") == "COMPOSITE"
    assert [p["ChecksumCRC32"] for p in lp["Parts"]] == [p["ChecksumCRC32"] for p in parts]
    composite = base64.b64encode(crc32_raw(b"".join(raws))).decode() + f"-{len(sizes)}"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="ck", UploadId=uid,
                                        MultipartUpload={"Parts": parts})
    assert done["ChecksumCRC32"] == composite
    assert done.get("ChecksumType") == "COMPOSITE"
    h = s3.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert h["ChecksumCRC32"] == composite
    assert h["ChecksumType"] == "COMPOSITE"
    g = s3.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert g["ChecksumCRC32"] == composite
    assert g["Body"].read() == data
    # A retried Complete answers the same checksum.
    again = s3.complete_multipart_upload(Bucket=bucket, Key="ck", UploadId=uid,
                                         MultipartUpload={"Parts": parts})
    assert again["ChecksumCRC32"] == composite and again["ETag"] == done["ETag"]


def test_multipart_sha256_composite_parts_without_header(raw, s3, bucket):
    # Parts sent without any checksum header still get the upload's algorithm computed.
    up = s3.create_multipart_upload(Bucket=bucket, Key="sh", ChecksumAlgorithm="SHA256")
    uid = up["UploadId"]
    body = payload(3000, seed=3)
    r = raw.request("PUT", f"/{bucket}/sh", query=[("partNumber", "1"), ("uploadId", uid)], body=body)
    assert r.status == 200, r
    want = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert r.headers.get("x-amz-checksum-sha256") == want
    done = s3.complete_multipart_upload(Bucket=bucket, Key="sh", UploadId=uid,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r.headers["etag"]}]})
    composite = base64.b64encode(hashlib.sha256(hashlib.sha256(body).digest()).digest()).decode() + "-1"
    assert done["ChecksumSHA256"] == composite
    assert s3.head_object(Bucket=bucket, Key="sh", ChecksumMode="ENABLED")["ChecksumSHA256"] == composite


def test_multipart_part_checksum_mismatch_in_complete(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="bad", ChecksumAlgorithm="CRC32")
    r = s3.upload_part(Bucket=bucket, Key="bad", UploadId=up["UploadId"], PartNumber=1, Body=b"x",
                       ChecksumAlgorithm="CRC32")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="bad", UploadId=up["UploadId"], MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": r["ETag"], "ChecksumCRC32": "AAAAAA=="}]})
    assert err_code(e.value) == ("InvalidPart", 400)
    s3.abort_multipart_upload(Bucket=bucket, Key="bad", UploadId=up["UploadId"])


def test_multipart_part_checksum_algorithm_mismatch(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="alg", ChecksumAlgorithm="CRC32")
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="alg", UploadId=up["UploadId"], PartNumber=1, Body=b"x",
                       ChecksumAlgorithm="SHA256")
    assert err_code(e.value) == ("InvalidRequest", 400)
    s3.abort_multipart_upload(Bucket=bucket, Key="alg", UploadId=up["UploadId"])


def test_multipart_without_checksum_has_none(s3, bucket):
    up, parts, _ = _mpu(s3, bucket, "plain", [100])
    done = s3.complete_multipart_upload(Bucket=bucket, Key="plain", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": parts})
    assert "ChecksumCRC32" not in done
    h = s3.head_object(Bucket=bucket, Key="plain", ChecksumMode="ENABLED")
    assert "ChecksumCRC32" not in h and "ChecksumType" not in h


# -- 4. partNumber beyond the part count ----------------------------------------------------

def test_part_number_beyond_count_is_invalid_part(s3, bucket):
    up, parts, _ = _mpu(s3, bucket, "pn", [5 * MIB, 10])
    s3.complete_multipart_upload(Bucket=bucket, Key="pn", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": parts})
    for op in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as e:
            op(Bucket=bucket, Key="pn", PartNumber=3)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# -- 5. lists --------------------------------------------------------------------------------

def test_list_empty_delimiter_not_echoed(raw, s3, bucket):
    s3.put_object(Bucket=bucket, Key="a/b", Body=b"")
    for q in ([("list-type", "2"), ("delimiter", "")], [("delimiter", "")]):
        r = raw.request("GET", f"/{bucket}", query=q)
        assert r.status == 200, r
        x = xml_of(r)
        assert x.find(f"{NS}Delimiter") is None, r.body
        assert [c.find(f"{NS}Key").text for c in x.findall(f"{NS}Contents")] == ["a/b"]


def test_list_v2_fetch_owner(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"")
    owner = s3.list_buckets()["Owner"]
    r = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)
    assert r["Contents"][0]["Owner"] == owner
    r = s3.list_objects_v2(Bucket=bucket)
    assert "Owner" not in r["Contents"][0]
    r = s3.list_objects(Bucket=bucket)
    assert r["Contents"][0]["Owner"] == owner


def test_list_buckets_paginated(server, s3):
    tag = uuid.uuid4().hex[:8]
    names = sorted(f"lb-{tag}-{i}" for i in range(5))
    for n in names:
        s3.create_bucket(Bucket=n)
    try:
        seen, token, pages = [], None, 0
        while True:
            kw = {"MaxBuckets": 2, "Prefix": f"lb-{tag}-"}
            if token:
                kw["ContinuationToken"] = token
            r = s3.list_buckets(**kw)
            pages += 1
            got = [b["Name"] for b in r["Buckets"]]
            assert len(got) <= 2
            seen += got
            token = r.get("ContinuationToken")
            if not token:
                break
        assert seen == names
        assert pages == 3
        # Without max-buckets: everything, no token.
        r = s3.list_buckets()
        assert "ContinuationToken" not in r
        assert set(names) <= {b["Name"] for b in r["Buckets"]}
        for bad in ("0", "10001", "x"):
            rr = server.raw().request("GET", "/", query=[("max-buckets", bad)])
            assert rr.status == 400, rr
        rr = server.raw().request("GET", "/", query=[("continuation-token", "!!!")])
        assert rr.status == 400 and rr.code() == "InvalidArgument", rr
    finally:
        for n in names:
            s3.delete_bucket(Bucket=n)


@pytest.mark.parametrize("ctl", ["\x01", "\t", "\x1f"])
def test_list_control_char_prefix_roundtrip(raw, s3, bucket, ctl):
    key = f"p{ctl}x/obj{ctl}"
    s3.put_object(Bucket=bucket, Key=key, Body=b"")
    # boto3 lists with encoding-type=url and decodes.
    r = s3.list_objects_v2(Bucket=bucket, Prefix=f"p{ctl}", Delimiter="/")
    assert r["Prefix"] == f"p{ctl}"
    assert [c["Prefix"] for c in r["CommonPrefixes"]] == [f"p{ctl}x/"]
    r = s3.list_objects_v2(Bucket=bucket, Prefix=f"p{ctl}x/")
    assert [c["Key"] for c in r["Contents"]] == [key]
    r = s3.list_objects(Bucket=bucket, Prefix=f"p{ctl}", Delimiter="/")
    assert [c["Prefix"] for c in r["CommonPrefixes"]] == [f"p{ctl}x/"]
    # encoding-type=url by hand: percent-encoded.
    enc = urllib.parse.quote(ctl)
    rr = raw.request("GET", f"/{bucket}", query=[("list-type", "2"), ("prefix", f"p{ctl}"),
                                                ("delimiter", "/"), ("encoding-type", "url")])
    assert rr.status == 200, rr
    x = xml_of(rr)
    assert x.find(f"{NS}Prefix").text == f"p{enc}"
    assert x.find(f"{NS}CommonPrefixes/{NS}Prefix").text == f"p{enc}x/"
    # Without encoding-type: the XML carries the character (as a character reference where
    # XML 1.0 cannot carry it raw) and a lenient parse gives it back.
    rr = raw.request("GET", f"/{bucket}", query=[("list-type", "2"), ("prefix", f"p{ctl}"),
                                                ("delimiter", "/")])
    assert rr.status == 200, rr
    body = rr.body.decode()
    m = re.search(r"<CommonPrefixes><Prefix>(.*?)</Prefix>", body)
    assert m, body
    got = re.sub(r"&#x([0-9a-fA-F]+);|&#([0-9]+);",
                 lambda mm: chr(int(mm.group(1), 16)) if mm.group(1) else chr(int(mm.group(2))), m.group(1))
    assert got == f"p{ctl}x/"


# -- 6. empty Content-MD5 ----------------------------------------------------------------

def test_empty_content_md5_is_invalid_digest(raw, s3, bucket):
    r = raw.request("PUT", f"/{bucket}/md", headers={"Content-MD5": ""}, body=b"abc")
    assert (r.status, r.code()) == (400, "InvalidDigest"), r
    up = s3.create_multipart_upload(Bucket=bucket, Key="md")
    r = raw.request("PUT", f"/{bucket}/md", query=[("partNumber", "1"), ("uploadId", up["UploadId"])],
                    headers={"Content-MD5": ""}, body=b"abc")
    assert (r.status, r.code()) == (400, "InvalidDigest"), r
    s3.abort_multipart_upload(Bucket=bucket, Key="md", UploadId=up["UploadId"])
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="md")


# -- 7. Transfer-Encoding: chunked, no Content-Length ---------------------------------------

def _chunked_put(raw, path, pieces, headers=None, payload_hash="UNSIGNED-PAYLOAD", query=()):
    import sigv4
    h = dict(headers or {})
    h["Transfer-Encoding"] = "chunked"
    target, h, _ = raw.signer.sign_headers("PUT", raw.hostport, path, query, h, payload_hash,
                                           unsigned_headers=("transfer-encoding",))
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"
    resp, info = sigv4.raw_exchange(raw.host, raw.port, sigv4.build_request("PUT", target, h, body), 60)
    assert resp is not None, info
    return resp


def _needs_http_hook(r):
    """The unknown-length PUT needs src/http.rs's `unknown_length_put` (which marks the
    request with `s3::UnknownLength`); without it s3s answers 411."""
    assert (r.status, r.code()) != (411, "MissingContentLength"), "unknown-length PUT refused"


@pytest.mark.parametrize("sizes", [[0], [1000], [100, 3 * MIB, 7], [9 * MIB, 9 * MIB, 1]])
def test_put_transfer_encoding_chunked_unsigned(raw, s3, bucket, sizes):
    pieces = [payload(n, seed=i) for i, n in enumerate(sizes)]
    data = b"".join(pieces)
    r = _chunked_put(raw, f"/{bucket}/te", pieces)
    _needs_http_hook(r)
    assert r.status == 200, r
    assert r.headers["etag"] == '"%s"' % hashlib.md5(data).hexdigest()
    g = s3.get_object(Bucket=bucket, Key="te")
    assert g["ContentLength"] == len(data)
    assert g["Body"].read() == data
    assert g["ETag"] == r.headers["etag"]


def test_put_transfer_encoding_chunked_checks(raw, s3, bucket):
    data = b"hello world"
    good = base64.b64encode(hashlib.md5(data).digest()).decode()
    r = _chunked_put(raw, f"/{bucket}/te2", [data], headers={"Content-MD5": good})
    _needs_http_hook(r)
    assert r.status == 200, r
    r = _chunked_put(raw, f"/{bucket}/te2", [b"other"], headers={"Content-MD5": good})
    assert (r.status, r.code()) == (400, "BadDigest"), r
    assert s3.get_object(Bucket=bucket, Key="te2")["Body"].read() == data
    # A signed payload (sha256 of the body) needs its length, as in S3: 411.
    r = _chunked_put(raw, f"/{bucket}/te3", [data], payload_hash=hashlib.sha256(data).hexdigest())
    assert (r.status, r.code()) == (411, "MissingContentLength"), r
    # So does a part.
    up = s3.create_multipart_upload(Bucket=bucket, Key="te4")
    r = _chunked_put(raw, f"/{bucket}/te4", [data],
                     query=[("partNumber", "1"), ("uploadId", up["UploadId"])])
    assert (r.status, r.code()) == (411, "MissingContentLength"), r
    s3.abort_multipart_upload(Bucket=bucket, Key="te4", UploadId=up["UploadId"])


# -- 8. ACLs -------------------------------------------------------------------------------

def test_acls_owner_full_control(server, raw, s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x")
    owner = s3.list_buckets()["Owner"]
    for r in (s3.get_object_acl(Bucket=bucket, Key="o"), s3.get_bucket_acl(Bucket=bucket)):
        assert r["Owner"] == owner
        assert len(r["Grants"]) == 1
        g = r["Grants"][0]
        assert g["Permission"] == "FULL_CONTROL"
        assert g["Grantee"]["Type"] == "CanonicalUser"
        assert g["Grantee"]["ID"] == owner["ID"]
    s3.put_object_acl(Bucket=bucket, Key="o", ACL="private")
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert raw.request("PUT", f"/{bucket}/o", query=[("acl", "")]).status == 200
    assert raw.request("PUT", f"/{bucket}", query=[("acl", "")]).status == 200
    # An AccessControlPolicy that grants the owner FULL_CONTROL and nothing else is "private".
    policy = {"Owner": owner, "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]},
                                          "Permission": "FULL_CONTROL"}]}
    s3.put_object_acl(Bucket=bucket, Key="o", AccessControlPolicy=policy)
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy=policy)
    # Anything else is not implemented.
    for call in (lambda: s3.put_object_acl(Bucket=bucket, Key="o", ACL="public-read"),
                 lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read"),
                 lambda: s3.put_object_acl(Bucket=bucket, Key="o", GrantRead="id=someone"),
                 lambda: s3.put_bucket_acl(Bucket=bucket, GrantFullControl="id=someone"),
                 lambda: s3.put_object_acl(Bucket=bucket, Key="o", AccessControlPolicy={
                     "Owner": owner, "Grants": policy["Grants"] + [{
                         "Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                         "Permission": "READ"}]})):
        with pytest.raises(ClientError) as e:
            call()
        assert err_code(e.value) == ("NotImplemented", 501)
    # Missing object / bucket.
    with pytest.raises(ClientError) as e:
        s3.get_object_acl(Bucket=bucket, Key="missing")
    assert err_code(e.value) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as e:
        s3.put_object_acl(Bucket=bucket, Key="missing", ACL="private")
    assert err_code(e.value) == ("NoSuchKey", 404)
    for call in (lambda: s3.get_bucket_acl(Bucket="no-such-bucket-acl"),
                 lambda: s3.put_bucket_acl(Bucket="no-such-bucket-acl", ACL="private"),
                 lambda: s3.get_object_acl(Bucket="no-such-bucket-acl", Key="o")):
        with pytest.raises(ClientError) as e:
            call()
        assert err_code(e.value) == ("NoSuchBucket", 404)


# -- 9. metadata ---------------------------------------------------------------------------

def test_non_ascii_metadata_boto3(s3, bucket):
    value = "ключ ü"
    s3.put_object(Bucket=bucket, Key="nm", Body=b"x", Metadata={"k": rfc2047(value), "plain": "v"})
    for r in (s3.head_object(Bucket=bucket, Key="nm"),
              s3.get_object(Bucket=bucket, Key="nm"),  # fast path
              s3.get_object(Bucket=bucket, Key="nm", ChecksumMode="ENABLED")):  # s3s path
        assert r["Metadata"]["plain"] == "v"
        got = r["Metadata"]["k"]
        assert got.startswith("=?UTF-8?B?"), got
        assert base64.b64decode(got[10:-2]).decode() == value


def test_non_ascii_metadata_raw_utf8(raw, bucket):
    value = "ключ ü"
    r = raw.request("PUT", f"/{bucket}/nr", headers={"x-amz-meta-k": value}, body=b"x")
    assert r.status == 200, r
    for h in ({}, {"x-amz-checksum-mode": "ENABLED"}):  # fast path, then s3s
        for method in ("GET", "HEAD"):
            g = raw.request(method, f"/{bucket}/nr", headers=h)
            assert g.status == 200, g
            got = g.headers["x-amz-meta-k"]
            assert got.startswith("=?UTF-8?B?") and got.endswith("?="), got
            assert base64.b64decode(got[10:-2]).decode() == value


def test_non_ascii_metadata_minio(server, bucket):
    import io
    m = server.minio()
    value = "ключ ü"
    m.put_object(bucket, "mm", io.BytesIO(b"abc"), 3, metadata={"k": rfc2047(value)})
    st = m.stat_object(bucket, "mm")
    got = st.metadata["x-amz-meta-k"]
    assert base64.b64decode(got[10:-2]).decode() == value


BAD_VALUES = ["a\r\nb", "a\nb", "a\x00b", "a\x01b", "a\x7fb"]


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_metadata_value_with_control_chars_refused(raw, s3, bucket, bad):
    # A header cannot carry these raw; RFC 2047 can smuggle them in. Refuse at write time.
    h = {"x-amz-meta-k": rfc2047(bad)}
    r = raw.request("PUT", f"/{bucket}/cc", headers=h, body=b"x")
    assert (r.status, r.code()) == (400, "InvalidArgument"), r
    r = raw.request("POST", f"/{bucket}/cc", query=[("uploads", "")], headers=h)
    assert (r.status, r.code()) == (400, "InvalidArgument"), r
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    r = raw.request("PUT", f"/{bucket}/cc", headers=dict(h, **{
        "x-amz-copy-source": f"/{bucket}/src", "x-amz-metadata-directive": "REPLACE"}))
    assert (r.status, r.code()) == (400, "InvalidArgument"), r
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="cc")
    assert err_code(e.value)[1] == 404


def test_metadata_tab_and_encoded_printable_accepted(raw, s3, bucket):
    r = raw.request("PUT", f"/{bucket}/tab", headers={"x-amz-meta-k": "a\tb", "Content-Type": "text/plain"}, body=b"x")
    assert r.status == 200, r
    g = raw.request("GET", f"/{bucket}/tab")
    assert g.status == 200 and g.headers["content-type"] == "text/plain"
    got = g.headers["x-amz-meta-k"]
    assert got == "a\tb" or base64.b64decode(got[10:-2]).decode() == "a\tb"


def test_metadata_too_many_bytes_after_decoding_still_limited(raw, bucket):
    r = raw.request("PUT", f"/{bucket}/big", headers={"x-amz-meta-k": rfc2047("ю" * 1100)}, body=b"x")
    assert (r.status, r.code()) == (400, "MetadataTooLarge"), r


# -- own servers: limits and restarts --------------------------------------------------------

def _own_client(b):
    from conftest import Server
    return Server(b.endpoint, b.access_key, b.secret_key, b.region, proc=b)


@needs_own_bale
def test_put_transfer_encoding_chunked_limit_enforced_while_streaming():
    import baleproc
    limit = 9 * MIB  # the test hook lowers the 5 GiB limit so it can be crossed quickly
    b = baleproc.Bale(env={"BALE_TEST_MAX_UNKNOWN_LENGTH_BYTES": str(limit)})
    b.start()
    try:
        srv = _own_client(b)
        s3, raw = srv.boto3(), srv.raw()
        s3.create_bucket(Bucket="lim")
        exact = payload(limit, seed=1)
        r = _chunked_put(raw, "/lim/exact", [exact[:MIB], exact[MIB:]])
        _needs_http_hook(r)
        assert r.status == 200, r
        assert s3.get_object(Bucket="lim", Key="exact")["Body"].read() == exact
        r = _chunked_put(raw, "/lim/over", [exact, b"x"])
        assert (r.status, r.code()) == (400, "EntityTooLarge"), r
        # A body that fails after pieces were spooled (bad digest) leaves nothing behind.
        r = _chunked_put(raw, "/lim/bad", [payload(6 * MIB)],
                         headers={"Content-MD5": base64.b64encode(b"\0" * 16).decode()})
        assert (r.status, r.code()) == (400, "BadDigest"), r
        for k in ("over", "bad"):
            with pytest.raises(ClientError):
                s3.head_object(Bucket="lim", Key=k)
        assert s3.list_multipart_uploads(Bucket="lim").get("Uploads", []) == []
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="lim")["Contents"]] == ["exact"]
        s3.delete_object(Bucket="lim", Key="exact")
        s3.delete_bucket(Bucket="lim")
    finally:
        b.stop()
        log = b.log_tail(20000)
        b.cleanup()
        assert "panicked" not in log


@needs_own_bale
def test_complete_retry_memory_is_lost_on_restart():
    import baleproc
    b = baleproc.Bale(keep_data=True)
    b.start()
    try:
        s3 = _own_client(b).boto3()
        s3.create_bucket(Bucket="rstart")
        up, parts, data = _mpu(s3, "rstart", "k", [100])
        first = s3.complete_multipart_upload(Bucket="rstart", Key="k", UploadId=up["UploadId"],
                                             MultipartUpload={"Parts": parts})
        assert s3.complete_multipart_upload(Bucket="rstart", Key="k", UploadId=up["UploadId"],
                                            MultipartUpload={"Parts": parts})["ETag"] == first["ETag"]
        # Overwritten object: the upload no longer describes it.
        s3.put_object(Bucket="rstart", Key="k", Body=b"new")
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket="rstart", Key="k", UploadId=up["UploadId"],
                                         MultipartUpload={"Parts": parts})
        assert err_code(e.value) == ("NoSuchUpload", 404)
        up2, parts2, _ = _mpu(s3, "rstart", "k2", [100])
        s3.complete_multipart_upload(Bucket="rstart", Key="k2", UploadId=up2["UploadId"],
                                     MultipartUpload={"Parts": parts2})
        b.restart()
        s3 = _own_client(b).boto3()
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket="rstart", Key="k2", UploadId=up2["UploadId"],
                                         MultipartUpload={"Parts": parts2})
        assert err_code(e.value) == ("NoSuchUpload", 404)
    finally:
        b.keep_data = False
        b.cleanup()


def test_multipart_crc32_full_object(s3, bucket):
    sizes = [5 * MIB, 777]
    up = s3.create_multipart_upload(Bucket=bucket, Key="fo", ChecksumAlgorithm="CRC32",
                                    ChecksumType="FULL_OBJECT")
    assert up["ChecksumType"] == "FULL_OBJECT"
    parts, data = [], b""
    for i, n in enumerate(sizes, start=1):
        body = payload(n, seed=20 + i)
        data += body
        r = s3.upload_part(Bucket=bucket, Key="fo", UploadId=up["UploadId"], PartNumber=i, Body=body,
                           ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    whole = base64.b64encode(crc32_raw(data)).decode()
    # A wrong full-object checksum stated on Complete is refused; the right one accepted.
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="fo", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": parts}, ChecksumCRC32="AAAAAA==")
    assert err_code(e.value) == ("BadDigest", 400)
    done = s3.complete_multipart_upload(Bucket=bucket, Key="fo", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": parts}, ChecksumCRC32=whole,
                                        ChecksumType="FULL_OBJECT")
    assert done["ChecksumCRC32"] == whole and done["ChecksumType"] == "FULL_OBJECT"
    h = s3.head_object(Bucket=bucket, Key="fo", ChecksumMode="ENABLED")
    assert h["ChecksumCRC32"] == whole and h["ChecksumType"] == "FULL_OBJECT"
    s3.copy_object(Bucket=bucket, Key="fo2", CopySource={"Bucket": bucket, "Key": "fo"})
    h = s3.head_object(Bucket=bucket, Key="fo2", ChecksumMode="ENABLED")
    assert h["ChecksumCRC32"] == whole and h["ChecksumType"] == "FULL_OBJECT"
    # SHA-256 cannot be full-object; CRC64NVME cannot be composite.
    for alg, typ in (("SHA256", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE")):
        with pytest.raises(ClientError) as e:
            s3.create_multipart_upload(Bucket=bucket, Key="x", ChecksumAlgorithm=alg, ChecksumType=typ)
        assert err_code(e.value) == ("InvalidRequest", 400)


def test_upload_part_copy_carries_upload_checksum(s3, bucket):
    src = payload(6 * MIB, seed=30)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    up = s3.create_multipart_upload(Bucket=bucket, Key="pc", ChecksumAlgorithm="CRC32")
    c = s3.upload_part_copy(Bucket=bucket, Key="pc", UploadId=up["UploadId"], PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=f"bytes=0-{5 * MIB - 1}")
    assert c["CopyPartResult"]["ChecksumCRC32"] == base64.b64encode(crc32_raw(src[:5 * MIB])).decode()
    tail = b"tail"
    p2 = s3.upload_part(Bucket=bucket, Key="pc", UploadId=up["UploadId"], PartNumber=2, Body=tail,
                        ChecksumAlgorithm="CRC32")
    done = s3.complete_multipart_upload(Bucket=bucket, Key="pc", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": c["CopyPartResult"]["ETag"]},
                  {"PartNumber": 2, "ETag": p2["ETag"]}]})
    composite = base64.b64encode(crc32_raw(crc32_raw(src[:5 * MIB]) + crc32_raw(tail))).decode() + "-2"
    assert done["ChecksumCRC32"] == composite
    # CopyObject keeps a full-object checksum (still true of the same bytes), drops a composite one.
    s3.copy_object(Bucket=bucket, Key="pc2", CopySource={"Bucket": bucket, "Key": "pc"})
    assert "ChecksumCRC32" not in s3.head_object(Bucket=bucket, Key="pc2", ChecksumMode="ENABLED")
