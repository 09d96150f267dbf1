"""Gateway mode under attack (issue 15): a hostile upstream and hostile clients.

Hostile upstreams are a raw-socket server on a loopback port (`HostileUpstream`) whose `mode`
decides how it (mis)answers; in `good` mode it is a tiny honest S3 (GET with ranges, HEAD,
PUT; no signature check). The gateways run with `--upstream-timeout-ms 1000` (`T`). For each
hostile mode a GET (small, and big: streamed while it arrives), a ranged GET, a HEAD and a PUT
run at once, and each must end, with a clear error, within the bound the mode has:

- the head never comes (silent, dribbled head, endless headers, garbage, closed mid-head):
  503 `ServiceUnavailable` within T (+ slack): `Upstream::send` holds connect + head under
  one timeout, and a head is at most 64 KiB;
- the head came, the body does not (head only, 10 GiB announced then a stall, a dribbled
  body): a small object (whole GET of at most 1 MiB, ranged block) is 503; a big one's 200
  head already left, so its connection is cut (fewer bytes than announced). Bound: a body
  read waits at most T for each chunk, and in all at most T + bytes / 64 KiB/s
  (`h1::MIN_BODY_BYTES_PER_S`): a 1 byte / 200 ms dribble is cut after ~T, not after
  (length x 200 ms).

Throughout, a canary GET of a local hit answers 200 quickly, the gateway's RSS stays bounded,
and nothing torn is kept: a later GET with the upstream back to `good` returns the right bytes
(and again with the upstream silent: the local copy is whole).

Hostile clients (against SeaweedFS behind the counting relay): anonymous and wrongly signed
requests of every kind get 403 before the upstream sees a byte; slowloris heads and dribbled
PUT bodies are cut; concurrent misses of distinct keys are bounded by
`--max-inflight-per-core` (one upstream connection and at most 1 MiB of window each); a
client that leaves mid-miss leaves no stuck single-flight."""

import hashlib
import os
import socket
import statistics
import sys
import threading
import time

import boto3
import pytest
from botocore.config import Config

from conftest import WEED_AK, WEED_SK  # noqa: F401

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "functional"))
from baleproc import Bale  # noqa: E402
from sigv4 import Signer  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
T = 1.0  # --upstream-timeout-ms 1000
SLACK = 1.5  # scheduling on a shared 2-core machine


