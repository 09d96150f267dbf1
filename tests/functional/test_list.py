"""ListObjectsV2: prefix, delimiter/CommonPrefixes, max-keys, continuation-token, start-after."""

import hashlib

import pytest
from botocore.exceptions import ClientError

from helpers import err_code

KEYS = sorted([
    "a/1", "a/2", "a/b/3", "a/b/4", "a/c/5", "b/1", "b/2/x", "c", "d-1", "d-2", "d/e/f/g",
    "e", "f/", "f/x", "z/last",
])


@pytest.fixture
def listed(s3, bucket):
    for k in KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    return bucket


def list_all(s3, **kw):
    """Page through ListObjectsV2; returns (keys, prefixes, pages)."""
    keys, prefixes, pages = [], [], 0
    token = None
    while True:
        args = dict(kw)
        if token:
            args["ContinuationToken"] = token
        r = s3.list_objects_v2(**args)
        pages += 1
        page_keys = [o["Key"] for o in r.get("Contents", [])]
        page_prefixes = [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        assert r["KeyCount"] == len(page_keys) + len(page_prefixes), r
        if "MaxKeys" in kw:
            if kw["MaxKeys"] <= 1000:
                assert r["MaxKeys"] == kw["MaxKeys"]
            assert r["KeyCount"] <= min(kw["MaxKeys"], 1000)
        keys += page_keys
        prefixes += page_prefixes
        if r["IsTruncated"]:
            assert r.get("NextContinuationToken"), r
            token = r["NextContinuationToken"]
            assert r["KeyCount"] > 0
        else:
            assert "NextContinuationToken" not in r
            return keys, prefixes, pages
        assert pages < 1000


def test_list_all(s3, listed):
    r = s3.list_objects_v2(Bucket=listed)
    assert [o["Key"] for o in r["Contents"]] == KEYS
    assert r["KeyCount"] == len(KEYS)
    assert r["IsTruncated"] is False
    assert r["MaxKeys"] == 1000
    assert r["Name"] == listed
    for o in r["Contents"]:
        assert o["Size"] == len(o["Key"])
        assert o["ETag"] == '"' + hashlib.md5(o["Key"].encode()).hexdigest() + '"'
        assert o["LastModified"] is not None
        assert o.get("StorageClass", "STANDARD") == "STANDARD"


def test_list_prefix(s3, listed):
    r = s3.list_objects_v2(Bucket=listed, Prefix="a/")
    assert [o["Key"] for o in r["Contents"]] == ["a/1", "a/2", "a/b/3", "a/b/4", "a/c/5"]
    assert r["Prefix"] == "a/"
    r = s3.list_objects_v2(Bucket=listed, Prefix="d")
    assert [o["Key"] for o in r["Contents"]] == ["d-1", "d-2", "d/e/f/g"]
    r = s3.list_objects_v2(Bucket=listed, Prefix="nothing")
    assert r["KeyCount"] == 0 and "Contents" not in r and r["IsTruncated"] is False


def test_list_delimiter(s3, listed):
    r = s3.list_objects_v2(Bucket=listed, Delimiter="/")
    assert [o["Key"] for o in r.get("Contents", [])] == ["c", "d-1", "d-2", "e"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "b/", "d/", "f/", "z/"]
    assert r["KeyCount"] == 9
    assert r["Delimiter"] == "/"
    r = s3.list_objects_v2(Bucket=listed, Delimiter="/", Prefix="a/")
    assert [o["Key"] for o in r["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/b/", "a/c/"]
    r = s3.list_objects_v2(Bucket=listed, Delimiter="/", Prefix="f/")
    assert [o["Key"] for o in r["Contents"]] == ["f/", "f/x"]
    assert "CommonPrefixes" not in r
    r = s3.list_objects_v2(Bucket=listed, Delimiter="/", Prefix="d/e/")
    assert "Contents" not in r
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["d/e/f/"]
    # a delimiter other than '/'
    r = s3.list_objects_v2(Bucket=listed, Delimiter="-")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["d-"]
    assert "d-1" not in [o["Key"] for o in r["Contents"]]


@pytest.mark.parametrize("max_keys", [1, 2, 3, 7])
def test_list_paging(s3, listed, max_keys):
    keys, prefixes, pages = list_all(s3, Bucket=listed, MaxKeys=max_keys)
    assert keys == KEYS and prefixes == []
    assert pages == -(-len(KEYS) // max_keys)


@pytest.mark.parametrize("max_keys", [1, 2, 4])
def test_list_paging_delimiter(s3, listed, max_keys):
    keys, prefixes, _ = list_all(s3, Bucket=listed, MaxKeys=max_keys, Delimiter="/")
    assert keys == ["c", "d-1", "d-2", "e"]
    assert prefixes == ["a/", "b/", "d/", "f/", "z/"], "each common prefix exactly once"


def test_list_max_keys_zero(s3, listed):
    r = s3.list_objects_v2(Bucket=listed, MaxKeys=0)
    assert r["KeyCount"] == 0 and "Contents" not in r


def test_list_truncation_flags(s3, listed):
    r = s3.list_objects_v2(Bucket=listed, MaxKeys=len(KEYS))
    assert r["KeyCount"] == len(KEYS)
    # exactly max-keys remaining: S3 reports IsTruncated false
    assert r["IsTruncated"] is False
    r = s3.list_objects_v2(Bucket=listed, MaxKeys=len(KEYS) - 1)
    assert r["IsTruncated"] is True and r["KeyCount"] == len(KEYS) - 1


def test_list_start_after(s3, listed):
    r = s3.list_objects_v2(Bucket=listed, StartAfter="b/1")
    assert [o["Key"] for o in r["Contents"]] == KEYS[KEYS.index("b/1") + 1:]
    assert r["StartAfter"] == "b/1"
    r = s3.list_objects_v2(Bucket=listed, StartAfter="b")  # not a key itself
    assert [o["Key"] for o in r["Contents"]] == KEYS[KEYS.index("b/1"):]
    r = s3.list_objects_v2(Bucket=listed, StartAfter="zzz")
    assert r["KeyCount"] == 0
    r = s3.list_objects_v2(Bucket=listed, StartAfter="a/b/3", Prefix="a/")
    assert [o["Key"] for o in r["Contents"]] == ["a/b/4", "a/c/5"]
    keys, _, _ = list_all(s3, Bucket=listed, StartAfter="c", MaxKeys=2)
    assert keys == KEYS[KEYS.index("c") + 1:]


def test_list_start_after_with_delimiter(s3, listed):
    # start-after inside a common prefix: the prefix is still listed only if it has keys after it
    r = s3.list_objects_v2(Bucket=listed, StartAfter="a/b/4", Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "b/", "d/", "f/", "z/"]


def test_list_many_keys_pages(s3, bucket):
    keys = [f"many/{i:05d}" for i in range(1100)]
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b""), keys))
    r = s3.list_objects_v2(Bucket=bucket)
    assert r["KeyCount"] == 1000 and r["IsTruncated"] is True
    got, _, pages = list_all(s3, Bucket=bucket)
    assert got == keys and pages == 2
    got, _, pages = list_all(s3, Bucket=bucket, MaxKeys=5000)
    assert got == keys  # max-keys above 1000 is capped at 1000 by S3


