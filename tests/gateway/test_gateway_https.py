"""Gateway mode with the upstream behind TLS (docs/gateway.md "https upstream"): a small
TLS-terminating relay in front of SeaweedFS with a certificate from a test CA made with the
openssl CLI; `--upstream-ca` names the CA. Reads and writes go through; a gateway trusting
another CA refuses the upstream: 503 ServiceUnavailable and a log line naming the handshake."""

import os
import shutil
import sys
import tempfile
import time

import pytest
from botocore.exceptions import ClientError

from conftest import WEED_AK, WEED_SK, Relay, client, weed_bin  # noqa: F401  (skips without weed)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tls"))
from tlsutil import Pki  # noqa: E402


@pytest.fixture
def pki():
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed (apt-get install openssl)")
    root = tempfile.mkdtemp(prefix="bale-gw-pki-")
    p = Pki(root)
    cert, key = p.server("upstream")
    other_root = os.path.join(root, "other")
    os.makedirs(other_root)
    other = Pki(other_root)
    yield p, cert, key, other
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tls_relay(weed, pki):
    p, cert, key, _ = pki
    r = Relay(weed.port, tls=(cert, key)).start()
    yield r
    r.down()


def test_https_upstream_reads_and_writes(weed, bucket, pki, tls_relay, gateway_factory):
    p, _, _, _ = pki
    cw = weed.client()
    direct = os.urandom(200_000)
    cw.put_object(Bucket=bucket, Key="tls/direct", Body=direct)
    g = gateway_factory(tls_relay.endpoint, ["--upstream-ca", p.ca])
    c = g.client()
    assert c.get_object(Bucket=bucket, Key="tls/direct")["Body"].read() == direct  # a miss over TLS
    assert c.get_object(Bucket=bucket, Key="tls/direct", Range="bytes=10-19")["Body"].read() == direct[10:20]
    body = os.urandom(3 * (1 << 20))
    r = c.put_object(Bucket=bucket, Key="tls/put", Body=body)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert cw.get_object(Bucket=bucket, Key="tls/put")["Body"].read() == body  # on the upstream
    assert c.get_object(Bucket=bucket, Key="tls/put")["Body"].read() == body
    keys = [o["Key"] for o in c.list_objects_v2(Bucket=bucket, Prefix="tls/")["Contents"]]
    assert keys == ["tls/direct", "tls/put"]
    c.delete_object(Bucket=bucket, Key="tls/put")
    with pytest.raises(ClientError) as e:
        cw.head_object(Bucket=bucket, Key="tls/put")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert tls_relay.handshake_failures == 0


def test_https_upstream_with_a_wrong_ca_is_refused(weed, bucket, pki, tls_relay, gateway_factory):
    _, _, _, other = pki
    weed.client().put_object(Bucket=bucket, Key="tls/x", Body=b"x" * 100)
    g = gateway_factory(tls_relay.endpoint, ["--upstream-ca", other.ca])
    c = g.client()
    t0 = time.time()
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket=bucket, Key="tls/x")
    assert time.time() - t0 < 5
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert e.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert "TLS" in e.value.response["Error"]["Message"], e.value.response["Error"]
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket=bucket, Key="tls/y", Body=b"y")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert e.value.response["Error"]["Code"] == "ServiceUnavailable"
    with pytest.raises(ClientError):
        weed.client().head_object(Bucket=bucket, Key="tls/y")  # nothing acknowledged or written
    assert tls_relay.handshake_failures >= 1
    deadline = time.time() + 3
    while "TLS handshake" not in g.log_tail(20000) and time.time() < deadline:
        time.sleep(0.1)
    log = g.log_tail(20000)
    assert "gateway: upstream request failed" in log and "TLS handshake" in log, log[-2000:]