def blob(key, n):
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (n // 32 + 1))[:n]


def etag(b):
    return hashlib.md5(b).hexdigest()


class HostileUpstream:
    """A raw HTTP/1.1 upstream on 127.0.0.1 whose `mode` decides each answer. Counts every
    request head it read (`requests`)."""

    def __init__(self):
        self.objects = {}
        self.mode = "good"
        self.requests = 0
        self.lock = threading.Lock()
        self.conns = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def put(self, key, data):
        self.objects[key] = data

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile("rb")
        try:
            while True:
                line = f.readline(65536)
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers = {}
                while True:
                    h = f.readline(65536)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = f.read(int(headers.get("content-length", "0") or 0))
                with self.lock:
                    self.requests += 1
                path = target.split("?")[0]
                key = path.split("/", 2)[-1] if path.count("/") >= 2 else ""
                if not self._answer(c, self.mode, method, key, headers, body):
                    return
        except (OSError, ValueError):
            return
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _true_head(self, method, key, headers):
        """The honest answer's head and body for a GET/HEAD of `key`."""
        data = self.objects.get(key)
        if data is None:
            err = b"<Error><Code>NoSuchKey</Code></Error>"
            return (b"HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(err)), (b"" if method == "HEAD" else err)
        rng = headers.get("range")
        status, part = b"200 OK", data
        extra = b""
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            if a == "":
                a, b = max(0, len(data) - int(b)), len(data) - 1
            else:
                a, b = int(a), (int(b) if b else len(data) - 1)
            b = min(b, len(data) - 1)
            status, part = b"206 Partial Content", data[a:b + 1]
            extra = b"Content-Range: bytes %d-%d/%d\r\n" % (a, b, len(data))
        head = (b"HTTP/1.1 " + status + b"\r\nETag: \"" + etag(data).encode() + b"\"\r\n"
                b"Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n"
                b"Content-Type: application/octet-stream\r\n" + extra
                + b"Content-Length: %d\r\n\r\n" % len(part))
        return head, (b"" if method == "HEAD" else part)

    def _answer(self, c, mode, method, key, headers, body):
        """Answers one request; False: the connection is done."""
        if method == "PUT":
            if mode == "good":
                self.objects[key] = body
                c.sendall(b"HTTP/1.1 200 OK\r\nETag: \"" + etag(body).encode()
                          + b"\"\r\nContent-Length: 0\r\n\r\n")
                return True
            # A 200 whose body (never read by S3 clients, but read to its end by the gateway
            # before it acknowledges) the mode then withholds.
            head, payload = b"HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Length: 20\r\n\r\n", b" " * 20
        else:
            head, payload = self._true_head(method, key, headers)
        if mode == "good":
            c.sendall(head + payload)
            return True
        if mode == "silent":
            time.sleep(30)
            return False
        if mode == "head_only":
            c.sendall(head)
            if method != "HEAD":  # a HEAD's answer is whole: close (a kept-alive connection
                time.sleep(30)    # left unanswered is mode `silent`)
            return False
        if mode == "dribble_head":
            for i in range(len(head)):
                c.sendall(head[i:i + 1])
                time.sleep(0.2)
            return False
        if mode == "dribble_body":
            c.sendall(head)
            for i in range(len(payload)):
                c.sendall(payload[i:i + 1])
                time.sleep(0.2)
            return False
        if mode == "huge_header":
            c.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MiB + b"\r\nContent-Length: 0\r\n\r\n")
            return False
        if mode == "endless_headers":
            c.sendall(b"HTTP/1.1 200 OK\r\n")
            for i in range(1 << 20):
                c.sendall(b"X-H%d: v\r\n" % i)
            return False
        if mode == "ten_gib":
            c.sendall(b"HTTP/1.1 200 OK\r\nETag: \"big\"\r\nContent-Length: %d\r\n\r\n" % (10 << 30)
                      + b"z" * (8 * KiB))
            time.sleep(30)
            return False
        if mode == "garbage":
            c.sendall(bytes(range(256)) * 64)
            time.sleep(5)
            return False
        if mode == "close_mid_head":
            c.sendall(head[: len(head) // 2])
            c.shutdown(socket.SHUT_RDWR)
            return False
        if mode in ("too_long", "too_long_late"):
            # The announced body, then more bytes (with it, or 50 ms later), shaped as an
            # answer: the answer to the NEXT request on this connection if the gateway reused
            # it with those bytes there.
            evil = b"EVIL!"
            evil = b"HTTP/1.1 200 OK\r\nETag: \"evil\"\r\nContent-Length: %d\r\n\r\n" % len(evil) + evil
            if mode == "too_long":
                c.sendall(head + payload + evil)
            else:
                c.sendall(head + payload)
                time.sleep(0.05)
                c.sendall(evil)
            return True
        raise AssertionError(mode)

    def stop(self):
        self.sock.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Gw(Bale):
    def __init__(self, upstream_endpoint, extra=(), cores=1):
        super().__init__(cores=cores, extra_args=[
            "--upstream", upstream_endpoint, "--upstream-access-key", WEED_AK,
            "--upstream-secret-key", WEED_SK, "--upstream-timeout-ms", str(int(T * 1000)), *extra])

    def client(self):
        """One attempt per call (botocore's `max_attempts` of conftest's client still retries
        a 503 once), so that each call's time is the gateway's."""
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"total_max_attempts": 1, "mode": "standard"},
                                          connect_timeout=5, read_timeout=20))

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


class Canary:
    """A GET of a local hit in a loop; every answer must be right and quick."""

    def __init__(self, g, bucket, key, body):
        self.c = g.client()
        self.bucket, self.key, self.body = bucket, key, body
        self.lat, self.fail = [], []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                got = self.c.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
                if got != self.body:
                    self.fail.append(f"wrong canary bytes: {len(got)}")
            except Exception as e:  # noqa: BLE001 - any failure of the canary counts
                self.fail.append(repr(e)[:200])
            self.lat.append(time.monotonic() - t0)
            time.sleep(0.02)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join(10)

    def check(self, what):
        assert not self.fail, f"canary failed during {what}: {self.fail[:3]}"
        assert len(self.lat) >= 5, f"canary made only {len(self.lat)} requests during {what}"
        worst = max(self.lat)
        assert worst < 1.5, f"canary took {worst:.2f}s during {what}"
        return statistics.median(self.lat), worst


