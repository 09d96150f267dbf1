"""Fixtures for the functional suite.

One real `bale serve` per test session (tests/lib/baleproc.py), driven by boto3, the minio
SDK and raw signed requests (sigv4.py). To run the same tests against another S3 server
(a sanity check of the tests themselves), set BALE_ENDPOINT=http://host:port plus
BALE_TEST_ACCESS_KEY / BALE_TEST_SECRET_KEY; tests that need to start bale themselves are
then skipped.
"""

import os
import sys
import uuid
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))

import baleproc  # noqa: E402

# rawhttp.py's checks (`same`) report their values on failure, as a test's asserts do.
pytest.register_assert_rewrite("rawhttp")
import sigv4  # noqa: E402

EXTERNAL = os.environ.get("BALE_ENDPOINT")


class Server:
    def __init__(self, endpoint, access_key, secret_key, region, proc=None):
        self.endpoint = endpoint
        u = urllib.parse.urlparse(endpoint)
        self.host = u.hostname
        self.port = u.port
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.proc = proc

    def signer(self, access_key=None, secret_key=None):
        return sigv4.Signer(access_key or self.access_key, secret_key or self.secret_key, self.region)

    def raw(self, access_key=None, secret_key=None):
        return sigv4.Client(self.host, self.port, self.signer(access_key, secret_key))

    def boto3(self, access_key=None, secret_key=None, **cfg):
        import boto3
        from botocore.config import Config

        c = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                   retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10,
                   read_timeout=60, **cfg)
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key, config=c)

    def minio(self):
        from minio import Minio

        return Minio(f"{self.host}:{self.port}", access_key=self.access_key, secret_key=self.secret_key,
                     secure=False, region=self.region)


@pytest.fixture(scope="session")
def server():
    if EXTERNAL:
        yield Server(EXTERNAL, os.environ["BALE_TEST_ACCESS_KEY"], os.environ["BALE_TEST_SECRET_KEY"],
                     os.environ.get("BALE_TEST_REGION", "us-east-1"))
        return
    b = baleproc.Bale()
    b.start()
    try:
        yield Server(b.endpoint, b.access_key, b.secret_key, b.region, proc=b)
    finally:
        code = b.stop()
        log = b.log_tail(20000)
        b.cleanup()
        if "panicked" in log:
            # A panic anywhere is a bug even when every request was answered.
            print("\n==== bale log (contains a panic) ====\n" + log, file=sys.stderr)
        assert code == 0, f"bale exit code {code} after SIGTERM; log tail:\n{log[-3000:]}"
        assert "panicked" not in log, "bale logged a panic during the suite (see stderr)"


@pytest.fixture(scope="session")
def s3(server):
    return server.boto3()


@pytest.fixture(scope="session")
def raw(server):
    return server.raw()


@pytest.fixture
def bucket(server, s3):
    """A fresh, empty bucket; emptied and removed afterwards."""
    name = "t-" + uuid.uuid4().hex[:20]
    s3.create_bucket(Bucket=name)
    yield name
    try:
        token = None
        while True:
            kw = {"Bucket": name}
            if token:
                kw["ContinuationToken"] = token
            r = s3.list_objects_v2(**kw)
            for o in r.get("Contents", []):
                s3.delete_object(Bucket=name, Key=o["Key"])
            if not r.get("IsTruncated"):
                break
            token = r["NextContinuationToken"]
        s3.delete_bucket(Bucket=name)
    except Exception as e:  # noqa: BLE001 - cleanup must not hide the test's own result
        print(f"cleanup of bucket {name} failed: {e!r}", file=sys.stderr)


@pytest.fixture(scope="session")
def canary(server, s3):
    """A known object; `alive()` proves the server still serves a normal signed GET."""
    name = "canary-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    body = os.urandom(5000)
    s3.put_object(Bucket=name, Key="canary", Body=body)

    def alive():
        r = s3.get_object(Bucket=name, Key="canary")
        got = r["Body"].read()
        assert got == body, "canary object came back with different bytes"
        return True

    return alive
