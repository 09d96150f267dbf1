"""A small, independent AWS Signature Version 4 signer for S3 tests.

Written from the AWS SigV4 spec (header auth, presigned query auth, and the aws-chunked
streaming payloads `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`), so the tests can send
exactly the bytes a given client sends -- including the ones no Python SDK sends (minio-go's
64 KiB signed chunks) and deliberately broken ones.

Also: a raw HTTP/1.1 exchange over a plain socket (`raw_exchange`) that never hangs, for
requests that http.client refuses to send (short bodies, garbage request lines, ...).
"""

import base64
import datetime
import hashlib
import hmac
import socket
import threading
import time
import urllib.parse
import zlib

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
CHUNK = 64 * 1024  # minio-go's payloadChunkSize

_UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def uri_encode(s, encode_slash=True):
    """AWS UriEncode: every byte except unreserved characters as %XY (upper hex)."""
    if isinstance(s, str):
        s = s.encode("utf-8")
    out = []
    for b in s:
        if b in _UNRESERVED or (b == ord("/") and not encode_slash):
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def crc32_b64(data):
    return base64.b64encode((zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")).decode()


def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def amz_now(offset_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y%m%dT%H%M%SZ")


class Signer:
    def __init__(self, access_key, secret_key, region="us-east-1", service="s3"):
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.service = service

    # -- primitives -------------------------------------------------------------------
    def scope(self, amz_date):
        return f"{amz_date[:8]}/{self.region}/{self.service}/aws4_request"

    def signing_key(self, amz_date):
        k = _hmac(("AWS4" + self.secret_key).encode(), amz_date[:8])
        k = _hmac(k, self.region)
        k = _hmac(k, self.service)
        return _hmac(k, "aws4_request")

    def signature(self, amz_date, string_to_sign):
        return hmac.new(self.signing_key(amz_date), string_to_sign.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def canonical_query(query):
        pairs = [(uri_encode(k), uri_encode(v)) for k, v in query]
        pairs.sort()
        return "&".join(f"{k}={v}" for k, v in pairs)

    def canonical_request(self, method, enc_path, query, headers, signed, payload_hash):
        lower = {}
        for k, v in headers.items():
            lower[k.lower()] = " ".join(str(v).strip().split())
        canon_headers = "".join(f"{h}:{lower[h]}\n" for h in signed)
        return "\n".join([method, enc_path, self.canonical_query(query), canon_headers,
                          ";".join(signed), payload_hash])

    def string_to_sign(self, amz_date, canonical_request):
        return "\n".join(["AWS4-HMAC-SHA256", amz_date, self.scope(amz_date),
                          sha256_hex(canonical_request.encode())])

    # -- header auth ------------------------------------------------------------------
    def sign_headers(self, method, host, path, query=(), headers=None, payload_hash=EMPTY_SHA256,
                     amz_date=None, unsigned_headers=()):
        """Return (encoded_path_with_query, headers-with-Authorization, seed_signature).

        `path` is the decoded path ("/bucket/key with spaces", str or bytes); it is encoded once
        per S3 rules. Every header given is signed (Host, x-amz-date and x-amz-content-sha256
        are added) except User-Agent, Content-Type and those named in `unsigned_headers`."""
        amz_date = amz_date or amz_now()
        h = dict(headers or {})
        h["Host"] = host
        h["x-amz-date"] = amz_date
        h["x-amz-content-sha256"] = payload_hash
        skip = {u.lower() for u in unsigned_headers} | {"authorization", "user-agent", "content-type"}
        signed = sorted({k.lower() for k in h} - skip)
        enc_path = uri_encode(path, encode_slash=False)
        query = list(query)
        creq = self.canonical_request(method, enc_path, query, h, signed, payload_hash)
        sig = self.signature(amz_date, self.string_to_sign(amz_date, creq))
        h["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{self.scope(amz_date)},"
                              f"SignedHeaders={';'.join(signed)},Signature={sig}")
        target = enc_path
        if query:
            target += "?" + self.canonical_query(query)
        return target, h, sig

    # -- presigned URLs ---------------------------------------------------------------
    def presign(self, method, host, path, expires=300, amz_date=None, query=()):
        amz_date = amz_date or amz_now()
        q = list(query) + [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", f"{self.access_key}/{self.scope(amz_date)}"),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        enc_path = uri_encode(path, encode_slash=False)
        creq = self.canonical_request(method, enc_path, q, {"host": host}, ["host"], UNSIGNED)
        sig = self.signature(amz_date, self.string_to_sign(amz_date, creq))
        q.append(("X-Amz-Signature", sig))
        return f"{enc_path}?{self.canonical_query(q)}"

    # -- aws-chunked streaming ------------------------------------------------------------
    def chunk_signature(self, amz_date, prev_sig, data):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, self.scope(amz_date), prev_sig,
                         EMPTY_SHA256, sha256_hex(data)])
        return self.signature(amz_date, sts)

    def trailer_signature(self, amz_date, prev_sig, canonical_trailers):
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, self.scope(amz_date), prev_sig,
                         sha256_hex(canonical_trailers)])
        return self.signature(amz_date, sts)

    def chunked_body(self, data, amz_date, seed_sig, chunk_size=CHUNK, trailers=None,
                     final_chunk=True, corrupt_chunk=None, minio_go_trailer=False):
        """The aws-chunked body exactly as minio-go's StreamingReader writes it.

        Non-trailer: each chunk `hex(len);chunk-signature=SIG\\r\\n<data>\\r\\n`, then
        `0;chunk-signature=SIG\\r\\n\\r\\n`. With trailers: the final chunk is followed by
        `name:value\\r\\n` lines and `x-amz-trailer-signature:SIG\\r\\n\\r\\n`.
        `corrupt_chunk=i` signs chunk i over different bytes (wrong chunk signature).
        `minio_go_trailer`: lay the trailer out byte for byte as minio-go's addSignedTrailer does
        (`name:value\n` then `\r\nx-amz-trailer-signature:SIG\r\n\r\n`) instead of AWS's
        `name:value\r\n` lines."""
        out = bytearray()
        prev = seed_sig
        chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
        for i, c in enumerate(chunks):
            sig = self.chunk_signature(amz_date, prev, c if corrupt_chunk != i else c + b"x")
            prev = sig
            out += b"%x;chunk-signature=%s\r\n" % (len(c), sig.encode())
            out += c + b"\r\n"
        if not final_chunk:
            return bytes(out)
        sig = self.chunk_signature(amz_date, prev, b"")
        prev = sig
        out += b"0;chunk-signature=%s\r\n" % sig.encode()
        if trailers:
            items = sorted((k.lower(), v) for k, v in trailers.items())
            canonical = "".join(f"{k}:{v}\n" for k, v in items).encode()
            tsig = self.trailer_signature(amz_date, prev, canonical)
            if minio_go_trailer:
                out += canonical + f"\r\nx-amz-trailer-signature:{tsig}\r\n\r\n".encode()
            else:
                for k, v in items:
                    out += f"{k}:{v}\r\n".encode()
                out += f"x-amz-trailer-signature:{tsig}\r\n\r\n".encode()
        else:
            out += b"\r\n"
        return bytes(out)

    def streaming_put(self, host, path, data, chunk_size=CHUNK, trailer_crc32=None, headers=None,
                      decoded_length=None, amz_date=None, final_chunk=True, corrupt_chunk=None,
                      minio_go_trailer=False):
        """Build (target, headers, body) of a streaming PUT as minio-go sends it.

        trailer_crc32: None for plain STREAMING-AWS4-HMAC-SHA256-PAYLOAD; else the base64 CRC32
        value to put in the `x-amz-checksum-crc32` trailer (STREAMING-...-TRAILER)."""
        amz_date = amz_date or amz_now()
        h = dict(headers or {})
        h["x-amz-decoded-content-length"] = str(len(data) if decoded_length is None else decoded_length)
        mode = STREAMING
        trailers = None
        if trailer_crc32 is not None:
            mode = STREAMING_TRAILER
            h["x-amz-trailer"] = "x-amz-checksum-crc32"
            if not minio_go_trailer:  # minio-go does not send Content-Encoding
                h["Content-Encoding"] = "aws-chunked"
            trailers = {"x-amz-checksum-crc32": trailer_crc32}
        target, h, seed = self.sign_headers("PUT", host, path, headers=h, payload_hash=mode,
                                            amz_date=amz_date)
        body = self.chunked_body(data, amz_date, seed, chunk_size, trailers, final_chunk, corrupt_chunk,
                                 minio_go_trailer)
        h["Content-Length"] = str(len(body))
        return target, h, body


# -- raw HTTP -----------------------------------------------------------------------------
class RawResponse:
    def __init__(self, status, reason, headers, body, closed):
        self.status = status
        self.reason = reason
        self.headers = headers  # dict, lower-case names
        self.body = body
        self.closed = closed

    def code(self):
        """The S3 <Code> of an XML error body, or None."""
        b = self.body.decode(errors="replace")
        i = b.find("<Code>")
        j = b.find("</Code>")
        return b[i + 6:j] if i >= 0 and j > i else None

    def __repr__(self):
        return f"RawResponse({self.status} {self.reason} code={self.code()} body={self.body[:300]!r})"


def build_request(method, target, headers, body=b""):
    lines = [f"{method} {target} HTTP/1.1"]
    for k, v in headers.items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_response(buf, closed, head=False):
    """Parse one HTTP/1.1 response from buf; returns RawResponse or None when incomplete.
    head: the request was a HEAD (no body follows, whatever Content-Length says)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    rest = buf[end + 4:]
    if head:
        return RawResponse(status, reason, headers, b"", closed)
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(rest) < n and not closed:
            return None
        return RawResponse(status, reason, headers, bytes(rest[:n]), closed)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        pos = 0
        while True:
            e = rest.find(b"\r\n", pos)
            if e < 0:
                return None if not closed else RawResponse(status, reason, headers, bytes(body), closed)
            size = int(rest[pos:e].split(b";")[0], 16)
            if len(rest) < e + 2 + size + 2:
                return None if not closed else RawResponse(status, reason, headers, bytes(body), closed)
            body += rest[e + 2:e + 2 + size]
            pos = e + 2 + size + 2
            if size == 0:
                return RawResponse(status, reason, headers, bytes(body), closed)
    if status in (204, 304) or 100 <= status < 200:
        return RawResponse(status, reason, headers, b"", closed)
    if not closed:
        return None
    return RawResponse(status, reason, headers, bytes(rest), closed)


def raw_exchange(host, port, data, timeout=10.0, shutdown_write=False, chunks=None, send_delay=0.0,
                 head=None):
    """Send raw bytes, read one response. Never hangs: returns (RawResponse|None, info).

    The response is read by a separate thread while we send, so a server that answers early
    (and closes) is seen even when our send fails. info: dict(sent_all, send_error, closed,
    elapsed, timed_out). `shutdown_write` half-closes after sending (client went away).
    `chunks`: a list of byte strings sent one after another (with send_delay between)."""
    if head is None:
        first = data if data is not None else (chunks[0] if chunks else b"")
        head = first.startswith(b"HEAD ")
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()
    state = {"closed": False, "resp": None, "error": None}
    done = threading.Event()
    t0 = time.time()

    def reader():
        try:
            s.settimeout(timeout)
            while True:
                try:
                    b = s.recv(1 << 16)
                except socket.timeout:
                    return
                except OSError as e:
                    state["error"] = repr(e)
                    state["closed"] = True
                    return
                if not b:
                    state["closed"] = True
                    return
                buf.extend(b)
                try:
                    r = parse_response(buf, False, head)
                except Exception as e:  # noqa: BLE001 - malformed response
                    state["error"] = f"unparseable response: {e!r}: {bytes(buf[:200])!r}"
                    return
                if r is not None:
                    state["resp"] = r
                    return
        finally:
            done.set()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    info = {"sent_all": False, "send_error": None}
    try:
        for i, c in enumerate(chunks if chunks is not None else [data]):
            if i and send_delay:
                time.sleep(send_delay)
            if done.is_set():
                break
            s.sendall(c)
        else:
            info["sent_all"] = True
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
    except OSError as e:
        info["send_error"] = repr(e)
    done.wait(timeout + 1)
    if state["resp"] is None and buf:
        try:
            state["resp"] = parse_response(buf, True, head)
        except Exception:  # noqa: BLE001
            pass
    try:
        s.close()
    except OSError:
        pass
    info.update(closed=state["closed"], read_error=state["error"], elapsed=time.time() - t0,
                timed_out=not done.is_set() or (state["resp"] is None and not state["closed"]))
    return state["resp"], info


class Client:
    """Signed raw requests against one endpoint (host:port)."""

    def __init__(self, host, port, signer):
        self.host = host
        self.port = port
        self.hostport = f"{host}:{port}"
        self.signer = signer

    def request(self, method, path, query=(), headers=None, body=b"", payload_hash=None, timeout=30.0,
                amz_date=None, sign=True):
        if payload_hash is None:
            payload_hash = sha256_hex(body)
        h = dict(headers or {})
        if body or method in ("PUT", "POST"):
            h.setdefault("Content-Length", str(len(body)))
        if sign:
            target, h, _ = self.signer.sign_headers(method, self.hostport, path, query, h, payload_hash,
                                                    amz_date=amz_date)
        else:
            target = uri_encode(path, encode_slash=False)
            if query:
                target += "?" + Signer.canonical_query(list(query))
            h["Host"] = self.hostport
        resp, info = raw_exchange(self.host, self.port, build_request(method, target, h, body), timeout)
        if resp is None:
            raise AssertionError(f"no response to {method} {path}: {info}")
        return resp

    def send(self, method, target, headers, body, timeout=30.0, **kw):
        h = dict(headers)
        return raw_exchange(self.host, self.port, build_request(method, target, h, body), timeout, **kw)