def outcome(fn):
    """Runs one client call; returns (what, seconds): what is an HTTP status with the S3 code,
    'cut' (the answer's body ended early), or the bytes read."""
    t0 = time.monotonic()
    try:
        what = fn()
    except Exception as e:  # noqa: BLE001
        r = getattr(e, "response", None)
        if r and "Error" in r:
            what = (r["ResponseMetadata"]["HTTPStatusCode"], r["Error"].get("Code"))
        else:
            what = ("cut", type(e).__name__)
    return what, time.monotonic() - t0


SMALL, BIG = 100 * KiB + 7, 3 * MiB + 5

# mode -> whether the answer's head arrives (so a big GET's 200 may leave before the cut).
MODES = ["silent", "head_only", "dribble_head", "dribble_body", "huge_header", "endless_headers",
         "ten_gib", "garbage", "close_mid_head", "too_long"]


@pytest.fixture(scope="module")
def hostile():
    u = HostileUpstream()
    g = Gw(u.endpoint).start()
    u.put("canary", blob("canary", 64 * KiB))
    c = g.client()
    assert c.get_object(Bucket="bkt", Key="canary")["Body"].read() == blob("canary", 64 * KiB)
    yield u, g
    g.cleanup()
    u.stop()


@pytest.mark.parametrize("mode", MODES)
def test_hostile_upstream(hostile, mode):
    u, g = hostile
    c = g.client()
    small, big, rng, put = (f"{mode}-small", f"{mode}-big", f"{mode}-ranged", f"{mode}-put")
    u.put(small, blob(small, SMALL))
    u.put(big, blob(big, BIG))
    u.put(rng, blob(rng, BIG))
    calls = {
        "get_small": lambda: c.get_object(Bucket="bkt", Key=small)["Body"].read(),
        "get_big": lambda: c.get_object(Bucket="bkt", Key=big)["Body"].read(),
        "get_range": lambda: c.get_object(Bucket="bkt", Key=rng, Range="bytes=1000-1999")["Body"].read(),
        "head": lambda: c.head_object(Bucket="bkt", Key=big)["ContentLength"],
        "put": lambda: c.put_object(Bucket="bkt", Key=put, Body=b"p" * 5000)["ETag"],
    }
    rss0 = g.rss()
    u.mode = mode
    out = {}
    with Canary(g, "bkt", "canary", blob("canary", 64 * KiB)) as can:
        ts = [threading.Thread(target=lambda k=k, f=f: out.__setitem__(k, outcome(f))) for k, f in calls.items()]
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        time.sleep(0.2)
    u.mode = "good"
    median, worst = can.check(mode)
    grew = g.rss() - rss0
    print(f"{mode}: {({k: (v[0] if not isinstance(v[0], bytes) else len(v[0]), round(v[1], 2)) for k, v in out.items()})}"
          f" canary median {median * 1e3:.1f} ms worst {worst * 1e3:.1f} ms, RSS +{grew >> 10} KiB")
    assert set(out) == set(calls), f"calls still running: {set(calls) - set(out)}"
    bound = T + SLACK
    for k, (what, s) in out.items():
        assert s < bound, f"{mode} {k}: answered after {s:.2f}s (bound {bound}s): {what}"
        if mode == "too_long":
            # The announced bytes were right (checked below). Its PUT answer is a 200 with a
            # body of spaces, relayed as is: botocore turns a 200 PutObject with a body it
            # cannot parse into a 500 of its own (`handle_200_error`): not the gateway's.
            continue
        if k == "get_big" and what == ("cut", what[1] if isinstance(what, tuple) else None):
            continue  # the 200 head left before the body failed: the connection is cut
        if k == "head" and mode in ("head_only", "dribble_body", "ten_gib", "too_long"):
            # A HEAD's answer is its head, and these heads arrived whole.
            assert what == (10 << 30 if mode == "ten_gib" else BIG), f"{mode} {k}: {what}"
            continue
        if k == "get_small" and mode == "ten_gib" and what[0] == "cut":
            continue  # 10 GiB announced: streamed as a big object, then cut
        want = (503, "503") if k == "head" else (503, "ServiceUnavailable")  # HEAD: no body
        assert what == want, f"{mode} {k}: {what}"
    assert grew < 32 * MiB, f"{mode}: RSS grew {grew >> 20} MiB"
    # Nothing torn or foreign was kept: with the upstream honest again the right bytes come
    # (filled now), then with it silent they come from the local copy.
    for key, n in ((small, SMALL), (big, BIG)):
        assert c.get_object(Bucket="bkt", Key=key)["Body"].read() == blob(key, n), f"{mode} {key}"
    assert c.get_object(Bucket="bkt", Key=rng, Range="bytes=1000-1999")["Body"].read() == blob(rng, BIG)[1000:2000]
    if mode != "too_long":
        with pytest.raises(Exception) as e:
            c.head_object(Bucket="bkt", Key=put)  # the failed PUT kept nothing
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    u.mode = "silent"
    try:
        t0 = time.monotonic()
        for key, n in ((small, SMALL), (big, BIG)):
            assert c.get_object(Bucket="bkt", Key=key)["Body"].read() == blob(key, n), f"{mode} {key} (local)"
        assert time.monotonic() - t0 < 0.5
    finally:
        u.mode = "good"