def test_list_missing_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket="no-such-bucket-bale-test")
    assert err_code(e.value) == ("NoSuchBucket", 404)


def test_list_raw_xml(raw, listed):
    r = raw.request("GET", f"/{listed}", query=[("list-type", "2"), ("prefix", "a/"), ("delimiter", "/"),
                                                 ("max-keys", "2")])
    assert r.status == 200, r
    body = r.body.decode()
    assert "<ListBucketResult" in body
    assert "<KeyCount>2</KeyCount>" in body
    assert "<IsTruncated>true</IsTruncated>" in body
    assert "<NextContinuationToken>" in body
    r = raw.request("GET", f"/{listed}", query=[("list-type", "2"), ("encoding-type", "url"), ("prefix", "a/")])
    assert r.status == 200 and "<EncodingType>url</EncodingType>" in r.body.decode(), r


def test_list_invalid_max_keys(raw, listed, canary):
    r = raw.request("GET", f"/{listed}", query=[("list-type", "2"), ("max-keys", "-1")])
    assert r.status == 400, r
    r = raw.request("GET", f"/{listed}", query=[("list-type", "2"), ("max-keys", "abc")])
    assert r.status == 400, r
    r = raw.request("GET", f"/{listed}", query=[("list-type", "2"), ("continuation-token", "!!garbage!!")])
    assert r.status in (200, 400), r  # AWS: 400 InvalidArgument; never a 5xx
    canary()
