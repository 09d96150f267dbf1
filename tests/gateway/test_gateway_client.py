"""Gateway part 4 (issue 15): the lean upstream client (src/gateway/h1.rs) against answers
SeaweedFS itself does not send (chunked bodies, `100 Continue` heads, an idle connection the
upstream closed), an upstream that is not there, the manifest persisted across a restart, and
the block hit's allocation count.

The odd answers come from `Rechunker`: an HTTP proxy in front of SeaweedFS that forwards each
request as it came (the gateway's signature covers the Host it sent, which is forwarded) and
answers with the upstream's status and headers, the body re-sent `Transfer-Encoding: chunked`
in small chunks behind a `100 Continue` head, and which can close idle connections."""

import http.client
import os
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import Gateway, TinyServer, free_port, request_heads, weed_bin  # noqa: F401  (skips without weed)

from baleproc import ROOT

MiB = 1 << 20


class Rechunker(TinyServer):
    def __init__(self, target_port):
        self.target_port = target_port
        self.requests = 0
        self.close_after_answer = False
        super().__init__(backlog=64)

    def _serve(self, c):
        f = c.makefile("rb")
        try:
            for method, target, headers in request_heads(f):
                n = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
                body = f.read(n) if n else b""
                up = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=30)
                up.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    up.putheader(k, v)
                up.endheaders(body if n else None)
                r = up.getresponse()
                data = r.read()
                up.close()
                with self.lock:
                    self.requests += 1
                out = b"HTTP/1.1 100 Continue\r\n\r\n"
                out += f"HTTP/1.1 {r.status} {r.reason}\r\n".encode()
                for k, v in r.getheaders():
                    if k.lower() in ("transfer-encoding", "connection"):
                        continue
                    if k.lower() == "content-length" and not (method == "HEAD" or r.status in (204, 304)):
                        continue
                    out += f"{k}: {v}\r\n".encode()
                no_body = method == "HEAD" or r.status in (204, 304)
                if no_body:
                    c.sendall(out + b"\r\n")
                else:
                    out += b"Transfer-Encoding: chunked\r\n\r\n"
                    c.sendall(out)
                    step = 1000
                    for i in range(0, len(data), step):
                        piece = data[i:i + step]
                        c.sendall(f"{len(piece):x};x=1\r\n".encode() + piece + b"\r\n")
                    c.sendall(b"0\r\nx-trailer: 1\r\n\r\n")
                if self.close_after_answer:
                    return
        except (OSError, ValueError):
            return
        finally:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def rechunker(weed):
    r = Rechunker(weed.port)
    yield r
    r.stop()


def test_chunked_answers_behind_100_continue(weed, bucket, rechunker, gateway_factory):
    small = os.urandom(4096)
    mid = os.urandom(300 * 1024 + 7)
    big = os.urandom(3 * MiB + 5)
    w = weed.client()
    for k, d in (("c/small", small), ("c/mid", mid), ("c/big", big)):
        w.put_object(Bucket=bucket, Key=k, Body=d)
    g = gateway_factory(rechunker.endpoint, ["--upstream-block-kb", "64"])
    c = g.client()
    assert c.get_object(Bucket=bucket, Key="c/small")["Body"].read() == small
    assert c.get_object(Bucket=bucket, Key="c/mid")["Body"].read() == mid
    r = c.get_object(Bucket=bucket, Key="c/big", Range="bytes=1000000-1070000")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert r["Body"].read() == big[1000000:1070001]
    assert c.head_object(Bucket=bucket, Key="c/big")["ContentLength"] == len(big)
    # Writes answered chunked too (the PUT's answer has an empty chunked body).
    c.put_object(Bucket=bucket, Key="c/put", Body=b"x" * 5000)
    assert w.get_object(Bucket=bucket, Key="c/put")["Body"].read() == b"x" * 5000
    # Local now: no new upstream request.
    n = rechunker.requests
    assert c.get_object(Bucket=bucket, Key="c/small")["Body"].read() == small
    assert c.get_object(Bucket=bucket, Key="c/put")["Body"].read() == b"x" * 5000
    assert rechunker.requests == n


def test_idle_connection_closed_by_upstream_is_replaced(weed, bucket, rechunker, gateway_factory):
    w = weed.client()
    data = {f"i/{i}": os.urandom(2000 + i) for i in range(6)}
    for k, d in data.items():
        w.put_object(Bucket=bucket, Key=k, Body=d)
    g = gateway_factory(rechunker.endpoint, cores=1)
    c = g.client()
    keys = sorted(data)
    assert c.get_object(Bucket=bucket, Key=keys[0])["Body"].read() == data[keys[0]]
    c.put_object(Bucket=bucket, Key="i/w0", Body=b"a" * 100)
    for k in keys[1:]:
        rechunker.close_idle()  # the pooled connection is now closed by the upstream
        time.sleep(0.05)
        assert c.get_object(Bucket=bucket, Key=k)["Body"].read() == data[k]
        rechunker.close_idle()
        time.sleep(0.05)
        c.put_object(Bucket=bucket, Key=k + "w", Body=b"b" * 200)  # a write: checked first
        assert w.get_object(Bucket=bucket, Key=k + "w")["Body"].read() == b"b" * 200


def test_upstream_close_after_each_answer(weed, bucket, rechunker, gateway_factory):
    rechunker.close_after_answer = True
    w = weed.client()
    w.put_object(Bucket=bucket, Key="x/1", Body=b"1" * 3000)
    w.put_object(Bucket=bucket, Key="x/2", Body=b"2" * 3000)
    g = gateway_factory(rechunker.endpoint, cores=1)
    c = g.client()
    assert c.get_object(Bucket=bucket, Key="x/1")["Body"].read() == b"1" * 3000
    assert c.get_object(Bucket=bucket, Key="x/2")["Body"].read() == b"2" * 3000