def test_too_long_answer_never_answers_another_request(hostile):
    """An answer longer than its Content-Length, the extra bytes arriving a little later and
    shaped as an answer: the next request on that connection must not take them as its own
    (the gateway would serve and keep `EVIL!` under another key)."""
    u, g = hostile
    c = g.client()
    keys = [f"tl-{i}" for i in range(6)]
    for k in keys:
        u.put(k, blob(k, 2000 + len(k)))
    for k in keys:
        u.mode = "too_long_late"
        assert c.get_object(Bucket="bkt", Key=k)["Body"].read() == blob(k, 2000 + len(k))
        time.sleep(0.1)  # the extra answer is in the pooled connection's socket now
        u.mode = "good"
        k2 = k + "-next"
        u.put(k2, blob(k2, 3000))
        got = c.get_object(Bucket="bkt", Key=k2)["Body"].read()
        assert got == blob(k2, 3000), f"after {k}: got {got[:20]!r}"


# ---- Hostile clients on the gateway's front (SeaweedFS behind the counting relay) ----

from conftest import Relay  # noqa: E402
from sigv4 import Client as RawClient  # noqa: E402


@pytest.fixture
def front(weed, bucket):
    r = Relay(weed.port).start()
    g = Gw(r.endpoint, extra=["--header-timeout-s", "1", "--idle-timeout-s", "2",
                              "--max-inflight-per-core", "16"]).start()
    c = weed.client()
    c.put_object(Bucket=bucket, Key="canary", Body=blob("canary", 4096))
    assert g.client().get_object(Bucket=bucket, Key="canary")["Body"].read() == blob("canary", 4096)
    yield g, r, bucket
    g.cleanup()
    r.down()


def raw_client(g, secret=None):
    return RawClient("127.0.0.1", g.port, Signer(g.access_key, secret or g.secret_key, "us-east-1"))


def test_unauthenticated_requests_never_reach_the_upstream(front, weed):
    """Every kind of request without a valid identity (anonymous, a wrong secret) is 403
    before the upstream sees one byte: GET/HEAD misses, PUT (with Expect: 100-continue too:
    no 100 first), LIST, ListBuckets, multipart create/part/complete/abort, DELETE, POST
    delete, CopyObject. Counted by the relay's bytes towards the upstream."""
    g, r, b = front
    weed.client().put_object(Bucket=b, Key="there", Body=b"t" * 100)
    reqs = [("GET", f"/{b}/miss", (), {}, b""), ("GET", f"/{b}/there", (), {}, b""),
            ("HEAD", f"/{b}/there", (), {}, b""),
            ("PUT", f"/{b}/new", (), {}, b"x" * 1000),
            ("PUT", f"/{b}/new2", (), {"Expect": "100-continue"}, b"y" * 1000),
            ("GET", f"/{b}", (("list-type", "2"),), {}, b""), ("GET", "/", (), {}, b""),
            ("POST", f"/{b}/mp", (("uploads", ""),), {}, b""),
            ("PUT", f"/{b}/mp", (("partNumber", "1"), ("uploadId", "u")), {}, b"z" * 100),
            ("POST", f"/{b}/mp", (("uploadId", "u"),), {}, b"<CompleteMultipartUpload/>"),
            ("DELETE", f"/{b}/mp", (("uploadId", "u"),), {}, b""),
            ("DELETE", f"/{b}/there", (), {}, b""),
            ("POST", f"/{b}", (("delete", ""),), {}, b"<Delete><Object><Key>there</Key></Object></Delete>"),
            ("PUT", f"/{b}/copy", (), {"x-amz-copy-source": f"/{b}/there"}, b""),
            ("PUT", "/newbucket", (), {}, b"")]
    down0, up0 = r.counts()
    for who in ("anonymous", "wrong-secret"):
        rc = raw_client(g, secret="wrong-secret-key" if who == "wrong-secret" else None)
        for method, path, query, headers, body in reqs:
            resp = rc.request(method, path, query, headers, body, timeout=10, sign=who != "anonymous")
            assert resp.status == 403, f"{who} {method} {path} {query}: {resp.status} {resp.body[:200]!r}"
            if method != "HEAD":
                assert resp.code() in ("AccessDenied", "SignatureDoesNotMatch"), (who, method, path, resp.code())
            assert b"100 Continue" not in resp.body
    assert r.counts() == (down0, up0), f"the upstream saw bytes: {r.counts()} vs {(down0, up0)}"
    assert weed.client().get_object(Bucket=b, Key="there")["Body"].read() == b"t" * 100


