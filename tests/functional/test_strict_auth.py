"""Authentication strictness and GET fast-path parity (issue 12, hardening).

Two real servers run side by side: one with the GET/HEAD fast path (the default) and one with
`--no-fast-path`, so every case here is answered by both and the answers compared. Both are
started with BALE_TEST_PANIC_KEY: reading that key panics inside the request, and the log line
bale writes for it says whether the fast path or s3s was serving ("... (fast path) ..."), which
is how these tests observe which path served a request without any cost on the hot path.
"""

import base64
import datetime
import email.utils
import hashlib
import hmac
import re
import time
import uuid
import zlib

import pytest

import baleproc
import sigv4
from helpers import needs_own_bale, payload

pytestmark = needs_own_bale

PROBE = "fast-path-probe"
FAST_PANIC = "panic while serving a request (fast path)"
S3S_PANIC = "panic while serving a request; answered 500"


class Pair:
    def __init__(self, fast, slow):
        self.fast = fast
        self.slow = slow
        self.bucket = "strict-" + uuid.uuid4().hex[:10]
        self.body = payload(100, seed=12)
        self.crc = base64.b64encode((zlib.crc32(self.body) & 0xFFFFFFFF).to_bytes(4, "big")).decode()

    def servers(self):
        return [("fast", self.fast), ("slow", self.slow)]


def _client(b, **cfg):
    import boto3
    from botocore.config import Config

    c = Config(signature_version="s3v4", s3={"addressing_style": "path"},
               retries={"max_attempts": 1, "mode": "standard"}, **cfg)
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
            for _, b in p.servers():
                s3 = _client(b)
                s3.create_bucket(Bucket=p.bucket)
                s3.put_object(Bucket=p.bucket, Key="obj", Body=p.body, ChecksumAlgorithm="CRC32")
                s3.put_object(Bucket=p.bucket, Key="empty", Body=b"")
                s3.put_object(Bucket=p.bucket, Key=PROBE, Body=b"probe")
                s3.put_object(Bucket=p.bucket, Key="meta", Body=b"m" * 10, ContentType="text/x-meta",
                              CacheControl="max-age=5", ContentDisposition="attachment; filename=m",
                              ContentEncoding="identity", ContentLanguage="en",
                              Expires=datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
                              Metadata={"color": "blue", "shape": "round"})
                # Two keys that a loose "%+1" decoding would confuse.
                s3.put_object(Bucket=p.bucket, Key="x\x01", Body=b"control-char-key")
                s3.put_object(Bucket=p.bucket, Key="x%+1", Body=b"literal-key")
            yield p
        finally:
            slow.cleanup()
    finally:
        fast.cleanup()


def raw(b, region=None):
    host, port = b.endpoint.rsplit("//", 1)[1].split(":")
    signer = sigv4.Signer(b.access_key, b.secret_key, region or b.region)
    return sigv4.Client(host, int(port), signer)


def send(b, method, target, headers, extra_lines=()):
    """Send exactly these headers (plus optional duplicate header lines) and read the answer."""
    host, port = b.endpoint.rsplit("//", 1)[1].split(":")
    data = sigv4.build_request(method, target, headers)
    if extra_lines:
        data = data[:-2] + "".join(f"{line}\r\n" for line in extra_lines).encode() + b"\r\n"
    resp, info = sigv4.raw_exchange(host, int(port), data, head=(method == "HEAD"))
    assert resp is not None, info
    return resp


def summary(r):
    return (r.status, r.code(), r.headers.get("content-range"), r.headers.get("content-length"))


# -- SigV2 ----------------------------------------------------------------------------------


