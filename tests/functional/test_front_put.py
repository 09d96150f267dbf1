"""Small PUTs on the HTTP/1.1 front (issues 13 and 18, docs/adr/0030-put-on-the-front.md).

A plain signed `PUT /bucket/key` with a Content-Length up to 1 MiB is read and stored by the
front itself; anything else goes to hyper as before. These tests speak raw HTTP/1.1: each PUT
is sent once plainly (the front's) and once with a `TE` header (which the front leaves to
hyper) and the two answers must be identical but for date and request id; errors (bad
signature, bad Content-MD5, wrong payload SHA-256, a missing bucket), a short or stalled body,
an oversized declared length, pipelining and a hand-over after a front PUT are checked too.
"""

import base64
import hashlib
import socket
import time
import uuid

import pytest

import sigv4
from helpers import needs_own_bale, payload
from rawhttp import Conn, one, own_bale, same, signed

pytestmark = needs_own_bale

IDLE_TIMEOUT_S = 2
HYPER = {"TE": "trailers"}  # a header the front leaves to hyper, changing nothing else


@pytest.fixture(scope="module")
def bale():
    yield from own_bale(2, ["--idle-timeout-s", str(IDLE_TIMEOUT_S)], "fput-")


def _put(b, key, body, headers=None, extra=None, payload_hash=None, bucket=None,
         secret=None, length=None, query=()):
    """A signed PUT (head and body bytes)."""
    h = {"Content-Length": str(len(body) if length is None else length)}
    h.update(headers or {})
    return signed(b, "PUT", f"/{bucket or b.bucket}/{key}", h, extra, query=query,
                  payload_hash=payload_hash or sigv4.UNSIGNED, body=body, secret=secret)


def _get(b, key):
    return signed(b, "GET", f"/{b.bucket}/{key}")


def _code(resp):
    body = resp[2]
    if b"<Code>" not in body:
        return None
    return body.split(b"<Code>", 1)[1].split(b"</Code>", 1)[0].decode()


def _hdr(resp, name):
    return dict((k.lower(), v) for k, v in resp[1]).get(name)


BODY = payload(1024, seed=30)
MD5 = base64.b64encode(hashlib.md5(BODY).digest()).decode()

# (name, body, signed headers, payload hash, expected status, expected code)
CASES = [
    ("unsigned", BODY, {}, None, 200, None),
    ("sha256", BODY, {}, sigv4.sha256_hex(BODY), 200, None),
    ("md5-meta-type", BODY, {"Content-MD5": MD5, "Content-Type": "text/plain",
                             "x-amz-meta-Color": "blue", "x-amz-meta-n": "1"}, None, 200, None),
    ("empty", b"", {}, None, 200, None),
    ("bad-md5", BODY, {"Content-MD5": base64.b64encode(b"x" * 16).decode()}, None, 400,
     "BadDigest"),
    ("wrong-sha256", BODY, {}, sigv4.sha256_hex(b"other"), 400, "XAmzContentSHA256Mismatch"),
]


@pytest.mark.parametrize("name,body,headers,ph,status,code", CASES, ids=[c[0] for c in CASES])
def test_front_put_answers_as_hyper(bale, name, body, headers, ph, status, code):
    kf, kh = f"{name}-front", f"{name}-hyper"
    front = one(bale, _put(bale, kf, body, headers, payload_hash=ph))
    hyper = one(bale, _put(bale, kh, body, headers, payload_hash=ph, extra=HYPER))
    assert int(front[0].split()[1]) == status, front
    assert _code(front) == code
    same(front, hyper)
    if status == 200:
        assert _hdr(front, "etag") == '"%s"' % hashlib.md5(body).hexdigest()
        gf, gh = one(bale, _get(bale, kf)), one(bale, _get(bale, kh))
        assert gf[2] == body and gh[2] == body
        for h in ("etag", "content-type", "content-length", "x-amz-meta-color", "x-amz-meta-n"):
            assert _hdr(gf, h) == _hdr(gh, h), h
        if "Content-Type" in headers:
            assert _hdr(gf, "content-type") == "text/plain"
            assert _hdr(gf, "x-amz-meta-color") == "blue"
    else:
        gf = one(bale, _get(bale, kf))
        assert gf[0].split()[1] == "404"  # nothing stored


def test_missing_bucket_as_hyper(bale):
    nb = "nob-" + uuid.uuid4().hex[:8]
    front = one(bale, _put(bale, "k", BODY, bucket=nb))
    hyper = one(bale, _put(bale, "k", BODY, bucket=nb, extra=HYPER))
    assert front[0].split()[1] == "404" and _code(front) == "NoSuchBucket"
    same(front, hyper)


def test_bad_signature_403(bale):
    front = one(bale, _put(bale, "badsig", BODY, secret="not-the-secret"))
    hyper = one(bale, _put(bale, "badsig", BODY, secret="not-the-secret", extra=HYPER))
    assert front[0].split()[1] == "403" and _code(front) == "SignatureDoesNotMatch"
    assert hyper[0].split()[1] == "403" and _code(hyper) == "SignatureDoesNotMatch"
    assert one(bale, _get(bale, "badsig"))[0].split()[1] == "404"


