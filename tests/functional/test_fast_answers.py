"""The GET/HEAD fast path answers what it looked up (issue 11 item 4).

A missing key or bucket, a failed precondition (If-Match, If-None-Match, If-Modified-Since,
If-Unmodified-Since, with S3's precedence) and an unsatisfiable range are answered on the fast
path instead of being handed to s3s. Two servers run side by side, the default and
`--no-fast-path`, and every answer is compared header by header and body by body (Date,
x-amz-request-id and the <RequestId> element differ by nature; Last-Modified, where present,
is each server's own time of the PUT and is checked against it). A key that panics when read
(BALE_TEST_PANIC_KEY) shows that the fast path is the one looking up conditional and ranged
requests.
"""

import email.utils
import re
import time
import uuid

import pytest

import baleproc
import sigv4
from helpers import needs_own_bale, payload

pytestmark = needs_own_bale

PROBE = "fast-answers-probe"
FAST_PANIC = "panic while serving a request (fast path)"
S3S_PANIC = "panic while serving a request; answered 500"
IGNORED = {"date", "x-amz-request-id", "last-modified"}


class Pair:
    def __init__(self, fast, slow):
        self.fast = fast
        self.slow = slow
        self.bucket = "answers-" + uuid.uuid4().hex[:10]
        self.body = payload(100, seed=21)
        self.mtime = {}  # server name -> Last-Modified of "obj", seconds
        self.key_mtime = {}  # (server name, key) -> Last-Modified, seconds

    def servers(self):
        return [("fast", self.fast), ("slow", self.slow)]


def _client(b):
    import boto3
    from botocore.config import Config

    c = Config(signature_version="s3v4", s3={"addressing_style": "path"},
               retries={"max_attempts": 1, "mode": "standard"})
    return boto3.client("s3", endpoint_url=b.endpoint, region_name=b.region,
                        aws_access_key_id=b.access_key, aws_secret_access_key=b.secret_key, config=c)


@pytest.fixture(scope="module")
def pair():
    env = {"BALE_TEST_PANIC_KEY": PROBE}
    fast = baleproc.Bale(cores=1, env=env)
    slow = baleproc.Bale(cores=1, env=env, extra_args=["--no-fast-path"])
    fast.start()
    try:
        slow.start()
        try:
            p = Pair(fast, slow)
            for name, b in p.servers():
                s3 = _client(b)
                s3.create_bucket(Bucket=p.bucket)
                s3.put_object(Bucket=p.bucket, Key="obj", Body=p.body, ContentType="text/x-a",
                              Metadata={"color": "blue", "name": "=?UTF-8?B?Z3LDvG4=?="})
                s3.put_object(Bucket=p.bucket, Key="empty", Body=b"")
                s3.put_object(Bucket=p.bucket, Key=PROBE, Body=b"probe")
                # Each key's own time: the PUTs above may straddle a second boundary.
                for key in ("obj", "empty"):
                    lm = s3.head_object(Bucket=p.bucket, Key=key)["LastModified"]
                    p.key_mtime[(name, key)] = int(lm.timestamp())
                p.mtime[name] = p.key_mtime[(name, "obj")]
            yield p
        finally:
            slow.cleanup()
    finally:
        fast.cleanup()


def _raw(b):
    host, port = b.endpoint.rsplit("//", 1)[1].split(":")
    return sigv4.Client(host, int(port), sigv4.Signer(b.access_key, b.secret_key, b.region))


def _norm_body(body):
    return re.sub(rb"<RequestId>[^<]*</RequestId>", b"", body)


def _answer(pair, name, b, method, path, headers):
    r = _raw(b).request(method, path, headers=headers)
    h = {k: v for k, v in r.headers.items() if k not in IGNORED}
    if "last-modified" in r.headers:
        got = email.utils.parsedate_to_datetime(r.headers["last-modified"]).timestamp()
        key = path.split("?", 1)[0].split("/", 2)[2]
        assert int(got) == pair.key_mtime[(name, key)], (name, path, r.headers["last-modified"])
    return r.status, h, _norm_body(r.body), r