class FixedDateV1(object):
    """botocore's HmacV1Auth (S3 SigV2) with a chosen Date header."""

    def __init__(self, b, date=None, secret=None):
        from botocore.auth import HmacV1Auth
        from botocore.credentials import Credentials

        self.date = date
        auth = HmacV1Auth(Credentials(b.access_key, secret or b.secret_key))
        if date is not None:
            auth._get_date = lambda: date
        self.auth = auth

    def request(self, b, method, path, body=b"", headers=None):
        from botocore.awsrequest import AWSRequest

        url = b.endpoint + path
        r = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
        self.auth.add_auth(r)
        h = {k: v for k, v in r.headers.items()}
        h["Host"] = b.endpoint.rsplit("//", 1)[1]
        if body or method in ("PUT", "POST"):
            h["Content-Length"] = str(len(body))
        host, port = h["Host"].split(":")
        resp, info = sigv4.raw_exchange(host, int(port), sigv4.build_request(method, path, h, body),
                                        head=(method == "HEAD"))
        assert resp is not None, info
        return resp


def test_sigv2_fresh_request_works(pair):
    for name, b in pair.servers():
        v1 = FixedDateV1(b)
        key = f"/{pair.bucket}/v2-{name}"
        r = v1.request(b, "PUT", key, b"hello v2")
        assert r.status == 200, (name, r)
        r = v1.request(b, "GET", key)
        assert (r.status, r.body) == (200, b"hello v2"), (name, r)
        r = v1.request(b, "GET", f"/{pair.bucket}/obj", headers={"Range": "bytes=9-5"})
        assert (r.status, r.body) == (200, pair.body), (name, r)  # unusable Range ignored
        r = v1.request(b, "DELETE", key)
        assert r.status == 204, (name, r)


def test_sigv2_old_date_refused(pair):
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    for name, b in pair.servers():
        v1 = FixedDateV1(b, date=old)
        for method, path, body in [("PUT", f"/{pair.bucket}/v2-replay", b"replayed"),
                                   ("GET", f"/{pair.bucket}/obj", b""),
                                   ("DELETE", f"/{pair.bucket}/obj", b"")]:
            r = v1.request(b, method, path, body)
            assert (r.status, r.code()) == (403, "RequestTimeTooSkewed"), (name, method, r)
        # 20 minutes off, either way, is too much too.
        for off in (-1200, 1200):
            d = email.utils.formatdate(time.time() + off, usegmt=True)
            r = FixedDateV1(b, date=d).request(b, "GET", f"/{pair.bucket}/obj")
            assert (r.status, r.code()) == (403, "RequestTimeTooSkewed"), (name, off, r)
        # Nothing was written or deleted.
        s3 = _client(b)
        assert s3.get_object(Bucket=pair.bucket, Key="obj")["Body"].read() == pair.body
        with pytest.raises(Exception):
            s3.head_object(Bucket=pair.bucket, Key="v2-replay")


def test_sigv2_unparseable_or_missing_date_refused(pair):
    for name, b in pair.servers():
        for d in ("whenever", "", "2001-01-01", "Fri, 24 May 2013 00:00:00 +1\u00e92", "\u00e9"):
            r = FixedDateV1(b, date=d).request(b, "GET", f"/{pair.bucket}/obj")
            assert (r.status, r.code()) == (403, "AccessDenied"), (name, d, r)


def test_sigv2_wrong_signature_refused(pair):
    for name, b in pair.servers():
        v1 = FixedDateV1(b, secret="not-the-secret")
        for method in ("GET", "PUT", "DELETE"):
            r = v1.request(b, method, f"/{pair.bucket}/obj", b"x" if method == "PUT" else b"")
            assert (r.status, r.code()) == (403, "SignatureDoesNotMatch"), (name, method, r)
        # Right key, tampered path: the signature covers the resource.
        good = FixedDateV1(b)
        from botocore.awsrequest import AWSRequest

        req = AWSRequest(method="GET", url=b.endpoint + f"/{pair.bucket}/obj")
        good.auth.add_auth(req)
        h = dict(req.headers.items())
        h["Host"] = b.endpoint.rsplit("//", 1)[1]
        r = send(b, "GET", f"/{pair.bucket}/empty", h)
        assert (r.status, r.code()) == (403, "SignatureDoesNotMatch"), (name, r)


