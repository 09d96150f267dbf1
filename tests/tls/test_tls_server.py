"""The TLS listener itself: certificate reload on SIGHUP (keep-alive connections survive, a bad
certificate keeps the old one), handshake bounds, TLS-only mode, start-up errors."""

import hashlib
import http.client
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

import baleproc
from tlsutil import TlsBale, der_sha256


def peer_sha256(conn):
    return hashlib.sha256(conn.sock.getpeercert(binary_form=True)).hexdigest()


def https_conn(port, pki):
    c = http.client.HTTPSConnection("localhost", port, context=pki.context(), timeout=10)
    c.connect()
    return c


def get_health(c):
    c.request("GET", "/health")
    r = c.getresponse()
    body = r.read()
    return r.status, body


def wait_for(pred, timeout_s=10):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def test_sighup_reloads_certificate_and_keeps_open_connections(pki, tmp_path):
    a_cert, a_key = pki.server("reload-a")
    b_cert, b_key = pki.server("reload-b", key_type="rsa")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    shutil.copy(a_cert, cert)
    shutil.copy(a_key, key)
    fp_a, fp_b = der_sha256(a_cert), der_sha256(b_cert)
    with TlsBale(cert, key, cores=2) as b:
        old = https_conn(b.tls_port, pki)
        assert get_health(old)[0] == 200
        assert peer_sha256(old) == fp_a

        shutil.copy(b_cert, cert)
        shutil.copy(b_key, key)
        b.proc.send_signal(signal.SIGHUP)

        def served_fp():
            c = https_conn(b.tls_port, pki)
            try:
                assert get_health(c)[0] == 200
                return peer_sha256(c)
            finally:
                c.close()
        # Every core picks the new pair up (several fresh connections land on both cores).
        assert wait_for(lambda: served_fp() == fp_b), "new connections never saw certificate B"
        for _ in range(6):
            assert served_fp() == fp_b
        assert "TLS certificate reloaded" in b.log_tail(20000)

        # The keep-alive connection opened before the reload still works, on its old certificate.
        assert get_health(old)[0] == 200
        assert peer_sha256(old) == fp_a
        old.close()

        # A bad certificate: one clear error, the previous certificate keeps serving, no exit.
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
        b.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "TLS certificate reload failed" in b.log_tail(20000))
        assert b.log_tail(20000).count("TLS certificate reload failed") == 1
        assert b.proc.poll() is None
        assert served_fp() == fp_b
        # A key that does not fit the certificate is refused the same way.
        shutil.copy(b_cert, cert)
        shutil.copy(a_key, key)
        b.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: b.log_tail(20000).count("TLS certificate reload failed") == 2)
        assert "does not fit the certificate" in b.log_tail(20000)
        assert served_fp() == fp_b

        # SIGTERM with an idle TLS keep-alive connection and a half-done handshake open: a clean
        # stop (exit 0), not a hang until the shutdown timeout.
        idle = https_conn(b.tls_port, pki)
        assert get_health(idle)[0] == 200
        stalled = socket.create_connection(("127.0.0.1", b.tls_port))
        t0 = time.time()
        assert b.stop() == 0, b.log_tail()
        assert time.time() - t0 < 8, "shutdown waited on idle TLS connections"
        idle.close()
        stalled.close()


def closed_within(sock, limit_s):
    """Seconds until the server closed `sock` (EOF or reset), or None if it stayed open."""
    sock.settimeout(limit_s)
    t0 = time.time()
    try:
        while True:
            d = sock.recv(4096)
            if not d:
                return time.time() - t0
    except (ConnectionResetError, BrokenPipeError):
        return time.time() - t0
    except socket.timeout:
        return None


