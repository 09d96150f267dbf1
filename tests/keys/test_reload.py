"""SIGHUP re-reads the keys file (and only it) without dropping connections (issue 16).

A keep-alive connection opened before the reload serves requests signed by a key that the
reload added; a key the reload removed gets InvalidAccessKeyId; a bad file on reload keeps
the keys in force and logs one error line; the root key is untouched.
"""

import http.client
import signal
import time

import pytest

import baleproc
import sigv4
from conftest import boto3_client

BODY = b"reload-me" * 100


def keys_file(entries):
    return "".join(f'[[keys]]\naccess_key = "{ak}"\nsecret_key = "{sk}"\naccess = "read-write"\n'
                   for ak, sk in entries)


def get(conn, port, ak, sk, path="/rl-bucket/obj", query=()):
    target, h, _ = sigv4.Signer(ak, sk).sign_headers("GET", f"127.0.0.1:{port}", path, query)
    conn.request("GET", target, headers=h)
    r = conn.getresponse()
    return r.status, r.read()


def wait_log(b, needle, count, timeout_s=10):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if b.log_tail(200000).count(needle) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"log never showed {needle!r} x{count}: {b.log_tail(3000)}")


def test_sighup_reloads_keys_and_keeps_connections(tmp_path):
    kf = tmp_path / "keys.toml"
    kf.write_text(keys_file([("oldkey", "old-secret-1")]))
    b = baleproc.Bale(cores=2, extra_args=["--keys-file", str(kf)])
    b.start()
    try:
        root = boto3_client(b.endpoint, baleproc.ACCESS_KEY, baleproc.SECRET_KEY)
        root.create_bucket(Bucket="rl-bucket")
        root.put_object(Bucket="rl-bucket", Key="obj", Body=BODY)

        conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
        assert get(conn, b.port, "oldkey", "old-secret-1") == (200, BODY)
        sock = conn.sock
        local = sock.getsockname()

        kf.write_text(keys_file([("newkey", "new-secret-1")]))
        b.proc.send_signal(signal.SIGHUP)
        wait_log(b, "access keys reloaded", 1)
        assert b.proc.poll() is None, "SIGHUP stopped the server"

        # The same connection (same socket) serves the new key, on the fast path and s3s's.
        assert get(conn, b.port, "newkey", "new-secret-1") == (200, BODY)
        status, body = get(conn, b.port, "newkey", "new-secret-1", "/rl-bucket",
                           [("list-type", "2")])
        assert status == 200 and b"<Key>obj</Key>" in body, body
        assert conn.sock is sock and sock.getsockname() == local
        new = boto3_client(b.endpoint, "newkey", "new-secret-1")
        new.put_object(Bucket="rl-bucket", Key="by-new", Body=b"n")
        # The removed key: InvalidAccessKeyId (fast-path GET and s3s PUT).
        raw_old = sigv4.Client("127.0.0.1", b.port, sigv4.Signer("oldkey", "old-secret-1"))
        for method, path in (("GET", "/rl-bucket/obj"), ("PUT", "/rl-bucket/x")):
            r = raw_old.request(method, path)
            assert r.status == 403 and r.code() == "InvalidAccessKeyId", r
        # The root key is not in the file and keeps working.
        assert root.get_object(Bucket="rl-bucket", Key="by-new")["Body"].read() == b"n"

        # A bad file on reload: one error line, the keys in force stay.
        kf.write_text('[[keys]]\naccess_key = "x"\n')
        b.proc.send_signal(signal.SIGHUP)
        wait_log(b, "access keys NOT reloaded", 1)
        lines = [ln for ln in b.log_tail(200000).splitlines() if "NOT reloaded" in ln]
        assert len(lines) == 1 and "keys[0]" in lines[0], lines
        assert get(conn, b.port, "newkey", "new-secret-1") == (200, BODY)
        kf.unlink()
        b.proc.send_signal(signal.SIGHUP)
        wait_log(b, "access keys NOT reloaded", 2)
        assert get(conn, b.port, "newkey", "new-secret-1") == (200, BODY)
        assert conn.sock is sock
        conn.close()
    finally:
        assert b.stop() == 0
        log = b.log_tail(200000)
        b.cleanup()
    assert "panicked" not in log


def test_sighup_without_keys_file_is_harmless(tmp_path):
    b = baleproc.Bale(cores=1)
    b.start()
    try:
        b.proc.send_signal(signal.SIGHUP)
        wait_log(b, "access keys reloaded", 1)
        assert b.proc.poll() is None
        s3 = boto3_client(b.endpoint, baleproc.ACCESS_KEY, baleproc.SECRET_KEY)
        s3.create_bucket(Bucket="still")
    finally:
        assert b.stop() == 0
        b.cleanup()