def test_sigv2_subresource_query(pair):
    """The SigV2 check builds s3s's string-to-sign, sub-resources included."""
    for name, b in pair.servers():
        r = FixedDateV1(b).request(b, "GET", f"/{pair.bucket}/obj?response-content-type=text/x-v2")
        assert (r.status, r.headers.get("content-type")) == (200, "text/x-v2"), (name, r)


# -- Range ----------------------------------------------------------------------------------

RANGE_CASES = [
    # (key, Range, expected status, expected Content-Range)
    ("obj", "bytes=2-5", 206, "bytes 2-5/100"),
    ("obj", "bytes=-10", 206, "bytes 90-99/100"),
    ("obj", "bytes=95-", 206, "bytes 95-99/100"),
    ("obj", "bytes=90-200", 206, "bytes 90-99/100"),
    ("obj", "bytes=-0", 416, None),
    ("obj", "bytes=100-", 416, None),
    ("obj", "bytes=5000-6000", 416, None),
    ("obj", "bytes=5-3", 200, None),
    ("obj", "bytes=abc", 200, None),
    ("obj", "bytes=0-1,3-4", 200, None),
    ("obj", "items=0-1", 200, None),
    ("obj", "bytes=+1-2", 200, None),
    ("obj", "bytes=-", 200, None),
    ("empty", "bytes=-1", 416, None),
    ("empty", "bytes=-0", 416, None),
    ("empty", "bytes=0-", 416, None),
    ("empty", "bytes=5-3", 200, None),
    ("missing", "bytes=5-3", 404, None),
    ("missing", "bytes=-0", 404, None),
]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("key,rng,status,crange", RANGE_CASES)
def test_range_same_on_both_paths(pair, method, key, rng, status, crange):
    seen = {}
    for name, b in pair.servers():
        # Range is signed (as boto3 signs it).
        r = raw(b).request(method, f"/{pair.bucket}/{key}", headers={"Range": rng})
        r.body = r.body if method == "GET" else b""
        # (s3s 0.14.1 drops HeadObject's 206; src/http.rs restores it, as S3 answers.)
        assert r.status == status, (name, r)
        # Request ids differ per request by design; everything else must match.
        seen[name] = (summary(r)[1:], re.sub(rb"<RequestId>[0-9A-F]{16}</RequestId>", b"", r.body))
        if status in (200, 206):
            assert r.headers.get("content-range") == crange, (name, r.headers)
        if status == 416 and method == "GET":
            assert r.code() == "InvalidRange", (name, r)
        if status == 200 and method == "GET":
            full = pair.body if key == "obj" else b""
            assert r.body == full, name
        if status == 404 and method == "GET":
            assert r.code() == "NoSuchKey", (name, r)
    assert seen["fast"] == seen["slow"]


def test_range_unsigned_ignored_on_both_paths(pair):
    """A Range outside the signature (presigned URL, SigV2) is ignored the same way."""
    for name, b in pair.servers():
        c = raw(b)
        target = c.signer.presign("GET", c.hostport, f"/{pair.bucket}/obj")
        r = send(b, "GET", target, {"Host": c.hostport, "Range": "bytes=7-2"})
        assert (r.status, r.body) == (200, pair.body), (name, r)
        r = send(b, "GET", target, {"Host": c.hostport, "Range": "bytes=-0"})
        assert (r.status, r.code()) == (416, "InvalidRange"), (name, r)


def test_boto3_ranges(pair):
    for name, b in pair.servers():
        s3 = _client(b)
        assert s3.get_object(Bucket=pair.bucket, Key="obj", Range="bytes=5-3")["Body"].read() == pair.body
        with pytest.raises(Exception) as e:
            s3.get_object(Bucket=pair.bucket, Key="empty", Range="bytes=-1")
        assert e.value.response["Error"]["Code"] == "InvalidRange", name
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416, name