def read_until_closed(s, limit_s):
    t0 = time.monotonic()
    got = b""
    s.settimeout(0.2)
    while time.monotonic() - t0 < limit_s:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return got, time.monotonic() - t0, True
        if not d:
            return got, time.monotonic() - t0, True
        got += d
    return got, time.monotonic() - t0, False


def test_slow_clients_are_cut(front):
    """Slowloris heads (a byte every 300 ms) are closed at `--header-timeout-s 1`; a signed
    PUT of 64 KiB whose body is dribbled (a byte every 300 ms, so the idle timer never fires)
    is cut at its request's bound, T + its length at 64 KiB/s (`Upstream::bound`: a client
    sets a streamed body's pace, but not below that floor), its slot given back at once, and
    the rest of its body drained for at most 5 s (`http::MAX_DRAIN_MS`, so that a client that
    does read its answer sees it) before the 503 and the close: bound T + 1 s + 5 s; nothing
    stored; the canary keeps answering."""
    g, r, b = front
    rc = raw_client(g)
    with Canary(g, b, "canary", blob("canary", 4096)) as can:
        loris = []
        for i in range(40):
            s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
            s.sendall(f"GET /{b}/k{i} HTTP/1.1\r\nHost: x\r\n".encode())
            loris.append(s)
        head = rc.signer.sign_headers("PUT", rc.hostport, f"/{b}/dribbled", (),
                                      {"Content-Length": str(64 * KiB)}, "UNSIGNED-PAYLOAD")
        target, h, _ = head
        p = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        p.sendall((f"PUT {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
                   + "\r\n").encode() + b"d" * 100)
        t0 = time.monotonic()
        put_closed = None
        got = b""
        while time.monotonic() - t0 < T + 1 + 5 + SLACK + 0.5:
            for s in loris:
                try:
                    s.send(b"X")
                except OSError:
                    pass
            if put_closed is None:
                try:
                    p.send(b"d")
                    p.settimeout(0.01)
                    d = p.recv(65536)
                    got += d
                    if not d or b"\r\n\r\n" in got:
                        put_closed = time.monotonic() - t0
                except socket.timeout:
                    pass
                except OSError:
                    put_closed = time.monotonic() - t0
            time.sleep(0.3)
        for s in loris:
            _, _, closed = read_until_closed(s, 0.3)
            assert closed, "a slowloris head was kept open past --header-timeout-s 1 (+5 s)"
            s.close()
    can.check("slowloris")
    print(f"dribbled PUT answered after {put_closed:.2f}s: {got[:40]!r}")
    assert put_closed is not None and put_closed < T + 1 + 5 + SLACK, f"dribbled PUT not cut: {put_closed} {got[:100]!r}"
    assert got.startswith(b"HTTP/1.1 503") and b"<Code>ServiceUnavailable</Code>" in got, got[:300]
    p.close()
    with pytest.raises(Exception) as e:
        g.client().head_object(Bucket=b, Key="dribbled")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_slow_honest_put_is_not_cut_at_the_timeout(front, weed):
    """A signed 3 MiB PUT whose body arrives steadily over ~5 s (256 KiB every 0.4 s: well
    above the 64 KiB/s floor, far longer than T = 1 s) is written through and acknowledged:
    the upstream timeout bounds each wait on the upstream, not the client's pace (before,
    the whole request ran under T and such a PUT got 503). The bytes are on the upstream."""
    g, r, b = front
    rc = raw_client(g)
    n, step = 3 * MiB, 256 * KiB
    data = blob("slow-honest", n)
    target, h, _ = rc.signer.sign_headers("PUT", rc.hostport, f"/{b}/slow-honest", (),
                                          {"Content-Length": str(n)}, "UNSIGNED-PAYLOAD")
    p = socket.create_connection(("127.0.0.1", g.port), timeout=10)
    p.sendall((f"PUT {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
               + "\r\n").encode())
    t0 = time.monotonic()
    for i in range(0, n, step):
        p.sendall(data[i:i + step])
        time.sleep(0.4)
    got = b""
    while b"\r\n\r\n" not in got:
        d = p.recv(65536)
        if not d:
            break
        got += d
    took = time.monotonic() - t0
    p.close()
    assert took > 4 * T, took  # the body really took longer than the timeout
    assert got.startswith(b"HTTP/1.1 200"), got[:300]
    assert weed.client().get_object(Bucket=b, Key="slow-honest")["Body"].read() == data