def _same(pair, method, path, headers_of=lambda name: {}):
    """Sends the request to both servers; asserts identical answers; returns the fast one."""
    out = {}
    for name, b in pair.servers():
        out[name] = _answer(pair, name, b, method, path, headers_of(name))
    f, s = out["fast"], out["slow"]
    assert f[0] == s[0], (method, path, f[3], s[3])
    assert f[1] == s[1], (method, path, f[1], s[1])
    assert f[2] == s[2], (method, path, f[2], s[2])
    return f[3]


def _http_date(t):
    return email.utils.formatdate(t, usegmt=True)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_missing_key_and_bucket(pair, method):
    r = _same(pair, method, f"/{pair.bucket}/nope")
    assert r.status == 404
    if method == "GET":
        assert r.code() == "NoSuchKey"
    r = _same(pair, method, "/no-such-bucket-" + uuid.uuid4().hex[:8] + "/k")
    assert r.status == 404
    if method == "GET":
        assert r.code() == "NoSuchBucket"
    # A name s3s does not accept as a bucket name: s3s's own answer on both.
    _same(pair, method, "/No_Such/k")
    # Conditions on a missing key: still 404.
    r = _same(pair, method, f"/{pair.bucket}/nope", lambda n: {"If-Match": '"abc"'})
    assert r.status == 404
    r = _same(pair, method, f"/{pair.bucket}/nope", lambda n: {"Range": "bytes=500-600"})
    assert r.status == 404


