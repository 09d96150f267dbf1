"""Helpers shared by the functional tests."""

import os
import random

import pytest

EXTERNAL = os.environ.get("BALE_ENDPOINT")


needs_own_bale = pytest.mark.skipif(bool(EXTERNAL), reason="starts its own bale process")


def err_code(exc):
    """S3 error code and HTTP status of a botocore ClientError."""
    return exc.response.get("Error", {}).get("Code"), exc.response["ResponseMetadata"]["HTTPStatusCode"]


def payload(n, seed=0):
    """Deterministic, non-repeating bytes (so a misplaced block is always detected)."""
    return random.Random(f"{seed}:{n}").randbytes(n)
