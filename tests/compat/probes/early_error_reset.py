#!/usr/bin/env python3
"""Reproducer for FINDINGS.md F1: a PUT that the server refuses before reading its body.

Sends `PUT` signed with a wrong secret (so bale answers 403 from the headers alone), headers
first and then the body in 64 KiB writes with no `Expect: 100-continue`, as hyper-based clients
(the Rust SDK) and aws-sdk-cpp do. A server that closes without reading the body makes the
client's writes fail (EPIPE / ECONNRESET) and can destroy the response (RFC 9112 9.6: a server
SHOULD do a lingering close). Exit 0 when every attempt read its 403 without a write error.

  tests/.venv/bin/python tests/compat/probes/early_error_reset.py   (starts bale via baleproc)
"""

import hashlib
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
import baleproc  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402


def attempt(port, secret, size, pause):
    body = b"y" * size
    url = f"http://127.0.0.1:{port}/probe-bucket/k"
    req = AWSRequest(method="PUT", url=url, data=body,
                     headers={"x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
    SigV4Auth(Credentials(baleproc.ACCESS_KEY, secret), "s3", "us-east-1").add_auth(req)
    head = f"PUT /probe-bucket/k HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {size}\r\n"
    for k, v in req.headers.items():
        if k.lower() not in ("content-length", "host"):
            head += f"{k}: {v}\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(head.encode() + b"\r\n")
    time.sleep(pause)
    write_err = None
    try:
        for off in range(0, size, 65536):
            s.sendall(body[off:off + 65536])
    except OSError as e:
        write_err = type(e).__name__
    try:
        status = s.recv(65536).split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError as e:
        status = f"no response ({type(e).__name__})"
    s.close()
    return status, write_err


def main():
    bad = 0
    with baleproc.running() as b:
        for size in (70_000, 1_000_000, 8_000_000):
            for pause in (0, 0.05):
                for _ in range(3):
                    status, err = attempt(b.port, b.secret_key + "-wrong", size, pause)
                    ok = status.startswith("HTTP/1.1 403") and err is None
                    bad += not ok
                    print(f"{'ok ' if ok else 'BAD'} body {size:>8} pause {pause}: {status}"
                          + (f", body write failed: {err}" if err else ""), flush=True)
    print("PASS early-error-reset" if bad == 0 else f"FAIL early-error-reset: {bad} attempts lost the body/response")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
