"""The compat flow with boto3 (client API plus the managed transfer for multipart)."""

import base64
import datetime
import os
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import boto3  # noqa: E402
import requests  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from common import *  # noqa: E402,F401,F403
import common as C  # noqa: E402

PART = 8 * MiB


def client(secret=None):
    cfg = Config(
        s3={"addressing_style": "path"},
        connect_timeout=10,
        read_timeout=C.CALL_TIMEOUT,
        retries={"max_attempts": 1, "mode": "standard"},
        signature_version="s3v4",
    )
    return boto3.client(
        "s3",
        endpoint_url=C.ENDPOINT,
        aws_access_key_id=C.ACCESS_KEY,
        aws_secret_access_key=secret or C.SECRET_KEY,
        region_name=C.REGION,
        config=cfg,
    )


def err_of(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response.get("Error", {}).get("Code")
    raise Fail("call succeeded, want an error")


def keys_of(resp):
    return [o["Key"] for o in resp.get("Contents", [])]


def prefixes_of(resp):
    return [p["Prefix"] for p in resp.get("CommonPrefixes", [])]


def flow(f):
    s3 = client()
    b = C.BUCKET
    big = big_data()

    f.step("create bucket")
    s3.create_bucket(Bucket=b)
    s3.head_bucket(Bucket=b)

    f.step("put small objects with content type and metadata")
    for k, body in SMALL.items():
        r = s3.put_object(Bucket=b, Key=k, Body=body, ContentType=CONTENT_TYPE, Metadata=META)
        eq(strip_etag(r["ETag"]), md5_hex(body), f"PutObject {k} ETag")

    f.step("put 20 MiB (multipart, 8 MiB parts)")
    tc = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=4, use_threads=True)
    s3.upload_file(BIG_PATH, b, BIG_KEY, ExtraArgs={"ContentType": CONTENT_TYPE, "Metadata": META}, Config=tc)

    f.step("list by prefix (V2 and V1)")
    r = s3.list_objects_v2(Bucket=b, Prefix="docs/")
    eq(keys_of(r), PREFIX_DOCS, "ListObjectsV2 prefix=docs/ keys")
    eq(r.get("KeyCount"), len(PREFIX_DOCS), "ListObjectsV2 KeyCount")
    sizes = {o["Key"]: o["Size"] for o in r["Contents"]}
    eq(sizes, {k: len(SMALL[k]) for k in PREFIX_DOCS}, "ListObjectsV2 sizes")
    r1 = s3.list_objects(Bucket=b, Prefix="docs/")
    eq(keys_of(r1), PREFIX_DOCS, "ListObjects(V1) prefix=docs/ keys")
    r = s3.list_objects_v2(Bucket=b)
    eq(keys_of(r), ALL_KEYS, "ListObjectsV2 all keys")

    f.step("list in pages of 2 (V2 continuation token, V1 marker)")
    for op in ("list_objects_v2", "list_objects"):
        pages = list(s3.get_paginator(op).paginate(Bucket=b, PaginationConfig={"PageSize": 2}))
        eq([k for p in pages for k in keys_of(p)], ALL_KEYS, f"{op} pages of 2: keys")
        check(len(pages) >= len(ALL_KEYS) // 2, f"{op} pages of 2: only {len(pages)} pages")
        pages = list(s3.get_paginator(op).paginate(Bucket=b, Delimiter="/", PaginationConfig={"PageSize": 1}))
        eq([k for p in pages for k in keys_of(p)], ROOT_DELIM_KEYS, f"{op} delimiter=/ pages of 1: keys")
        eq([x for p in pages for x in prefixes_of(p)], ROOT_DELIM_PREFIXES, f"{op} delimiter=/ pages of 1: prefixes")

    f.step("list by delimiter")
    r = s3.list_objects_v2(Bucket=b, Delimiter="/")
    eq(keys_of(r), ROOT_DELIM_KEYS, "delimiter=/ keys")
    eq(prefixes_of(r), ROOT_DELIM_PREFIXES, "delimiter=/ common prefixes")
    r = s3.list_objects_v2(Bucket=b, Prefix="docs/", Delimiter="/")
    eq(keys_of(r), DOCS_DELIM_KEYS, "prefix=docs/ delimiter=/ keys")
    eq(prefixes_of(r), DOCS_DELIM_PREFIXES, "prefix=docs/ delimiter=/ common prefixes")
    r1 = s3.list_objects(Bucket=b, Delimiter="/")
    eq(prefixes_of(r1), ROOT_DELIM_PREFIXES, "ListObjects(V1) delimiter=/ common prefixes")

    f.step("get whole")
    for k, body in SMALL.items():
        r = s3.get_object(Bucket=b, Key=k)
        bytes_eq(r["Body"].read(), body, f"GET {k}")
        eq(r["ContentType"], CONTENT_TYPE, f"GET {k} Content-Type")
    r = s3.get_object(Bucket=b, Key=BIG_KEY)
    eq(r["ContentLength"], BIG_SIZE, "GET big Content-Length")
    bytes_eq(r["Body"].read(), big, "GET big")

    path = os.path.join(C.WORKDIR, "big.out")
    s3.download_file(b, BIG_KEY, path, Config=tc)  # parallel ranged GETs of 8 MiB
    with open(path, "rb") as fh:
        bytes_eq(fh.read(), big, "download_file big (parallel ranged GETs)")
    os.unlink(path)

    f.step("get ranged")
    for a, z in ranges_for(PART):
        r = s3.get_object(Bucket=b, Key=BIG_KEY, Range=f"bytes={a}-{z}")
        eq(r["ResponseMetadata"]["HTTPStatusCode"], 206, f"bytes={a}-{z} status")
        eq(r.get("ContentRange"), f"bytes {a}-{z}/{BIG_SIZE}", f"bytes={a}-{z} Content-Range")
        bytes_eq(r["Body"].read(), big[a:z + 1], f"GET bytes={a}-{z}")
    r = s3.get_object(Bucket=b, Key=BIG_KEY, Range="bytes=-100")
    eq(r["ResponseMetadata"]["HTTPStatusCode"], 206, "bytes=-100 status")
    eq(r.get("ContentRange"), f"bytes {BIG_SIZE - 100}-{BIG_SIZE - 1}/{BIG_SIZE}", "bytes=-100 Content-Range")
    bytes_eq(r["Body"].read(), big[-100:], "GET bytes=-100")
    a = BIG_SIZE - 3 * PART // 2
    r = s3.get_object(Bucket=b, Key=BIG_KEY, Range=f"bytes={a}-")
    bytes_eq(r["Body"].read(), big[a:], f"GET bytes={a}-")

    r = s3.get_object(Bucket=b, Key=BIG_KEY, PartNumber=2)
    eq((r["ResponseMetadata"]["HTTPStatusCode"], r.get("ContentRange"), r.get("PartsCount")),
       (206, f"bytes {PART}-{2 * PART - 1}/{BIG_SIZE}", 3), "GET partNumber=2 status, Content-Range, PartsCount")
    bytes_eq(r["Body"].read(), big[PART:2 * PART], "GET partNumber=2")

    f.step("conditional GET and HEAD")
    etag = s3.head_object(Bucket=b, Key=BIG_KEY)["ETag"]
    eq(err_of(lambda: s3.get_object(Bucket=b, Key=BIG_KEY, IfNoneMatch=etag))[0], 304, "GET If-None-Match: <etag>")
    eq(err_of(lambda: s3.head_object(Bucket=b, Key=BIG_KEY, IfMatch='"0123"'))[0], 412, "HEAD If-Match: other")
    r = s3.get_object(Bucket=b, Key=BIG_KEY, IfMatch=etag, Range="bytes=-10")
    bytes_eq(r["Body"].read(), big[-10:], "GET If-Match: <etag> with Range")

    f.step("presigned GET and PUT URLs")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": BIG_KEY}, ExpiresIn=300)
    a, z = PART - 10, PART + 9
    r = requests.get(url, headers={"Range": f"bytes={a}-{z}"}, timeout=C.CALL_TIMEOUT)
    eq(r.status_code, 206, "presigned ranged GET status")
    bytes_eq(r.content, big[a:z + 1], "presigned ranged GET")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "presigned/put.txt"}, ExpiresIn=300)
    r = requests.put(url, data=b"put through a presigned URL", timeout=C.CALL_TIMEOUT)
    eq(r.status_code, 200, f"presigned PUT status ({r.text[:200]})")
    bytes_eq(s3.get_object(Bucket=b, Key="presigned/put.txt")["Body"].read(), b"put through a presigned URL",
             "GET after presigned PUT")
    s3.delete_object(Bucket=b, Key="presigned/put.txt")
    bad = client(secret=C.WRONG_SECRET)
    url = bad.generate_presigned_url("get_object", Params={"Bucket": b, "Key": BIG_KEY}, ExpiresIn=300)
    r = requests.get(url, timeout=C.CALL_TIMEOUT)
    eq(r.status_code, 403, "presigned GET signed with a wrong secret")

    f.step("head")
    for k, body in SMALL.items():
        h = s3.head_object(Bucket=b, Key=k)
        eq(h["ContentLength"], len(body), f"HEAD {k} size")
        eq(strip_etag(h["ETag"]), md5_hex(body), f"HEAD {k} ETag")
        eq(h["ContentType"], CONTENT_TYPE, f"HEAD {k} Content-Type")
        eq(h["Metadata"], META, f"HEAD {k} metadata")
    # boto3 sends x-amz-checksum-crc32 with each PUT: stored and returned on request.
    k = "docs/b.txt"
    h = s3.head_object(Bucket=b, Key=k, ChecksumMode="ENABLED")
    want = base64.b64encode(zlib.crc32(SMALL[k]).to_bytes(4, "big")).decode()
    eq(h.get("ChecksumCRC32"), want, f"HEAD {k} x-amz-checksum-mode: ENABLED ChecksumCRC32")
    h = s3.head_object(Bucket=b, Key=BIG_KEY)
    eq(h["ContentLength"], BIG_SIZE, "HEAD big size")
    eq(strip_etag(h["ETag"]), multipart_etag(big, PART), "HEAD big ETag (md5 of part md5s)")
    eq(h["ContentType"], CONTENT_TYPE, "HEAD big Content-Type")
    eq(h["Metadata"], META, "HEAD big metadata")

    f.step("standard headers stored; response-* overrides (signed and presigned)")
    exp = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    hk = "hdr/page.html"
    s3.put_object(Bucket=b, Key=hk, Body=b"<p>hi</p>", ContentType="text/html; charset=utf-8",
                  CacheControl="max-age=60", ContentDisposition='inline; filename="page.html"',
                  ContentEncoding="identity", ContentLanguage="de-CH", Expires=exp)
    h = s3.head_object(Bucket=b, Key=hk)
    eq((h.get("ContentType"), h.get("CacheControl"), h.get("ContentDisposition"), h.get("ContentEncoding"),
        h.get("ContentLanguage"), h.get("Expires")),
       ("text/html; charset=utf-8", "max-age=60", 'inline; filename="page.html"', "identity", "de-CH", exp),
       "HEAD standard headers")
    r = s3.get_object(Bucket=b, Key=hk, ResponseContentType="application/octet-stream",
                      ResponseContentDisposition='attachment; filename="x y.html"', ResponseCacheControl="no-cache",
                      ResponseContentLanguage="fr", ResponseContentEncoding="identity")
    eq((r.get("ContentType"), r.get("ContentDisposition"), r.get("CacheControl"), r.get("ContentLanguage")),
       ("application/octet-stream", 'attachment; filename="x y.html"', "no-cache", "fr"), "GET response-* overrides")
    bytes_eq(r["Body"].read(), b"<p>hi</p>", "GET with overrides body")
    url = s3.generate_presigned_url("get_object", ExpiresIn=300, Params={
        "Bucket": b, "Key": hk, "ResponseContentDisposition": 'attachment; filename="dl.html"'})
    r = requests.get(url, timeout=C.CALL_TIMEOUT)
    eq((r.status_code, r.headers.get("Content-Disposition")), (200, 'attachment; filename="dl.html"'),
       "presigned GET with response-content-disposition")
    s3.delete_object(Bucket=b, Key=hk)

    f.step("copy")
    r = s3.copy_object(Bucket=b, Key=COPY_DST, CopySource={"Bucket": b, "Key": COPY_SRC})
    eq(strip_etag(r["CopyObjectResult"]["ETag"]), md5_hex(SMALL[COPY_SRC]), "CopyObject ETag")
    h = s3.head_object(Bucket=b, Key=COPY_DST)
    eq(h["Metadata"], META, "copy metadata (directive COPY)")
    eq(h["ContentType"], CONTENT_TYPE, "copy Content-Type")
    bytes_eq(s3.get_object(Bucket=b, Key=COPY_DST)["Body"].read(), SMALL[COPY_SRC], "GET copy")
    # Managed copy of the big object: multipart copy (UploadPartCopy with ranges).
    s3.copy({"Bucket": b, "Key": BIG_KEY}, b, "copies/big-copy.bin", Config=tc)
    bytes_eq(s3.get_object(Bucket=b, Key="copies/big-copy.bin")["Body"].read(), big, "GET big copy (UploadPartCopy)")

    f.step("multipart bookkeeping (ListParts, ListMultipartUploads, Abort)")
    key = "mpu/aborted.bin"
    up = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
    p1 = s3.upload_part(Bucket=b, Key=key, UploadId=up, PartNumber=1, Body=big[:5 * MiB])
    p2 = s3.upload_part(Bucket=b, Key=key, UploadId=up, PartNumber=2, Body=big[5 * MiB:5 * MiB + 1000])
    parts = s3.list_parts(Bucket=b, Key=key, UploadId=up)["Parts"]
    eq([(p["PartNumber"], p["Size"], strip_etag(p["ETag"])) for p in parts],
       [(1, 5 * MiB, strip_etag(p1["ETag"])), (2, 1000, strip_etag(p2["ETag"]))], "ListParts")
    eq(strip_etag(p1["ETag"]), md5_hex(big[:5 * MiB]), "UploadPart ETag")
    ups = s3.list_multipart_uploads(Bucket=b).get("Uploads", [])
    eq([(u["Key"], u["UploadId"]) for u in ups], [(key, up)], "ListMultipartUploads")
    s3.abort_multipart_upload(Bucket=b, Key=key, UploadId=up)
    eq(err_of(lambda: s3.list_parts(Bucket=b, Key=key, UploadId=up)), (404, "NoSuchUpload"), "ListParts after abort")
    eq(s3.list_multipart_uploads(Bucket=b).get("Uploads", []), [], "ListMultipartUploads after abort")
    eq(err_of(lambda: s3.head_object(Bucket=b, Key=key))[0], 404, "HEAD of an aborted upload's key")

    f.step("wrong secret on GET and HEAD (the server's GET fast path verifies SigV4 itself)")
    bad = client(secret=C.WRONG_SECRET)
    eq(err_of(lambda: bad.get_object(Bucket=b, Key=BIG_KEY)), (403, "SignatureDoesNotMatch"), "GET with wrong secret")
    eq(err_of(lambda: bad.get_object(Bucket=b, Key=BIG_KEY, Range="bytes=0-9")), (403, "SignatureDoesNotMatch"),
       "ranged GET with wrong secret")
    eq(err_of(lambda: bad.head_object(Bucket=b, Key=BIG_KEY))[0], 403, "HEAD with wrong secret")
    eq(err_of(lambda: bad.get_object(Bucket=b, Key="no/such/key")), (403, "SignatureDoesNotMatch"),
       "GET of a missing key with wrong secret (no existence leak)")

    f.step("delete one")
    s3.delete_object(Bucket=b, Key=DELETE_ONE)
    eq(err_of(lambda: s3.head_object(Bucket=b, Key=DELETE_ONE))[0], 404, "HEAD after delete status")
    st, code = err_of(lambda: s3.get_object(Bucket=b, Key=DELETE_ONE))
    eq((st, code), (404, "NoSuchKey"), "GET after delete")

    f.step("delete many")
    rest = keys_of(s3.list_objects_v2(Bucket=b))
    check(DELETE_ONE not in rest, f"{DELETE_ONE} still listed after delete")
    r = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k} for k in rest], "Quiet": False})
    eq(sorted(d["Key"] for d in r.get("Deleted", [])), sorted(rest), "DeleteObjects Deleted")
    eq(r.get("Errors", []), [], "DeleteObjects Errors")
    eq(keys_of(s3.list_objects_v2(Bucket=b)), [], "list after DeleteObjects")

    f.step("delete bucket")
    s3.delete_bucket(Bucket=b)
    eq(err_of(lambda: s3.head_bucket(Bucket=b))[0], 404, "HEAD bucket after delete")

    f.step("wrong secret")
    bad = client(secret=C.WRONG_SECRET)
    eq(err_of(lambda: bad.list_buckets()), (403, "SignatureDoesNotMatch"), "ListBuckets with wrong secret")
    eq(err_of(lambda: bad.put_object(Bucket=b, Key="x", Body=b"x")), (403, "SignatureDoesNotMatch"),
       "PutObject with wrong secret")


if __name__ == "__main__":
    sys.exit(Flow("boto3").run(flow))
