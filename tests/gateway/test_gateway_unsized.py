"""An upstream GetObject answer without a Content-Length (`Transfer-Encoding: chunked`) longer
than the gateway reads into memory (64 MiB, `upstream::MAX_UNSIZED_BODY_BYTES`) is passed
through to the client as it arrives and not kept (issue 15, part 7): 200, no Content-Length
(chunked to the client), the upstream's ETag and bytes; the next read fetches again. An
upstream that stops mid-body cuts the client's answer (no final chunk). Within 64 MiB such an
answer is read into memory and kept, as before.

SeaweedFS always sends lengths, so the upstream here is a tiny HTTP server that checks nothing
(no signature) and answers every GET of an object with a chunked body made from its key."""

import hashlib
import http.client
import socket
import urllib.parse
import urllib.request

import pytest

from conftest import Gateway, TinyServer, request_heads, sha_of  # noqa: F401

MiB = 1 << 20
CHUNK = 256 * 1024 + 3


def piece(i, key):
    return hashlib.sha256(f"{key}:{i}".encode()).digest() * (CHUNK // 32 + 1)


def body_of(key, total):
    """Yields the `total` bytes of `key`'s object in CHUNK-sized pieces (each distinct)."""
    sent, i = 0, 0
    while sent < total:
        n = min(CHUNK, total - sent)
        yield piece(i, key)[:n]
        sent += n
        i += 1


def digest(key, total):
    h = hashlib.sha256()
    for c in body_of(key, total):
        h.update(c)
    return h.hexdigest()


class ChunkedUpstream(TinyServer):
    """Answers `GET /bucket/<key>` with 200, `Transfer-Encoding: chunked`, `sizes[key]` bytes;
    `cut[key]`: close after that many body bytes, without the final chunk. Anything else: 404."""

    def __init__(self, sizes, cut=None):
        self.sizes, self.cut = sizes, cut or {}
        self.gets = {}
        super().__init__(backlog=16)

    def _serve(self, c):
        f = c.makefile("rb")
        try:
            for method, target, _ in request_heads(f):
                key = target.split("?")[0].split("/", 2)[-1]
                if method != "GET" or key not in self.sizes:
                    c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\n"
                              b"Content-Length: 46\r\n\r\n<Error><Code>NoSuchKey</Code></Error>\n" + b" " * 8)
                    continue
                with self.lock:
                    self.gets[key] = self.gets.get(key, 0) + 1
                c.sendall(b"HTTP/1.1 200 OK\r\nETag: \"e-" + key.encode() + b"\"\r\n"
                          b"Content-Type: application/x-unsized\r\nx-amz-meta-who: chunked\r\n"
                          b"Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
                sent = 0
                stop = self.cut.get(key)
                for p in body_of(key, self.sizes[key]):
                    if stop is not None and sent + len(p) > stop:
                        c.sendall(b"%x\r\n" % len(p) + p[: stop - sent])
                        c.shutdown(socket.SHUT_RDWR)
                        return
                    c.sendall(b"%x\r\n" % len(p) + p + b"\r\n")
                    sent += len(p)
                c.sendall(b"0\r\n\r\n")
        except OSError:
            return
        finally:
            c.close()


@pytest.fixture
def upstream():
    u = ChunkedUpstream({"big": 70 * MiB + 11, "small": MiB + 5, "cut": 70 * MiB}, cut={"cut": 67 * MiB})
    yield u
    u.stop()


def test_unsized_answer_over_64_mib_passes_through_not_kept(upstream, gateway_factory):
    g = gateway_factory(upstream.endpoint, cores=1)
    c = g.client()
    want = (digest("big", 70 * MiB + 11), 70 * MiB + 11)
    for n in (1, 2):
        r = c.get_object(Bucket="bucket", Key="big")
        h = r["ResponseMetadata"]["HTTPHeaders"]
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert "content-length" not in h, h
        assert h.get("transfer-encoding") == "chunked", h
        assert r["ETag"] == '"e-big"'
        assert r["ContentType"] == "application/x-unsized"
        assert r["Metadata"] == {"who": "chunked"}
        assert sha_of(r["Body"]) == want
        assert upstream.gets["big"] == n  # not kept: every read fetches
    # The s3s side (a SigV4-presigned GET is answered there, through hyper) passes it through too.
    url = g.client(signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": "bucket", "Key": "big"}, ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.status == 200
        assert r.headers.get("Content-Length") is None
        assert sha_of(r) == want
    assert upstream.gets["big"] == 3
    # Within 64 MiB: read into memory, kept, answered with its length; the next read is a hit.
    r = c.get_object(Bucket="bucket", Key="small")
    assert r["ContentLength"] == MiB + 5
    assert sha_of(r["Body"]) == (digest("small", MiB + 5), MiB + 5)
    r = c.get_object(Bucket="bucket", Key="small")
    assert sha_of(r["Body"]) == (digest("small", MiB + 5), MiB + 5)
    assert upstream.gets["small"] == 1


def test_unsized_answer_cut_upstream_cuts_the_client(upstream, gateway_factory):
    g = gateway_factory(upstream.endpoint, cores=1)
    c = g.client()
    url = g.client(signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": "bucket", "Key": "cut"}, ExpiresIn=60)
    # Fast path: a raw read of the chunked answer never reaches a final chunk.
    r = c.get_object(Bucket="bucket", Key="cut")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    got = 0
    with pytest.raises(Exception):
        for ch in iter(lambda: r["Body"].read(MiB), b""):
            got += len(ch)
    assert got <= 67 * MiB, got
    # s3s side: http.client sees the chunked body end without its last chunk.
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("GET", f"{u.path}?{u.query}")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Length") is None
    with pytest.raises((http.client.IncompleteRead, ConnectionError, OSError)):
        while resp.read(MiB):
            pass
    conn.close()
    assert upstream.gets["cut"] == 2