def _etag(pair):
    return _client(pair.fast).head_object(Bucket=pair.bucket, Key="obj")["ETag"]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_each_precondition(pair, method):
    etag = _etag(pair)
    p = f"/{pair.bucket}/obj"
    past = lambda n: _http_date(pair.mtime[n] - 3600)  # noqa: E731
    future = lambda n: _http_date(pair.mtime[n] + 3600)  # noqa: E731
    exact = lambda n: _http_date(pair.mtime[n])  # noqa: E731
    cases = [
        # (headers per server, expected status)
        (lambda n: {"If-Match": '"0123"'}, 412),
        (lambda n: {"If-Match": etag}, 200),
        (lambda n: {"If-Match": "*"}, 200),
        (lambda n: {"If-None-Match": etag}, 304),
        (lambda n: {"If-None-Match": "*"}, 304),
        (lambda n: {"If-None-Match": '"0123"'}, 200),
        (lambda n: {"If-Modified-Since": future(n)}, 304),
        (lambda n: {"If-Modified-Since": exact(n)}, 304),
        (lambda n: {"If-Modified-Since": past(n)}, 200),
        (lambda n: {"If-Unmodified-Since": past(n)}, 412),
        (lambda n: {"If-Unmodified-Since": exact(n)}, 200),
        (lambda n: {"If-Unmodified-Since": future(n)}, 200),
        # Empty values are absent (as s3s reads them).
        (lambda n: {"If-None-Match": ""}, 200),
    ]
    for headers_of, status in cases:
        r = _same(pair, method, p, headers_of)
        assert r.status == status, (headers_of("fast"), r)
        if status == 412 and method == "GET":
            assert r.code() == "PreconditionFailed"
        if status == 304:
            assert r.headers.get("etag") == etag


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_precedence(pair, method):
    """S3 (RFC 7232 section 6): If-Match before If-Unmodified-Since, If-None-Match before
    If-Modified-Since, and the 412 pair before the 304 pair."""
    etag = _etag(pair)
    p = f"/{pair.bucket}/obj"
    past = lambda n: _http_date(pair.mtime[n] - 3600)  # noqa: E731
    future = lambda n: _http_date(pair.mtime[n] + 3600)  # noqa: E731
    cases = [
        (lambda n: {"If-Match": etag, "If-Unmodified-Since": past(n)}, 200),
        (lambda n: {"If-None-Match": '"0123"', "If-Modified-Since": future(n)}, 200),
        (lambda n: {"If-Match": '"0123"', "If-None-Match": etag}, 412),
        (lambda n: {"If-Unmodified-Since": past(n), "If-Modified-Since": future(n)}, 412),
        (lambda n: {"If-None-Match": etag, "If-Modified-Since": past(n)}, 304),
        (lambda n: {"If-Match": etag, "If-None-Match": etag}, 304),
        (lambda n: {"If-Match": etag, "Range": "bytes=500-600"}, 416),
        (lambda n: {"If-Match": '"0123"', "Range": "bytes=500-600"}, 412),
        (lambda n: {"If-None-Match": etag, "Range": "bytes=500-600"}, 304),
        (lambda n: {"If-Match": etag, "Range": "bytes=10-19"}, 206),
    ]
    for headers_of, status in cases:
        r = _same(pair, method, p, headers_of)
        assert r.status == status, (headers_of("fast"), r)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_unsatisfiable_range(pair, method):
    for path, rng in [(f"/{pair.bucket}/obj", "bytes=100-200"), (f"/{pair.bucket}/obj", "bytes=-0"),
                      (f"/{pair.bucket}/empty", "bytes=0-1"), (f"/{pair.bucket}/empty", "bytes=-5")]:
        r = _same(pair, method, path, lambda n: {"Range": rng})
        assert r.status == 416, (path, rng, r)
        assert r.headers.get("content-range") == ("bytes */100" if path.endswith("obj") else "bytes */0")
        if method == "GET":
            assert r.code() == "InvalidRange"
    # Satisfiable and ignored ranges, for comparison.
    for rng, status in [("bytes=90-200", 206), ("bytes=5-3", 200), ("bytes=-10", 206)]:
        r = _same(pair, method, f"/{pair.bucket}/obj", lambda n: {"Range": rng})
        assert r.status == status, (rng, r)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_hits_match(pair, method):
    """A plain hit answers the same headers on both paths (one function builds them)."""
    for key in ("obj", "empty"):
        r = _same(pair, method, f"/{pair.bucket}/{key}")
        assert r.status == 200
    r = _same(pair, method, f"/{pair.bucket}/obj", lambda n: {"x-amz-checksum-mode": "ENABLED"})
    assert r.headers["x-amz-meta-name"] == "=?UTF-8?B?Z3LDvG4=?="


def test_unreadable_conditions_left_to_s3s(pair):
    p = f"/{pair.bucket}/obj"
    for h in ({"If-Modified-Since": "whenever"}, {"If-Match": '"unterminated'}):
        r = _same(pair, "GET", p, lambda n, h=h: h)
        assert r.status == 400, (h, r)


def _fast_panics(b):
    return b.log_tail(1 << 22).count(FAST_PANIC)


def test_conditional_and_ranged_reads_looked_up_on_fast_path(pair):
    """The panic key shows which path did the lookup: conditional and ranged GET/HEAD are no
    longer handed to s3s."""
    b = pair.fast
    for method in ("GET", "HEAD"):
        for h in ({"If-None-Match": "*"}, {"If-Match": '"x"'}, {"If-Modified-Since": _http_date(time.time())},
                  {"If-Unmodified-Since": _http_date(0)}, {"Range": "bytes=1000-2000"}):
            before = _fast_panics(b)
            s3s_before = b.log_tail(1 << 22).count(S3S_PANIC)
            r = _raw(b).request(method, f"/{pair.bucket}/{PROBE}", headers=h)
            assert r.status == 500, (method, h, r)
            deadline = time.time() + 3
            while _fast_panics(b) <= before and time.time() < deadline:
                time.sleep(0.05)
            assert _fast_panics(b) == before + 1, (method, h)
            assert b.log_tail(1 << 22).count(S3S_PANIC) == s3s_before, (method, h)
