"""Raw HTTP/1.1 on a socket, for the tests of the front (test_http_front.py, test_front_put.py):
a module's own bale with one bucket, a SigV4-signed request's bytes, a connection that reads
the answers in order, and the check that the front's answer is hyper's."""

import socket
import uuid

import baleproc
import sigv4

# Headers whose values differ between two answers to the same request.
IGNORED = {"date", "x-amz-request-id"}


def own_bale(cores, extra_args, bucket_prefix, fill=None):
    """A module fixture's body (`yield from`): a bale of its own with one new bucket
    (`b.bucket`; `b.s3` a boto3 client; `fill(client, bucket)` puts what the module needs). At
    its end the bale must not have panicked and must exit 0."""
    b = baleproc.Bale(cores=cores, extra_args=extra_args)
    b.start()
    try:
        c = boto3_client(b)
        bucket = bucket_prefix + uuid.uuid4().hex[:10]
        c.create_bucket(Bucket=bucket)
        if fill:
            fill(c, bucket)
        b.bucket = bucket
        b.s3 = c
        yield b
    finally:
        code = b.stop()
        log = b.log_tail(20000)
        b.cleanup()
        assert "panicked" not in log, log[-3000:]
        assert code == 0, log[-3000:]


def boto3_client(b):
    import boto3
    from botocore.config import Config

    c = Config(signature_version="s3v4", s3={"addressing_style": "path"},
               retries={"max_attempts": 1, "mode": "standard"})
    return boto3.client("s3", endpoint_url=b.endpoint, region_name=b.region,
                        aws_access_key_id=b.access_key, aws_secret_access_key=b.secret_key, config=c)


def signed(b, method, path, headers=None, extra=None, version="HTTP/1.1", query=(),
           payload_hash=sigv4.EMPTY_SHA256, body=b"", secret=None):
    """A SigV4-signed request to bale `b` (head and body bytes): `headers` signed, `extra`
    written after them unsigned; `secret` in place of bale's own to sign it wrong."""
    s = sigv4.Signer(b.access_key, secret or b.secret_key, b.region)
    target, h, _ = s.sign_headers(method, f"127.0.0.1:{b.port}", path, query=query, headers=headers,
                                  payload_hash=payload_hash)
    lines = [f"{method} {target} {version}"] + [f"{k}: {v}" for k, v in h.items()]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Conn:
    def __init__(self, b, timeout=10.0):
        self.s = socket.create_connection(("127.0.0.1", b.port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def response(self, head=False):
        """(status line, [(name, value)...] in order, body) of the next response."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers.append((k, v.strip()))
        h = {k.lower(): v for k, v in headers}
        n = 0 if head or lines[0].split()[1] in ("304", "204") else int(h.get("content-length", 0))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return lines[0], headers, body

    def closed(self, within_s):
        """True when the server closes the connection within `within_s` (nothing more read)."""
        self.s.settimeout(within_s)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def one(b, req, head=False):
    """The answer to `req` sent alone on a new connection."""
    c = Conn(b)
    try:
        c.send(req)
        return c.response(head=head)
    finally:
        c.close()


def same(front, hyper):
    """Front and hyper answers are identical but for date and request id (present in both)."""
    (sl1, h1, b1), (sl2, h2, b2) = front, hyper
    assert sl1 == sl2
    assert [k for k, _ in h1] == [k for k, _ in h2], (h1, h2)
    for (k, v1), (_, v2) in zip(h1, h2):
        if k.lower() in IGNORED:
            assert v1 and v2
        else:
            assert v1 == v2, (k, v1, v2)
    # error bodies carry each answer's own <RequestId>
    rid1 = dict((k.lower(), v) for k, v in h1)["x-amz-request-id"]
    rid2 = dict((k.lower(), v) for k, v in h2)["x-amz-request-id"]
    assert b1 == b2.replace(rid2.encode(), rid1.encode())