def test_upstream_not_listening_is_503_fast(gateway_factory):
    port = free_port()  # nothing listens there
    g = gateway_factory(f"http://127.0.0.1:{port}")  # conftest: --upstream-timeout-ms 1500
    c = g.client()
    with pytest.raises(ClientError):  # botocore loads its models on the first call
        c.get_object(Bucket="nobucket", Key="k0")
    t0 = time.monotonic()
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="nobucket", Key="k")
    took = time.monotonic() - t0
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert e.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert took < 0.75, f"refused connection answered after {took:.2f}s (timeout 1.5 s)"
    t0 = time.monotonic()
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket="nobucket", Key="k", Body=b"x")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert time.monotonic() - t0 < 0.75


def test_manifest_persisted_across_a_restart(weed, bucket, relay, gateway_factory):
    data = os.urandom(8 * MiB + 11)
    weed.client().put_object(Bucket=bucket, Key="m/big", Body=data)
    g = gateway_factory(relay.endpoint, ["--upstream-block-kb", "64",
                                         "--upstream-readahead-blocks", "1"])
    c = g.client()
    rng = "bytes=5000000-5003999"
    r = c.get_object(Bucket=bucket, Key="m/big", Range=rng)
    assert r["Body"].read() == data[5000000:5004000]
    # The blocks and the manifest commit in the background.
    time.sleep(1.0)
    g.stop()
    g.start_again()
    c = g.client()
    down0, up0 = relay.counts()
    r = c.get_object(Bucket=bucket, Key="m/big", Range=rng)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert r["ContentRange"] == f"bytes 5000000-5003999/{len(data)}"
    assert r["ETag"].strip('"') == weed.client().head_object(Bucket=bucket, Key="m/big")["ETag"].strip('"')
    assert r["Body"].read() == data[5000000:5004000]
    assert relay.counts() == (down0, up0), "the first ranged read after the restart went upstream"
    # A write through the gateway removes the persisted manifest: after another restart the
    # new object is read, never the old blocks.
    new = os.urandom(8 * MiB + 11)
    c.put_object(Bucket=bucket, Key="m/big", Body=new)
    g.stop()
    g.start_again()
    r = g.client().get_object(Bucket=bucket, Key="m/big", Range=rng)
    assert r["Body"].read() == new[5000000:5004000]


def allocs_bin():
    p = os.environ.get("BALE_ALLOCS_BIN") or os.path.join(ROOT, "target/release/bale-count-allocs")
    if not os.path.exists(p):
        pytest.skip("no count-allocs build (scripts/allocs-per-get.sh --counter --build makes it)")
    return p


def test_block_hit_allocates_nothing(weed, bucket, relay):
    binary = allocs_bin()
    data = os.urandom(4 * MiB)
    weed.client().put_object(Bucket=bucket, Key="a/big", Body=data)
    g = Gateway(relay.endpoint, ["--upstream-block-kb", "64"], cores=1)
    args = g.args
    g.args = lambda: [binary] + args()[1:]
    g.start()
    try:
        c = g.client()
        rng = "bytes=100000-103999"
        for _ in range(300):  # fills, then warms code, cache and the connection
            assert c.get_object(Bucket=bucket, Key="a/big", Range=rng)["Body"].read() == \
                data[100000:104000]

        def count():
            with urllib.request.urlopen(g.endpoint + "/_bale/allocs", timeout=5) as r:
                return int(r.read())

        down0, _ = relay.counts()
        n = 1000
        before = count()
        for _ in range(n):
            r = c.get_object(Bucket=bucket, Key="a/big", Range=rng)
            assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
            r["Body"].read()
        per = (count() - before) / n
        assert relay.counts()[0] == down0, "the hits went upstream"
        # The /_bale/allocs reads themselves allocate a little: well under one per hit.
        print(f"allocations per block hit: {per:.3f}")
        assert per < 0.1, f"{per:.2f} allocations per block hit"
    finally:
        g.cleanup()


def test_local_bytes_counted_right_after_a_restart(weed, bucket, relay, gateway_factory):
    from test_gateway_capacity import metrics, total

    w = weed.client()
    objs = {f"s/{i:03d}": os.urandom(100_000) for i in range(20)}
    for k, v in objs.items():
        w.put_object(Bucket=bucket, Key=k, Body=v)
    g = gateway_factory(relay.endpoint, ["--cache-capacity-gb", "1", "--metrics-public"])
    c = g.client()
    for k, v in objs.items():
        assert c.get_object(Bucket=bucket, Key=k)["Body"].read() == v
    deadline = time.time() + 10
    while total(metrics(g), "bale_gateway_local_bytes") < 20 * 100_000:
        assert time.time() < deadline, "the fills were not counted"
        time.sleep(0.1)
    held = total(metrics(g), "bale_gateway_local_bytes")
    g.stop()
    g.start_again()
    # No request since the start: the queues were seeded from the engine at the start.
    deadline = time.time() + 10
    while total(metrics(g), "bale_gateway_local_bytes") != held:
        assert time.time() < deadline, (total(metrics(g), "bale_gateway_local_bytes"), held)
        time.sleep(0.1)
    down0, _ = relay.counts()
    for k, v in objs.items():
        assert g.client().get_object(Bucket=bucket, Key=k)["Body"].read() == v
    assert relay.counts()[0] == down0