def test_anonymous_put_refused_without_reading_the_body(bale):
    # 1 MiB declared, no body sent: refused at once from the head.
    c = Conn(bale)
    try:
        t0 = time.monotonic()
        c.send(f"PUT /{bale.bucket}/anon HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
               .encode())
        resp = c.response()
        assert resp[0].split()[1] == "403" and _code(resp) == "AccessDenied"
        assert time.monotonic() - t0 < 3
        assert c.closed(5)
    finally:
        c.close()


@pytest.mark.parametrize("route", ["front", "hyper"])
def test_short_body_answers_incomplete_body(bale, route):
    # The client sends half of its declared body and closes its side.
    req = _put(bale, f"short-{route}", BODY, extra=HYPER if route == "hyper" else None)
    c = Conn(bale)
    try:
        c.send(req[:-512])
        c.s.shutdown(socket.SHUT_WR)
        resp = c.response()
        assert resp[0].split()[1] == "400" and _code(resp) == "IncompleteBody", resp
        assert c.closed(5)
    finally:
        c.close()
    assert one(bale, _get(bale, f"short-{route}"))[0].split()[1] == "404"


def test_stalled_body_cut_at_the_idle_timeout(bale):
    req = _put(bale, "stalled", BODY)
    c = Conn(bale, timeout=15)
    try:
        t0 = time.monotonic()
        c.send(req[:-100])
        try:
            resp = c.response()
            assert resp[0].split()[1] == "400" and _code(resp) == "IncompleteBody", resp
        except (EOFError, ConnectionResetError):
            pass
        assert c.closed(5)
        assert IDLE_TIMEOUT_S - 0.5 < time.monotonic() - t0 < IDLE_TIMEOUT_S + 6
    finally:
        c.close()
    assert one(bale, _get(bale, "stalled"))[0].split()[1] == "404"


@pytest.mark.parametrize("n", [1 << 20, (1 << 20) + 1, 3 << 20])
def test_sizes_around_the_bound(bale, n):
    # Up to 1 MiB is the front's, more is handed to hyper: both store it.
    body = payload(n, seed=n % 251)
    resp = one(bale, _put(bale, f"size-{n}", body, payload_hash=sigv4.sha256_hex(body)))
    assert resp[0] == "HTTP/1.1 200 OK", resp
    assert _hdr(resp, "etag") == '"%s"' % hashlib.md5(body).hexdigest()
    got = bale.s3.get_object(Bucket=bale.bucket, Key=f"size-{n}")["Body"].read()
    assert got == body


def test_pipelined_put_get_then_a_hyper_request(bale):
    b1, b2 = payload(3000, seed=1), payload(5000, seed=2)
    c = Conn(bale)
    try:
        c.send(_put(bale, "pipe-1", b1) + _get(bale, "pipe-1") + _put(bale, "pipe-2", b2)
               + _get(bale, "pipe-2"))
        r = [c.response() for _ in range(4)]
        assert [x[0] for x in r] == ["HTTP/1.1 200 OK"] * 4
        assert r[1][2] == b1 and r[3][2] == b2
        # a request only hyper serves (ListObjectsV2), on the same connection
        c.send(signed(bale, "GET", f"/{bale.bucket}", query=[("list-type", "2"), ("prefix", "pipe-")]))
        lr = c.response()
        assert lr[0] == "HTTP/1.1 200 OK"
        assert b"<Key>pipe-1</Key>" in lr[2] and b"<Key>pipe-2</Key>" in lr[2]
        # and a PUT after the hand-over still works (hyper's now)
        c.send(_put(bale, "pipe-3", b1))
        assert c.response()[0] == "HTTP/1.1 200 OK"
    finally:
        c.close()


def test_many_keep_alive_puts(bale):
    c = Conn(bale)
    try:
        for i in range(100):
            body = payload(1024, seed=i)
            c.send(_put(bale, f"ka-{i}", body))
            resp = c.response()
            assert resp[0] == "HTTP/1.1 200 OK"
            assert _hdr(resp, "etag") == '"%s"' % hashlib.md5(body).hexdigest()
            assert "connection" not in {k.lower() for k, _ in resp[1]}
    finally:
        c.close()
    got = bale.s3.get_object(Bucket=bale.bucket, Key="ka-99")["Body"].read()
    assert got == payload(1024, seed=99)


def test_what_is_handed_over_still_works(bale):
    # Checksum headers, conditions and unusual headers are hyper's: served as before.
    body = payload(2048, seed=7)
    crc = sigv4.crc32_b64(body)
    r = one(bale, _put(bale, "ho-crc", body, {"x-amz-checksum-crc32": crc}))
    assert r[0] == "HTTP/1.1 200 OK" and _hdr(r, "x-amz-checksum-crc32") == crc
    r = one(bale, _put(bale, "ho-crc", body, {"If-None-Match": "*"}))
    assert r[0].split()[1] == "412"
    r = one(bale, _put(bale, "ho-acl", body, {"x-amz-acl": "private"}))
    assert r[0].split()[1] in ("200", "400", "501")
    r = one(bale, _put(bale, "ho-q", body, query=[("x-id", "PutObject")]))
    assert r[0] == "HTTP/1.1 200 OK"
