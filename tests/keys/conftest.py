"""Fixtures for the config-file and access-key tests (suite 24-config-keys).

Each test starts its own real `bale serve` (tests/lib/baleproc.py) or runs `bale config
check`; clients are boto3 and raw requests signed by tests/functional/sigv4.py.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "lib"))
sys.path.insert(0, os.path.join(TESTS, "functional"))

import baleproc  # noqa: E402


def bale(*args, env=None, cwd=None, timeout=30):
    """Runs the bale binary with `args`; returns the CompletedProcess (text)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("BALE_", "MINIO_ROOT_"))}
    if env:
        e.update(env)
    return subprocess.run([baleproc.bale_bin(), *args], capture_output=True, text=True,
                          env=e, cwd=cwd, timeout=timeout)


def boto3_client(endpoint, access_key, secret_key, region="us-east-1", **cfg):
    import boto3
    from botocore.config import Config

    c = Config(signature_version="s3v4", s3={"addressing_style": "path"},
               retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10,
               read_timeout=30, **cfg)
    return boto3.client("s3", endpoint_url=endpoint, region_name=region,
                        aws_access_key_id=access_key, aws_secret_access_key=secret_key, config=c)
