"""PutObject bodies of unknown length (`Transfer-Encoding: chunked`, no Content-Length) through
a gateway (issue 15, part 6): up to 64 MiB one upstream PutObject as before; over it streamed
to the upstream as a multipart upload of 16 MiB parts, acknowledged only after the upstream's
CompleteMultipartUpload; an upstream cut mid-upload answers 5xx with an S3 code, acknowledges
nothing and leaves no upload behind; a conditional write over 64 MiB is refused (501).

boto3 sends unknown lengths only over https (its trailer checksums), so the requests are
written here on a raw socket, SigV4-signed with `UNSIGNED-PAYLOAD`, the body in HTTP chunks."""

import hashlib
import os
import socket
import sys
import threading
import time

from conftest import sha_of, weed_bin  # noqa: F401  (skips the module when there is no weed)

MiB = 1 << 20


def body_chunks(total, seed=b"bigput"):
    """`total` bytes in chunks of 1 MiB + 7 bytes (never on a part edge), each distinct."""
    base = hashlib.sha256(seed).digest() * ((MiB + 7) // 32 + 1)
    i = 0
    sent = 0
    while sent < total:
        n = min(MiB + 7, total - sent)
        c = (i.to_bytes(8, "big") + base)[:n]
        yield c
        sent += n
        i += 1


def digest(total, seed=b"bigput"):
    h = hashlib.sha256()
    for c in body_chunks(total, seed):
        h.update(c)
    return h.hexdigest()


def signed_head(g, path, extra=None):
    """A SigV4-signed PUT head, `UNSIGNED-PAYLOAD`, `Transfer-Encoding: chunked` (unsigned)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "functional"))
    import sigv4

    h = {"Transfer-Encoding": "chunked", **(extra or {})}
    signer = sigv4.Signer(g.access_key, g.secret_key, g.region)
    target, h, _ = signer.sign_headers("PUT", f"127.0.0.1:{g.port}", path, (), h, "UNSIGNED-PAYLOAD",
                                       unsigned_headers=("transfer-encoding",))
    lines = [f"PUT {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in h.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked_put(g, path, total, extra=None, at_bytes=None, on_bytes=None, seed=b"bigput", timeout_s=120):
    """Sends a chunked PUT of `total` bytes; `on_bytes()` runs once `at_bytes` were sent.
    Returns (status, head text, body bytes) of the answer."""
    s = socket.create_connection(("127.0.0.1", g.port), timeout=timeout_s)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.sendall(signed_head(g, path, extra))

    def send():
        sent = 0
        fired = False
        try:
            for c in body_chunks(total, seed):
                s.sendall(b"%x\r\n" % len(c) + c + b"\r\n")
                sent += len(c)
                if at_bytes is not None and not fired and sent >= at_bytes:
                    fired = True
                    on_bytes()
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the gateway answered (an error) before the body's end and closed

    t = threading.Thread(target=send, daemon=True)
    t.start()
    resp = b""
    try:
        while b"\r\n\r\n" not in resp:
            d = s.recv(65536)
            if not d:
                break
            resp += d
        head, _, body = resp.partition(b"\r\n\r\n")
        text = head.decode("latin-1")
        length = 0
        for line in text.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        while len(body) < length:
            d = s.recv(65536)
            if not d:
                break
            body += d
    finally:
        t.join(timeout=timeout_s)
        s.close()
    status = int(text.split(" ")[1]) if text.startswith("HTTP/1.1 ") else 0
    return status, text, body


def uploads(weed, bucket):
    return weed.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_small_chunked_put_is_one_put_and_kept(weed, bucket, gateway_factory):
    g = gateway_factory(weed.endpoint)
    total = 3 * MiB + 5
    status, head, body = chunked_put(g, f"/{bucket}/small", total)
    assert status == 200, (head, body[:300])
    got, n = sha_of(weed.client().get_object(Bucket=bucket, Key="small")["Body"])
    assert (got, n) == (digest(total), total)
    etag = weed.client().head_object(Bucket=bucket, Key="small")["ETag"]
    assert "-" not in etag, etag  # one PutObject, no multipart
    assert uploads(weed, bucket) == []


def test_small_chunked_put_is_kept_locally(weed, bucket, relay, gateway_factory):
    """Part 7: a PUT of unknown length within 64 MiB is kept locally once the upstream
    acknowledged it, as a PUT with a Content-Length is: with the upstream gone, the gateway
    still answers it, byte-identical, with the upstream's ETag and the PUT's headers."""
    g = gateway_factory(relay.endpoint)
    total = 5 * MiB + 3
    status, head, body = chunked_put(g, f"/{bucket}/kept", total, seed=b"kept",
                                     extra={"Content-Type": "application/x-kept", "x-amz-meta-who": "chunked"})
    assert status == 200, (head, body[:300])
    etag = next(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("etag:"))
    status, head, body = chunked_put(g, f"/{bucket}/empty", 0, seed=b"kept")
    assert status == 200, (head, body[:300])
    before = relay.counts()
    relay.down()
    c = g.client()
    r = c.get_object(Bucket=bucket, Key="kept")
    assert r["ETag"] == etag
    assert r["ContentType"] == "application/x-kept"
    assert r["Metadata"] == {"who": "chunked"}
    assert sha_of(r["Body"]) == (digest(total, b"kept"), total)
    assert c.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""
    assert relay.counts() == before  # nothing reached the upstream
    # The upstream holds the same bytes (it acknowledged them first).
    assert sha_of(weed.client().get_object(Bucket=bucket, Key="kept")["Body"]) == (digest(total, b"kept"), total)


def test_chunked_put_over_64_mib_streams_as_multipart(weed, bucket, gateway_factory):
    g = gateway_factory(weed.endpoint)
    total = 90 * MiB + 123
    t0 = time.time()
    status, head, body = chunked_put(g, f"/{bucket}/big", total,
                                     extra={"Content-Type": "application/x-test", "x-amz-meta-who": "bigput"})
    assert status == 200, (head, body[:300])
    etag = next(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("etag:"))
    assert etag.endswith('-6"'), etag  # 5 parts of 16 MiB + the last 10 MiB
    assert uploads(weed, bucket) == []
    want = digest(total)
    direct = weed.client().get_object(Bucket=bucket, Key="big")
    assert direct["ETag"] == etag
    assert direct["ContentType"] == "application/x-test"
    assert direct["Metadata"] == {"who": "bigput"}
    assert sha_of(direct["Body"]) == (want, total)
    through = g.client().get_object(Bucket=bucket, Key="big")
    assert sha_of(through["Body"]) == (want, total)
    print(f"90 MiB chunked PUT through the gateway: {time.time() - t0:.2f}s")


def test_content_md5_checked_on_streamed_put(weed, bucket, gateway_factory):
    import base64
    g = gateway_factory(weed.endpoint)
    total = 70 * MiB
    wrong = base64.b64encode(hashlib.md5(b"not the body").digest()).decode()
    status, head, body = chunked_put(g, f"/{bucket}/md5", total, extra={"Content-MD5": wrong})
    assert status == 400 and b"<Code>BadDigest</Code>" in body, (head, body[:300])
    assert uploads(weed, bucket) == []
    h = hashlib.md5()
    for c in body_chunks(total):
        h.update(c)
    right = base64.b64encode(h.digest()).decode()
    status, head, body = chunked_put(g, f"/{bucket}/md5", total, extra={"Content-MD5": right})
    assert status == 200, (head, body[:300])
    assert sha_of(weed.client().get_object(Bucket=bucket, Key="md5")["Body"]) == (digest(total), total)


def test_conditional_streamed_put_over_64_mib_refused(weed, bucket, gateway_factory):
    g = gateway_factory(weed.endpoint)
    status, head, body = chunked_put(g, f"/{bucket}/cond", 70 * MiB, extra={"If-None-Match": "*"})
    assert status == 501 and b"<Code>NotImplemented</Code>" in body, (head, body[:300])
    assert uploads(weed, bucket) == []
    c = weed.client()
    try:
        c.head_object(Bucket=bucket, Key="cond")
        raise AssertionError("a refused write reached the upstream")
    except c.exceptions.ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # Within 64 MiB the condition is the upstream's, as for any PUT.
    status, head, body = chunked_put(g, f"/{bucket}/cond", MiB, extra={"If-None-Match": "*"})
    assert status == 200, (head, body[:300])
    status, head, body = chunked_put(g, f"/{bucket}/cond", MiB, extra={"If-None-Match": "*"})
    assert status == 412, (head, body[:300])


def test_upstream_cut_mid_upload_acknowledges_nothing(weed, bucket, relay, gateway_factory):
    g = gateway_factory(relay.endpoint)
    seen = []

    def cut():
        # The upload is open upstream (created once 64 MiB arrived, parts going up).
        deadline = time.time() + 10
        while not seen and time.time() < deadline:
            seen.extend(uploads(weed, bucket))
            time.sleep(0.05)
        relay.down()

    t0 = time.time()
    status, head, body = chunked_put(g, f"/{bucket}/cut", 100 * MiB, at_bytes=82 * MiB, on_bytes=cut)
    took = time.time() - t0
    assert seen, "no upstream multipart upload was open when the upstream was cut"
    assert 500 <= status < 600 and b"<Code>ServiceUnavailable</Code>" in body, (head, body[:300])
    relay.up()
    # The abort the upstream could not take while it was away is retried in the background.
    deadline = time.time() + 20
    left = uploads(weed, bucket)
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = uploads(weed, bucket)
    assert left == [], left
    c = weed.client()
    try:
        c.head_object(Bucket=bucket, Key="cut")
        raise AssertionError("an unacknowledged write is visible upstream")
    except c.exceptions.ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    print(f"cut mid-upload answered {status} in {took:.2f}s")
