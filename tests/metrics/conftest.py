"""Fixtures for the metrics suite (tests/suites/21-metrics.sh): real `bale serve` processes
(tests/lib/baleproc.py) with metrics flags, and a strict scrape helper."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "functional"))

import baleproc  # noqa: E402

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture(scope="module")
def bale():
    """Two cores (so requests land on both and the scrape adds them up), a bearer token, a
    second metrics listener, and one info line per request in the log."""
    mport = baleproc.free_port()
    b = baleproc.Bale(cores=2, extra_args=["--metrics-token", TOKEN, "--metrics-listen",
                                           f"127.0.0.1:{mport}", "--log-requests",
                                           "--cache-mb", "64"])
    b.metrics_endpoint = f"http://127.0.0.1:{mport}"
    b.start()
    yield b
    b.cleanup()


def s3_client(b):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=b.endpoint, region_name=b.region,
        aws_access_key_id=b.access_key, aws_secret_access_key=b.secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1, "mode": "standard"}))