def test_unfinished_handshake_is_cut_at_header_timeout(pki):
    cert, key = pki.server("hs")
    # One core, room for 2 connections: stalled handshakes must neither linger past the header
    # timeout nor keep a real client out.
    with TlsBale(cert, key, cores=1,
                 extra_args=["--header-timeout-s", "2", "--max-connections-per-core", "2"]) as b:
        silent = socket.create_connection(("127.0.0.1", b.tls_port))
        partial = socket.create_connection(("127.0.0.1", b.tls_port))
        partial.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello record header, then nothing
        time.sleep(0.3)
        # Both slots are held by handshakes that never finish; a real client still gets in.
        c = https_conn(b.tls_port, pki)
        assert get_health(c)[0] == 200
        c.close()
        for s in (silent, partial):
            t = closed_within(s, 6)
            assert t is not None, "a stalled handshake was never closed"
            assert t < 4.5, f"stalled handshake held for {t:.1f}s with --header-timeout-s 2"
            s.close()
        assert b.proc.poll() is None


def test_stalled_handshakes_are_closed_after_timeout(pki):
    cert, key = pki.server("hs2")
    with TlsBale(cert, key, cores=1, extra_args=["--header-timeout-s", "1"]) as b:
        socks = [socket.create_connection(("127.0.0.1", b.tls_port)) for _ in range(20)]
        t0 = time.time()
        for s in socks:
            t = closed_within(s, 5)
            assert t is not None
            s.close()
        assert time.time() - t0 < 4


def test_plain_http_on_tls_port_is_refused_not_served(tls_server):
    s = socket.create_connection(("127.0.0.1", tls_server.tls_port), timeout=5)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
    except ConnectionResetError:
        pass
    s.close()
    assert not data.startswith(b"HTTP/"), data
    # The plain port still answers plain HTTP, the TLS port TLS.
    c = http.client.HTTPConnection("127.0.0.1", tls_server.port, timeout=5)
    c.request("GET", "/health")
    assert c.getresponse().status == 200
    assert tls_server.proc.poll() is None


def test_tls_only_serves_https_on_listen(pki):
    cert, key = pki.server("only")
    b = baleproc.Bale(cores=1, extra_args=["--tls-cert", cert, "--tls-key", key],
                      scheme="https", ssl_context=pki.context())
    b.endpoint = f"https://localhost:{b.port}"
    with b:
        c = https_conn(b.port, pki)
        assert get_health(c)[0] == 200
        assert peer_sha256(c) == der_sha256(cert)
        c.close()
        p = http.client.HTTPConnection("127.0.0.1", b.port, timeout=5)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            p.request("GET", "/health")
            p.getresponse()
        with open(b.log_path, "rb") as f:
            assert f"serving S3 on https://127.0.0.1:{b.port}\n".encode() in f.read()


def start_fails(args, tmp_path):
    r = subprocess.run([baleproc.bale_bin(), "serve", "--listen", f"127.0.0.1:{baleproc.free_port()}",
                        "--data", str(tmp_path / "d"), *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, r.stdout
    assert "panicked" not in r.stderr
    return r.stderr


def test_startup_errors_are_clear(pki, tmp_path):
    cert, key = pki.server("start")
    other_cert, _ = pki.server("start-other")
    err = start_fails(["--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", key], tmp_path)
    assert "cannot read the TLS certificate file" in err and "missing.pem" in err
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    err = start_fails(["--tls-cert", str(empty), "--tls-key", key], tmp_path)
    assert "no certificate" in err
    err = start_fails(["--tls-cert", cert, "--tls-key", cert], tmp_path)
    assert "no usable private key" in err
    err = start_fails(["--tls-cert", other_cert, "--tls-key", key], tmp_path)
    assert "does not fit the certificate" in err
    err = start_fails(["--tls-cert", cert], tmp_path)
    assert "--tls-key" in err
    err = start_fails(["--tls-listen", "127.0.0.1:1"], tmp_path)
    assert "--tls-cert" in err
    port = baleproc.free_port()
    r = subprocess.run([baleproc.bale_bin(), "serve", "--listen", f"127.0.0.1:{port}",
                        "--tls-listen", f"127.0.0.1:{port}", "--tls-cert", cert, "--tls-key", key,
                        "--data", str(tmp_path / "d")], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--tls-listen must differ from --listen" in r.stderr
    big = tmp_path / "big.pem"
    big.write_bytes(b"x" * (2 << 20))
    err = start_fails(["--tls-cert", str(big), "--tls-key", key], tmp_path)
    assert "is it the right file?" in err
