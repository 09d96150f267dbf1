"""The optional LIST page cache (`--list-cache-ms`, issue 15 part 5): pages kept for the TTL,
dropped by writes through this gateway before their acknowledgement, others' writes seen after
at most the TTL; off by default. The upstream is a real SeaweedFS behind a counting relay."""

import time

from conftest import weed_bin  # noqa: F401  (skips the module when there is no weed)


def keys(c, bucket, **kw):
    return [o["Key"] for o in c.list_objects_v2(Bucket=bucket, **kw).get("Contents", [])]


def test_list_pages_cached_and_dropped_by_writes(weed, bucket, relay, gateway_factory):
    w = weed.client()
    w.put_object(Bucket=bucket, Key="lc/a", Body=b"a")
    g = gateway_factory(relay.endpoint, ["--list-cache-ms", "60000"], cores=2)
    c = g.client()
    assert keys(c, bucket, Prefix="lc/") == ["lc/a"]
    # Kept: a second LIST sends nothing upstream, and a key put directly is not seen yet.
    up0 = relay.counts()[1]
    w.put_object(Bucket=bucket, Key="lc/b", Body=b"b")
    assert keys(c, bucket, Prefix="lc/") == ["lc/a"]
    assert relay.counts()[1] == up0, "the kept page went upstream"
    # Another query is another page (fetched, so it sees lc/b).
    assert keys(c, bucket, Prefix="lc/", MaxKeys=10) == ["lc/a", "lc/b"]
    # A write through this gateway drops the bucket's pages: seen at once after its ack.
    c.put_object(Bucket=bucket, Key="lc/c", Body=b"c")
    assert keys(c, bucket, Prefix="lc/") == ["lc/a", "lc/b", "lc/c"]
    c.delete_object(Bucket=bucket, Key="lc/a")
    assert keys(c, bucket, Prefix="lc/") == ["lc/b", "lc/c"]
    # ListObjects V1 pages are kept too; other bucket GETs (location) are relayed as before.
    v1 = [o["Key"] for o in c.list_objects(Bucket=bucket, Prefix="lc/")["Contents"]]
    assert v1 == ["lc/b", "lc/c"]
    w.delete_object(Bucket=bucket, Key="lc/b")
    v1 = [o["Key"] for o in c.list_objects(Bucket=bucket, Prefix="lc/")["Contents"]]
    assert v1 == ["lc/b", "lc/c"]
    c.get_bucket_location(Bucket=bucket)


def test_list_cache_ttl_and_default_off(weed, bucket, relay, gateway_factory):
    w = weed.client()
    w.put_object(Bucket=bucket, Key="ttl/a", Body=b"a")
    g = gateway_factory(relay.endpoint, ["--list-cache-ms", "400"], cores=1)
    c = g.client()
    assert keys(c, bucket, Prefix="ttl/") == ["ttl/a"]
    w.put_object(Bucket=bucket, Key="ttl/b", Body=b"b")
    deadline = time.time() + 5
    while keys(c, bucket, Prefix="ttl/") != ["ttl/a", "ttl/b"]:
        assert time.time() < deadline, "a direct write was not seen after the TTL"
        time.sleep(0.1)
    # Off by default: every LIST goes upstream.
    g2 = gateway_factory(relay.endpoint, cores=1)
    c2 = g2.client()
    assert keys(c2, bucket, Prefix="ttl/") == ["ttl/a", "ttl/b"]
    w.put_object(Bucket=bucket, Key="ttl/c", Body=b"c")
    assert keys(c2, bucket, Prefix="ttl/") == ["ttl/a", "ttl/b", "ttl/c"]