# -- SigV4 scope, headers, path -------------------------------------------------------------


class ScopeSigner(sigv4.Signer):
    """Signs validly over a chosen credential scope (date, region, service)."""

    def __init__(self, b, scope_date=None, region=None, service="s3"):
        super().__init__(b.access_key, b.secret_key, region or b.region, service)
        self.scope_date = scope_date

    def _d(self, amz_date):
        return amz_date[:8] if self.scope_date is None else self.scope_date

    def scope(self, amz_date):
        return f"{self._d(amz_date)}/{self.region}/{self.service}/aws4_request"

    def signing_key(self, amz_date):
        k = sigv4._hmac(("AWS4" + self.secret_key).encode(), self._d(amz_date))
        k = sigv4._hmac(k, self.region)
        k = sigv4._hmac(k, self.service)
        return sigv4._hmac(k, "aws4_request")


def scoped_get(b, path, **kw):
    s = ScopeSigner(b, **kw)
    hostport = b.endpoint.rsplit("//", 1)[1]
    target, h, _ = s.sign_headers("GET", hostport, path)
    return send(b, "GET", target, h)


def test_scope_date_must_be_request_date(pair):
    yesterday = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).strftime("%Y%m%d")
    for name, b in pair.servers():
        for d in ("", yesterday, "2026"):
            r = scoped_get(b, f"/{pair.bucket}/obj", scope_date=d)
            assert (r.status, r.code()) == (400, "AuthorizationHeaderMalformed"), (name, d, r)


def test_scope_region_must_be_servers(pair):
    for name, b in pair.servers():
        r = scoped_get(b, f"/{pair.bucket}/obj", region="eu-west-1")
        assert (r.status, r.code()) == (400, "AuthorizationHeaderMalformed"), (name, r)
        assert b"<Region>us-east-1</Region>" in r.body
        # Writes too (s3s path).
        s = ScopeSigner(b, region="eu-west-1")
        hostport = b.endpoint.rsplit("//", 1)[1]
        target, h, _ = s.sign_headers("PUT", hostport, f"/{pair.bucket}/wrong-region",
                                      headers={"Content-Length": "2"}, payload_hash=sigv4.sha256_hex(b"hi"))
        host, port = hostport.split(":")
        resp, _ = sigv4.raw_exchange(host, int(port), sigv4.build_request("PUT", target, h, b"hi"))
        assert (resp.status, resp.code()) == (400, "AuthorizationHeaderMalformed"), (name, resp)
        # Presigned URLs too.
        c = raw(b, region="eu-west-1")
        target = c.signer.presign("GET", c.hostport, f"/{pair.bucket}/obj")
        r = send(b, "GET", target, {"Host": c.hostport})
        assert (r.status, r.code()) == (400, "AuthorizationQueryParametersError"), (name, r)


def test_scope_service_must_be_s3(pair):
    for name, b in pair.servers():
        for svc in ("sts", "ec2"):
            r = scoped_get(b, f"/{pair.bucket}/obj", service=svc)
            assert (r.status, r.code()) == (400, "AuthorizationHeaderMalformed"), (name, svc, r)


def test_second_authorization_header_refused(pair):
    for name, b in pair.servers():
        c = raw(b)
        target, h, _ = c.signer.sign_headers("GET", c.hostport, f"/{pair.bucket}/obj")
        r = send(b, "GET", target, h, extra_lines=[f"Authorization: {h['Authorization']}"])
        assert (r.status, r.code()) == (400, "InvalidArgument"), (name, r)
        r = send(b, "GET", target, h, extra_lines=["Authorization: AWS baletestaccess:AAAA"])
        assert (r.status, r.code()) == (400, "InvalidArgument"), (name, r)
        # Header and query auth at once.
        p = c.signer.presign("GET", c.hostport, f"/{pair.bucket}/obj")
        r = send(b, "GET", p, h)
        assert (r.status, r.code()) == (400, "InvalidArgument"), (name, r)


