"""Helpers for the TLS suite: a test CA and server certificates made with the openssl CLI, and a
bale that serves plain HTTP and HTTPS on two ports."""

import hashlib
import os
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

import baleproc  # noqa: E402


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Pki:
    """A CA and server certificates it signed (SAN localhost and 127.0.0.1)."""

    def __init__(self, root):
        self.root = root
        self.ca = os.path.join(root, "ca.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bale test CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=root)

    def server(self, name, key_type="ec"):
        """Makes name.pem / name.key; returns (cert path, key path)."""
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key_type == "ec" \
            else ["-newkey", "rsa:2048"]
        openssl("req", "-new", *newkey, "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=localhost {name}", cwd=self.root)
        ext = os.path.join(self.root, f"{name}.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                    "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=self.root)
        return os.path.join(self.root, f"{name}.pem"), os.path.join(self.root, f"{name}.key")

    def context(self):
        return ssl.create_default_context(cafile=self.ca)


def der_sha256(path):
    """SHA-256 of a PEM certificate's DER bytes (what a peer's getpeercert(True) hashes to)."""
    with open(path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


class TlsBale(baleproc.Bale):
    """bale with --tls-listen: plain HTTP on .port (health checks), HTTPS on .tls_port."""

    def __init__(self, cert, key, extra_args=(), **kw):
        self.tls_port = baleproc.free_port()
        self.tls_endpoint = f"https://localhost:{self.tls_port}"
        super().__init__(extra_args=["--tls-listen", f"127.0.0.1:{self.tls_port}",
                                     "--tls-cert", cert, "--tls-key", key, *extra_args], **kw)
