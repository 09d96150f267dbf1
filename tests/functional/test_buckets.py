"""Bucket operations: CreateBucket, HeadBucket, DeleteBucket, ListBuckets, GetBucketLocation."""

import datetime
import uuid

import pytest
from botocore.exceptions import ClientError

from helpers import err_code


def new_name():
    return "b-" + uuid.uuid4().hex[:16]


def test_create_head_list_delete(s3):
    name = new_name()
    r = s3.create_bucket(Bucket=name)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    lb = s3.list_buckets()
    found = [b for b in lb["Buckets"] if b["Name"] == name]
    assert len(found) == 1, lb["Buckets"]
    created = found[0]["CreationDate"]
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - created).total_seconds()) < 300, created
    assert "Owner" in lb
    r = s3.delete_bucket(Bucket=name)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert err_code(e.value)[1] == 404
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_list_buckets_sorted(s3):
    names = sorted(new_name() for _ in range(3))
    for n in reversed(names):
        s3.create_bucket(Bucket=n)
    try:
        listed = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert listed == sorted(listed), "ListBuckets is ordered by name on S3"
        for n in names:
            assert n in listed
    finally:
        for n in names:
            s3.delete_bucket(Bucket=n)


def test_create_twice_already_owned(s3, raw):
    name = new_name()
    s3.create_bucket(Bucket=name)
    try:
        with pytest.raises(ClientError) as e:
            s3.create_bucket(Bucket=name)
        assert err_code(e.value) == ("BucketAlreadyOwnedByYou", 409)
        r = raw.request("PUT", f"/{name}")
        assert r.status == 409 and r.code() == "BucketAlreadyOwnedByYou", r
        assert r.headers.get("content-type", "").startswith(("application/xml", "text/xml")), r.headers
    finally:
        s3.delete_bucket(Bucket=name)


def test_head_missing_bucket_404(s3, raw):
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=new_name())
    assert err_code(e.value)[1] == 404
    r = raw.request("HEAD", f"/{new_name()}")
    assert r.status == 404 and r.body == b"", r


def test_delete_missing_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=new_name())
    assert err_code(e.value) == ("NoSuchBucket", 404)


def test_delete_non_empty_bucket(s3):
    name = new_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="x", Body=b"1")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    assert err_code(e.value) == ("BucketNotEmpty", 409)
    # still there, object intact
    assert s3.get_object(Bucket=name, Key="x")["Body"].read() == b"1"
    s3.delete_object(Bucket=name, Key="x")
    assert s3.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_recreate_after_delete_is_empty(s3):
    name = new_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="gone", Body=b"abc")
    s3.delete_object(Bucket=name, Key="gone")
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    try:
        r = s3.list_objects_v2(Bucket=name)
        assert r["KeyCount"] == 0 and "Contents" not in r
    finally:
        s3.delete_bucket(Bucket=name)


def test_get_bucket_location(s3, raw, server):
    name = new_name()
    s3.create_bucket(Bucket=name)
    try:
        r = s3.get_bucket_location(Bucket=name)
        # AWS answers an empty LocationConstraint for us-east-1; MinIO too. Both forms are read
        # correctly by minio-go, so accept the region spelled out as well.
        assert r.get("LocationConstraint") in (None, "", server.region), r
        rr = raw.request("GET", f"/{name}", query=[("location", "")])
        assert rr.status == 200 and b"LocationConstraint" in rr.body, rr
        with pytest.raises(ClientError) as e:
            s3.get_bucket_location(Bucket=new_name())
        assert err_code(e.value) == ("NoSuchBucket", 404)
    finally:
        s3.delete_bucket(Bucket=name)


INVALID_NAMES = [
    "ab",                      # too short
    "a" * 64,                  # too long
    "UpperCase",               # upper case
    "under_score",             # underscore
    "-leadinghyphen",
    "trailinghyphen-",
    ".leadingdot",
    "trailingdot.",
    "double..dot",
    "192.168.5.4",             # IP address form
    "bad%21char",              # '!' (sent percent-encoded)
]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_bucket_name(raw, canary, name):
    # Raw signed request: boto3 refuses some of these names client-side.
    r = raw.request("PUT", "/" + name.replace("%21", "!"))
    assert r.status == 400 and r.code() == "InvalidBucketName", r
    canary()


def test_valid_edge_names(s3):
    for name in ("abc", "a" * 63, "with.dots.ok", "with-hyphen-1"):
        s3.create_bucket(Bucket=name)
        try:
            assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
        finally:
            s3.delete_bucket(Bucket=name)


def test_minio_sdk_bucket_ops(server):
    mc = server.minio()
    name = new_name()
    assert not mc.bucket_exists(name)
    mc.make_bucket(name)
    assert mc.bucket_exists(name)
    assert name in [b.name for b in mc.list_buckets()]
    mc.remove_bucket(name)
    assert not mc.bucket_exists(name)


def test_create_bucket_race(server, s3):
    """Milvus creates its bucket from two places at once: one 200, the other 409."""
    import threading

    name = new_name()
    results = []
    barrier = threading.Barrier(4)

    def create():
        c = server.boto3()
        barrier.wait()
        try:
            c.create_bucket(Bucket=name)
            results.append("ok")
        except ClientError as e:
            results.append(err_code(e))

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert results.count("ok") == 1, results
        assert results.count(("BucketAlreadyOwnedByYou", 409)) == 3, results
    finally:
        s3.delete_bucket(Bucket=name)


def test_ops_on_deleted_bucket(s3):
    name = new_name()
    s3.create_bucket(Bucket=name)
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=name, Key="k", Body=b"x")
    assert err_code(e.value) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=name)
    assert err_code(e.value) == ("NoSuchBucket", 404)
