"""The compat flow with the `minio` Python SDK."""

import io
import os
from datetime import timedelta
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402
import urllib3  # noqa: E402
from minio import Minio  # noqa: E402
from minio.commonconfig import CopySource  # noqa: E402
from minio.deleteobjects import DeleteObject  # noqa: E402
from minio.error import S3Error  # noqa: E402

from common import *  # noqa: E402,F401,F403
import common as C  # noqa: E402

PART = 5 * MiB


def client(secret=None):
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10, read=C.CALL_TIMEOUT),
        retries=urllib3.Retry(total=0),
    )
    # No region: like minio-go in Milvus, the SDK asks GetBucketLocation first.
    return Minio(C.HOSTPORT, access_key=C.ACCESS_KEY, secret_key=secret or C.SECRET_KEY,
                 secure=False, http_client=http)


def err_of(fn):
    try:
        fn()
    except S3Error as e:
        return e.response.status, e.code
    raise Fail("call succeeded, want an error")


def get(mc, b, k, **kw):
    r = mc.get_object(b, k, **kw)
    try:
        return r.status, dict((h.lower(), v) for h, v in r.headers.items()), r.read()
    finally:
        r.close()
        r.release_conn()


def user_meta(headers):
    return {k.lower()[len("x-amz-meta-"):]: v for k, v in headers.items() if k.lower().startswith("x-amz-meta-")}


def names(objs):
    return sorted(o.object_name for o in objs)