def test_host_must_be_signed(pair):
    for name, b in pair.servers():
        c = raw(b)
        target, h, _ = c.signer.sign_headers("GET", c.hostport, f"/{pair.bucket}/obj", unsigned_headers=("Host",))
        assert "host" not in h["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        r = send(b, "GET", target, h)
        assert (r.status, r.code()) == (403, "AccessDenied"), (name, r)
        assert b"<HeadersNotSigned>host</HeadersNotSigned>" in r.body


def _signed_with_canonical_path(b, target_path, canonical_path):
    """A GET whose request target is `target_path`, signed over `canonical_path`."""
    s = sigv4.Signer(b.access_key, b.secret_key, b.region)
    hostport = b.endpoint.rsplit("//", 1)[1]
    amz = sigv4.amz_now()
    h = {"Host": hostport, "x-amz-date": amz, "x-amz-content-sha256": sigv4.EMPTY_SHA256}
    signed = ["host", "x-amz-content-sha256", "x-amz-date"]
    creq = s.canonical_request("GET", canonical_path, [], h, signed, sigv4.EMPTY_SHA256)
    sig = s.signature(amz, s.string_to_sign(amz, creq))
    h["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={b.access_key}/{s.scope(amz)},"
                          f"SignedHeaders={';'.join(signed)},Signature={sig}")
    return send(b, "GET", target_path, h)


def test_percent_plus_is_not_an_escape(pair):
    seen = {}
    for name, b in pair.servers():
        # Signed as if "%+1" were the byte 0x01: must not serve key "x\x01".
        r = _signed_with_canonical_path(b, f"/{pair.bucket}/x%+1", f"/{pair.bucket}/x%01")
        assert (r.status, r.code()) == (403, "SignatureDoesNotMatch"), (name, r)
        assert r.body != b"control-char-key"
        # Signed over the literal path (s3s's raw-path form): the key is "x%+1".
        r2 = _signed_with_canonical_path(b, f"/{pair.bucket}/x%+1", f"/{pair.bucket}/x%+1")
        assert (r2.status, r2.body) == (200, b"literal-key"), (name, r2)
        seen[name] = (summary(r), summary(r2))
    assert seen["fast"] == seen["slow"]


# -- SigV4 dated by Date --------------------------------------------------------------------


def _date_signed(b, method, path, body=b"", when=None):
    """SigV4 with `Date` (RFC 1123) and no x-amz-date, as SigV4 allows."""
    # One whole second for both: formatdate rounds a float's microseconds (x.9999996 becomes
    # the next second) where gmtime(int(t)) truncates, which would sign another time.
    t = int(time.time() if when is None else when)
    date = email.utils.formatdate(t, usegmt=True)
    amz = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))
    s = sigv4.Signer(b.access_key, b.secret_key, b.region)
    hostport = b.endpoint.rsplit("//", 1)[1]
    ph = sigv4.sha256_hex(body)
    h = {"Host": hostport, "Date": date, "x-amz-content-sha256": ph}
    if body or method == "PUT":
        h["Content-Length"] = str(len(body))
    signed = ["date", "host", "x-amz-content-sha256"]
    creq = s.canonical_request(method, sigv4.uri_encode(path, encode_slash=False), [], h, signed, ph)
    sig = s.signature(amz, s.string_to_sign(amz, creq))
    h["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={b.access_key}/{s.scope(amz)},"
                          f"SignedHeaders={';'.join(signed)},Signature={sig}")
    host, port = hostport.split(":")
    resp, info = sigv4.raw_exchange(host, int(port), sigv4.build_request(method, path, h, body),
                                    head=(method == "HEAD"))
    assert resp is not None, info
    return resp


