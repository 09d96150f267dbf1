"""Fixtures for the TLS suite: a test CA made here, and a real bale serving plain HTTP on one
port and HTTPS on another."""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tlsutil import Pki, TlsBale  # noqa: E402


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed (apt-get install openssl): tests/suites/26-tls-doctor.sh installs it")
    return Pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def tls_server(pki, tmp_path_factory):
    """One server for the client tests; its cert files are copies nobody rewrites."""
    d = str(tmp_path_factory.mktemp("served"))
    cert, key = pki.server("main")
    shutil.copy(cert, os.path.join(d, "cert.pem"))
    shutil.copy(key, os.path.join(d, "key.pem"))
    b = TlsBale(os.path.join(d, "cert.pem"), os.path.join(d, "key.pem"), cores=2)
    b.start()
    yield b
    b.cleanup()