def flow(f):
    mc = client()
    b = C.BUCKET
    big = big_data()
    meta = {f"x-amz-meta-{k}": v for k, v in META.items()}

    f.step("create bucket")
    mc.make_bucket(b)
    check(mc.bucket_exists(b), "bucket_exists after make_bucket is False")

    f.step("put small objects with content type and metadata")
    for k, body in SMALL.items():
        r = mc.put_object(b, k, io.BytesIO(body), len(body), content_type=CONTENT_TYPE, metadata=meta)
        eq(strip_etag(r.etag), md5_hex(body), f"put_object {k} ETag")

    f.step("put 20 MiB (multipart, 5 MiB parts)")
    r = mc.fput_object(b, BIG_KEY, BIG_PATH, content_type=CONTENT_TYPE, metadata=meta, part_size=PART)
    eq(strip_etag(r.etag), multipart_etag(big, PART), "fput_object ETag (md5 of part md5s)")

    f.step("list by prefix (V2 and V1)")
    objs = list(mc.list_objects(b, prefix="docs/", recursive=True))
    eq(names(objs), PREFIX_DOCS, "list prefix=docs/ recursive")
    eq({o.object_name: o.size for o in objs}, {k: len(SMALL[k]) for k in PREFIX_DOCS}, "list sizes")
    eq(names(mc.list_objects(b, prefix="docs/", recursive=True, use_api_v1=True)), PREFIX_DOCS,
       "list V1 prefix=docs/ recursive")
    eq(names(mc.list_objects(b, recursive=True)), ALL_KEYS, "list all recursive")

    f.step("list by delimiter")
    objs = list(mc.list_objects(b))
    eq(sorted(o.object_name for o in objs if not o.is_dir), ROOT_DELIM_KEYS, "delimiter=/ keys")
    eq(sorted(o.object_name for o in objs if o.is_dir), ROOT_DELIM_PREFIXES, "delimiter=/ prefixes")
    objs = list(mc.list_objects(b, prefix="docs/"))
    eq(sorted(o.object_name for o in objs if not o.is_dir), DOCS_DELIM_KEYS, "prefix=docs/ delimiter=/ keys")
    eq(sorted(o.object_name for o in objs if o.is_dir), DOCS_DELIM_PREFIXES, "prefix=docs/ delimiter=/ prefixes")

    f.step("get whole")
    for k, body in SMALL.items():
        st, h, data = get(mc, b, k)
        bytes_eq(data, body, f"GET {k}")
        eq(h.get("content-type"), CONTENT_TYPE, f"GET {k} Content-Type")
    st, h, data = get(mc, b, BIG_KEY)
    bytes_eq(data, big, "GET big")
    path = os.path.join(C.WORKDIR, "big.out")
    mc.fget_object(b, BIG_KEY, path)
    with open(path, "rb") as fh:
        bytes_eq(fh.read(), big, "fget_object big")

    f.step("get ranged")
    for a, z in ranges_for(PART):
        st, h, data = get(mc, b, BIG_KEY, offset=a, length=z - a + 1)
        eq(st, 206, f"bytes={a}-{z} status")
        eq(h.get("content-range"), f"bytes {a}-{z}/{BIG_SIZE}", f"bytes={a}-{z} Content-Range")
        bytes_eq(data, big[a:z + 1], f"GET bytes={a}-{z}")
    st, h, data = get(mc, b, BIG_KEY, request_headers={"Range": "bytes=-100"})
    eq(st, 206, "bytes=-100 status")
    bytes_eq(data, big[-100:], "GET bytes=-100")
    st, h, data = get(mc, b, BIG_KEY, offset=BIG_SIZE - 100)
    bytes_eq(data, big[-100:], f"GET bytes={BIG_SIZE - 100}-")

    f.step("presigned GET URL")
    url = mc.presigned_get_object(b, BIG_KEY, expires=timedelta(minutes=5))
    a, z = PART - 10, PART + 9
    r = requests.get(url, headers={"Range": f"bytes={a}-{z}"}, timeout=C.CALL_TIMEOUT)
    eq(r.status_code, 206, "presigned ranged GET status")
    bytes_eq(r.content, big[a:z + 1], "presigned ranged GET")

    f.step("head")
    for k, body in SMALL.items():
        s = mc.stat_object(b, k)
        eq(s.size, len(body), f"stat {k} size")
        eq(strip_etag(s.etag), md5_hex(body), f"stat {k} ETag")
        eq(s.content_type, CONTENT_TYPE, f"stat {k} Content-Type")
        eq(user_meta(s.metadata), META, f"stat {k} metadata")
    s = mc.stat_object(b, BIG_KEY)
    eq(s.size, BIG_SIZE, "stat big size")
    eq(strip_etag(s.etag), multipart_etag(big, PART), "stat big ETag")
    eq(s.content_type, CONTENT_TYPE, "stat big Content-Type")
    eq(user_meta(s.metadata), META, "stat big metadata")

    f.step("copy")
    r = mc.copy_object(b, COPY_DST, CopySource(b, COPY_SRC))
    eq(strip_etag(r.etag), md5_hex(SMALL[COPY_SRC]), "copy_object ETag")
    s = mc.stat_object(b, COPY_DST)
    eq(user_meta(s.metadata), META, "copy metadata")
    eq(s.content_type, CONTENT_TYPE, "copy Content-Type")
    bytes_eq(get(mc, b, COPY_DST)[2], SMALL[COPY_SRC], "GET copy")
    mc.copy_object(b, "copies/big-copy.bin", CopySource(b, BIG_KEY))
    bytes_eq(get(mc, b, "copies/big-copy.bin")[2], big, "GET big copy")

    f.step("delete one")
    mc.remove_object(b, DELETE_ONE)
    eq(err_of(lambda: mc.stat_object(b, DELETE_ONE))[0], 404, "stat after delete status")
    eq(err_of(lambda: get(mc, b, DELETE_ONE)), (404, "NoSuchKey"), "GET after delete")

    f.step("delete many")
    rest = names(mc.list_objects(b, recursive=True))
    check(DELETE_ONE not in rest, f"{DELETE_ONE} still listed after delete")
    errors = list(mc.remove_objects(b, [DeleteObject(k) for k in rest]))
    eq([str(e) for e in errors], [], "remove_objects errors")
    eq(names(mc.list_objects(b, recursive=True)), [], "list after remove_objects")

    f.step("delete bucket")
    mc.remove_bucket(b)
    check(not mc.bucket_exists(b), "bucket_exists after remove_bucket is True")

    f.step("wrong secret")
    bad = client(secret=C.WRONG_SECRET)
    eq(err_of(lambda: bad.list_buckets()), (403, "SignatureDoesNotMatch"), "list_buckets with wrong secret")
    eq(err_of(lambda: bad.put_object(b, "x", io.BytesIO(b"x"), 1)), (403, "SignatureDoesNotMatch"),
       "put_object with wrong secret")


if __name__ == "__main__":
    sys.exit(Flow("minio").run(flow))