def test_sigv4_with_date_header(pair):
    for name, b in pair.servers():
        r = _date_signed(b, "GET", f"/{pair.bucket}/obj")
        assert (r.status, r.body) == (200, pair.body), (name, r)
        r = _date_signed(b, "PUT", f"/{pair.bucket}/dated-{name}", b"dated")
        assert r.status == 200, (name, r)
        r = _date_signed(b, "GET", f"/{pair.bucket}/dated-{name}")
        assert (r.status, r.body) == (200, b"dated"), (name, r)
        r = _date_signed(b, "GET", f"/{pair.bucket}/obj", when=time.time() - 3600)
        assert (r.status, r.code()) == (403, "RequestTimeTooSkewed"), (name, r)


def test_sigv4_with_date_header_uses_fast_path(pair):
    b = pair.fast
    before = _fast_panics(b, 0, 0)
    r = _date_signed(b, "GET", f"/{pair.bucket}/{PROBE}")
    assert r.status == 500, r
    assert _fast_panics(b, before + 1) == before + 1


# -- checksum mode on the fast path ---------------------------------------------------------


def _fast_panics(b, at_least, wait_s=3.0):
    """How many fast-path panics the log holds, waiting a little for `at_least` of them."""
    deadline = time.time() + wait_s
    while True:
        n = b.log_tail(1 << 22).count(FAST_PANIC)
        if n >= at_least or time.time() > deadline:
            return n
        time.sleep(0.05)


def _served_by_fast_path(b, fn):
    """Runs fn (a request for PROBE, which panics): True when the fast path served every try
    (boto3 may retry the 500) and s3s none."""
    before = _fast_panics(b, 0, 0)
    s3s_before = b.log_tail(1 << 22).count(S3S_PANIC)
    with pytest.raises(Exception) as e:
        fn()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    n = _fast_panics(b, before + 1)
    return n > before and b.log_tail(1 << 22).count(S3S_PANIC) == s3s_before


def test_checksum_mode_served_by_fast_path(pair):
    b = pair.fast
    s3 = _client(b)
    # boto3's defaults (it sends x-amz-checksum-mode: ENABLED on every GET since 1.36).
    assert _served_by_fast_path(b, lambda: s3.get_object(Bucket=pair.bucket, Key=PROBE))
    assert _served_by_fast_path(b, lambda: s3.get_object(Bucket=pair.bucket, Key=PROBE, ChecksumMode="ENABLED"))
    assert _served_by_fast_path(b, lambda: s3.head_object(Bucket=pair.bucket, Key=PROBE, ChecksumMode="ENABLED"))
    # Control: the same on --no-fast-path never says "fast path".
    s = _client(pair.slow)
    with pytest.raises(Exception):
        s.get_object(Bucket=pair.bucket, Key=PROBE, ChecksumMode="ENABLED")
    assert S3S_PANIC in pair.slow.log_tail(1 << 22)
    assert FAST_PANIC not in pair.slow.log_tail(1 << 22)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_checksum_headers_same_on_both_paths(pair, method):
    names = ["x-amz-checksum-crc32", "x-amz-checksum-crc32c", "x-amz-checksum-crc64nvme",
             "x-amz-checksum-sha1", "x-amz-checksum-sha256", "x-amz-checksum-type"]
    seen = {}
    for name, b in pair.servers():
        c = raw(b)
        on = c.request(method, f"/{pair.bucket}/obj", headers={"x-amz-checksum-mode": "ENABLED"})
        assert on.status == 200, (name, on)
        assert on.headers.get("x-amz-checksum-crc32") == pair.crc, (name, on.headers)
        assert on.headers.get("x-amz-checksum-type") == "FULL_OBJECT", (name, on.headers)
        off = c.request(method, f"/{pair.bucket}/obj")
        assert not any(n in off.headers for n in names), (name, off.headers)
        ranged = c.request(method, f"/{pair.bucket}/obj",
                           headers={"x-amz-checksum-mode": "ENABLED", "Range": "bytes=0-9"})
        assert ranged.status == 206, (name, ranged)
        assert ranged.headers.get("content-range") == "bytes 0-9/100", (name, ranged.headers)
        assert not any(n in ranged.headers for n in names), (name, ranged.headers)
        other = c.request(method, f"/{pair.bucket}/obj", headers={"x-amz-checksum-mode": "enabled"})
        assert not any(n in other.headers for n in names), (name, other.headers)
        seen[name] = [{n: r.headers.get(n) for n in names + ["etag", "content-length", "content-type"]}
                      for r in (on, off, ranged, other)]
    assert seen["fast"] == seen["slow"]