def test_small_misses_are_not_refused_while_they_commit(front, weed):
    """Fill slots bound what holds an upstream connection, not the disk's commit latency: 16
    clients reading 480 distinct 4 KiB keys through a gateway with `--max-inflight-per-core
    16` (16 fill slots) all get 200 and the right bytes. Before, a small fill held its slot
    until its local commit (a lazy sync round, ms), so a steady stream of misses ran out of
    slots and was answered 503 SlowDown; now the slot goes back when the upstream answer has
    ended and the bytes wait for their commit under a byte bound (`MAX_COMMITTING_BYTES`)."""
    g, r, b = front
    n, each = 480, 4096
    c = weed.client()
    for i in range(n):
        c.put_object(Bucket=b, Key=f"small/{i}", Body=blob(f"small/{i}", each))
    errors = []

    def reader(t):
        gc = g.client()
        for i in range(t, n, 16):
            try:
                got = gc.get_object(Bucket=b, Key=f"small/{i}")["Body"].read()
                if got != blob(f"small/{i}", each):
                    errors.append((i, "bytes"))
            except Exception as e:  # noqa: BLE001
                rm = getattr(e, "response", {}) or {}
                errors.append((i, rm.get("Error", {}).get("Code", type(e).__name__)))

    threads = [threading.Thread(target=reader, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"{len(errors)} of {n} misses failed: {errors[:8]}"


def test_concurrent_misses_are_bounded(front, weed):
    """64 concurrent misses of distinct 2 MiB keys on one core with
    `--max-inflight-per-core 16`: each is answered (the right bytes, or 503 SlowDown at
    once), the upstream connections opened stay within the in-flight bound, and RSS grows by
    less than 16 x (1 MiB window + 2 MiB) + slack."""
    g, r, b = front
    wc = weed.client()
    keys = [f"many-{i}" for i in range(64)]
    for k in keys:
        wc.put_object(Bucket=b, Key=k, Body=blob(k, 2 * MiB))
    r.rate_bytes_per_s = 8 * MiB  # per connection: each miss takes ~0.25 s
    conns0 = len(r.conns) // 2
    rss0 = g.rss()
    out = {}

    def get(k):
        out[k] = outcome(lambda: g.client().get_object(Bucket=b, Key=k)["Body"].read())

    ts = [threading.Thread(target=get, args=(k,)) for k in keys]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    r.rate_bytes_per_s = None
    opened = len(r.conns) // 2 - conns0
    grew = g.rss() - rss0
    ok = [k for k, (w, _) in out.items() if w == blob(k, 2 * MiB)]
    slow = [k for k, (w, _) in out.items() if w == (503, "SlowDown")]
    print(f"64 misses: {len(ok)} answered, {len(slow)} SlowDown, {opened} upstream connections, "
          f"RSS +{grew >> 20} MiB, slowest {max(s for _, s in out.values()):.2f}s")
    assert len(out) == 64 and len(ok) + len(slow) == 64, {k: v for k, v in out.items() if k not in ok + slow}
    assert len(ok) >= 16
    assert opened <= 16 + 2, f"{opened} upstream connections for 16 in-flight slots"
    assert grew < 80 * MiB, f"RSS grew {grew >> 20} MiB"
    for k in slow[:4]:
        assert g.client().get_object(Bucket=b, Key=k)["Body"].read() == blob(k, 2 * MiB)


def test_fills_outliving_their_clients_are_bounded(front, weed):
    """Hit and run: 40 clients each start a miss of a distinct 4 MiB key (served while it
    arrives) and leave as soon as the 200 head came. Each fill goes on alone (by design), so
    the request slots no longer bound them: `max_fills_per_core` (here 16, from
    `--max-inflight-per-core 16`) does. At most 16 upstream connections are opened, the
    misses past it are 503 SlowDown before any upstream request, the canary hit keeps
    answering, and the fills that ran commit whole."""
    g, r, b = front
    wc = weed.client()
    keys = [f"run-{i}" for i in range(40)]
    for k in keys:
        wc.put_object(Bucket=b, Key=k, Body=blob(k, 4 * MiB))
    r.rate_bytes_per_s = 4 * MiB  # per connection: each fill takes ~1 s alone
    conns0 = len(r.conns) // 2
    rss0 = g.rss()
    rc = raw_client(g)
    heads = {}
    with Canary(g, b, "canary", blob("canary", 4096)) as can:
        for k in keys:
            target, h, _ = rc.signer.sign_headers("GET", rc.hostport, f"/{b}/{k}", (), {}, sigv4_empty())
            s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
            s.sendall((f"GET {target} HTTP/1.1\r\n" + "".join(f"{a}: {v}\r\n" for a, v in h.items())
                       + "\r\n").encode())
            s.settimeout(5)
            heads[k] = s.recv(4096)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        opened = len(r.conns) // 2 - conns0
        grew = g.rss() - rss0
        time.sleep(1.5)  # the fills that started finish alone
    r.rate_bytes_per_s = None
    can.check("hit-and-run misses")
    started = [k for k, h in heads.items() if h.startswith(b"HTTP/1.1 200")]
    refused = [k for k, h in heads.items() if h.startswith(b"HTTP/1.1 503") and b"<Code>SlowDown</Code>" in h]
    print(f"hit and run: {len(started)} fills started, {len(refused)} refused, {opened} upstream "
          f"connections, RSS +{grew >> 20} MiB")
    assert len(started) + len(refused) == 40, {k: h[:300] for k, h in heads.items()}
    assert 1 <= len(started) <= 16 + 1, f"{len(started)} fills ran at once on one core"
    assert opened <= 16 + 2, f"{opened} upstream connections for 16 fills"
    assert grew < 64 * MiB, f"RSS grew {grew >> 20} MiB"
    r.down()  # what the fills kept is whole, served with the upstream gone
    deadline = time.monotonic() + 10
    for k in started[:3]:
        while True:
            try:
                assert g.client().get_object(Bucket=b, Key=k)["Body"].read() == blob(k, 4 * MiB)
                break
            except AssertionError:
                raise
            except Exception:  # noqa: BLE001 - still filling
                assert time.monotonic() < deadline, f"{k} never committed"
                time.sleep(0.2)


@pytest.mark.parametrize("size", [600 * KiB, 6 * MiB])
def test_client_leaving_mid_miss_leaves_no_stuck_flight(front, weed, size):
    """A client that disconnects mid-miss (small: before its answer; big: after the first
    bytes of a streamed fill) leaves no stuck single-flight: the next reader of the key is
    answered the right bytes, within the fill's own time."""
    g, r, b = front
    k = f"leave-{size}"
    weed.client().put_object(Bucket=b, Key=k, Body=blob(k, size))
    r.rate_bytes_per_s = 2 * MiB
    try:
        rc = raw_client(g)
        target, h, _ = rc.signer.sign_headers("GET", rc.hostport, f"/{b}/{k}", (), {}, sigv4_empty())
        s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        s.sendall((f"GET {target} HTTP/1.1\r\n" + "".join(f"{a}: {v}\r\n" for a, v in h.items())
                   + "\r\n").encode())
        time.sleep(0.15)
        if size > MiB:
            s.settimeout(5)
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST
        t0 = time.monotonic()
        got = g.client().get_object(Bucket=b, Key=k)["Body"].read()
        took = time.monotonic() - t0
    finally:
        r.rate_bytes_per_s = None
    assert got == blob(k, size)
    assert took < size / (2 * MiB) + 3, f"the next reader waited {took:.2f}s"


def sigv4_empty():
    return hashlib.sha256(b"").hexdigest()