def test_boto3_checksum_validation(pair):
    for name, b in pair.servers():
        r = _client(b).get_object(Bucket=pair.bucket, Key="obj", ChecksumMode="ENABLED")
        assert r["Body"].read() == pair.body
        assert r.get("ChecksumCRC32") == pair.crc, name


# -- presigned SigV2 ------------------------------------------------------------------------


def _presigned_v2(b, path, expires=300, secret=None):
    from botocore.auth import HmacV1QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    r = AWSRequest(method="GET", url=b.endpoint + path)
    HmacV1QueryAuth(Credentials(b.access_key, secret or b.secret_key), expires=expires).add_auth(r)
    return r.url.split(b.endpoint, 1)[1]


def test_presigned_sigv2(pair):
    for name, b in pair.servers():
        hostport = b.endpoint.rsplit("//", 1)[1]
        r = send(b, "GET", _presigned_v2(b, f"/{pair.bucket}/obj"), {"Host": hostport})
        assert (r.status, r.body) == (200, pair.body), (name, r)
        r = send(b, "GET", _presigned_v2(b, f"/{pair.bucket}/obj", secret="wrong"), {"Host": hostport})
        assert (r.status, r.code()) == (403, "SignatureDoesNotMatch"), (name, r)
        r = send(b, "GET", _presigned_v2(b, f"/{pair.bucket}/obj", expires=-10), {"Host": hostport})
        assert (r.status, r.code()) == (403, "AccessDenied"), (name, r)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_object_headers_same_on_both_paths(pair, method):
    """The fast path's response headers are the s3s path's (all but Date)."""
    seen = {}
    for name, b in pair.servers():
        for key, rng in (("meta", None), ("meta", "bytes=1-3"), ("obj", None)):
            h = {"x-amz-checksum-mode": "ENABLED"}
            if rng:
                h["Range"] = rng
            r = raw(b).request(method, f"/{pair.bucket}/{key}", headers=h)
            assert r.status in (200, 206), (name, r)
            hs = {k: v for k, v in r.headers.items() if k not in ("date", "x-amz-request-id", "connection")}
            seen.setdefault(name, []).append(hs)
    assert seen["fast"][0]["x-amz-meta-color"] == "blue"
    for f, sl in zip(seen["fast"], seen["slow"]):
        f.pop("last-modified")  # two servers, two uploads
        sl.pop("last-modified")
        diff = {k: (f.get(k), sl.get(k)) for k in set(f) | set(sl) if f.get(k) != sl.get(k)}
        assert not diff, diff


def test_sigv4_non_ascii_date_refused(pair):
    for name, b in pair.servers():
        c = raw(b)
        target, h, _ = c.signer.sign_headers("GET", c.hostport, f"/{pair.bucket}/obj")
        del h["x-amz-date"]
        h["Date"] = "Fri, 24 May 2013 00:00:00 +1\u00e92"
        r = send(b, "GET", target, h)
        assert (r.status, r.code()) == (403, "AccessDenied"), (name, r)
        # The server is still there.
        assert raw(b).request("GET", f"/{pair.bucket}/obj").status == 200
