"""Real S3 clients over HTTPS against a certificate from a test CA: boto3, awscli, rclone.
Each asserts on the bytes that come back, not only on exit codes."""

import hashlib
import os
import shutil
import subprocess
import sys
import uuid

import boto3
import pytest
from botocore.config import Config

import baleproc

VENV_BIN = os.path.dirname(sys.executable)


def s3(server, pki):
    return boto3.client(
        "s3", endpoint_url=server.tls_endpoint, region_name=baleproc.REGION,
        aws_access_key_id=baleproc.ACCESS_KEY, aws_secret_access_key=baleproc.SECRET_KEY,
        verify=pki.ca, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def test_boto3_over_https(tls_server, pki):
    c = s3(tls_server, pki)
    bucket = f"tls-{uuid.uuid4().hex[:10]}"
    c.create_bucket(Bucket=bucket)
    small = os.urandom(4096)
    big = os.urandom(9 * 1024 * 1024 + 17)  # multipart with the transfer manager below
    c.put_object(Bucket=bucket, Key="small", Body=small)
    from boto3.s3.transfer import TransferConfig
    import io
    c.upload_fileobj(io.BytesIO(big), bucket, "big",
                     Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
    r = c.get_object(Bucket=bucket, Key="small")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert r["Body"].read() == small
    r = c.get_object(Bucket=bucket, Key="small", Range="bytes=100-199")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert r["Body"].read() == small[100:200]
    assert c.get_object(Bucket=bucket, Key="big")["Body"].read() == big
    h = c.head_object(Bucket=bucket, Key="big")
    assert h["ContentLength"] == len(big)
    keys = [o["Key"] for o in c.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["big", "small"]
    c.delete_object(Bucket=bucket, Key="small")
    c.delete_object(Bucket=bucket, Key="big")
    assert c.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    c.delete_bucket(Bucket=bucket)


def test_boto3_refuses_untrusted_certificate(tls_server):
    """Without the test CA the client must refuse the server (the certificate is really checked)."""
    import botocore.exceptions
    c = boto3.client("s3", endpoint_url=tls_server.tls_endpoint, region_name=baleproc.REGION,
                     aws_access_key_id=baleproc.ACCESS_KEY, aws_secret_access_key=baleproc.SECRET_KEY,
                     config=Config(retries={"max_attempts": 1}))
    with pytest.raises(botocore.exceptions.SSLError):
        c.list_buckets()


def test_awscli_over_https(tls_server, pki, tmp_path):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=baleproc.ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=baleproc.SECRET_KEY, AWS_DEFAULT_REGION=baleproc.REGION,
               AWS_CA_BUNDLE=pki.ca, AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    aws = [os.path.join(VENV_BIN, "aws"), "--endpoint-url", tls_server.tls_endpoint]
    bucket = f"tls-cli-{uuid.uuid4().hex[:8]}"
    data = os.urandom(300_000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)

    def run(*a):
        r = subprocess.run(aws + list(a), env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"aws {a}: {r.stderr}"
        return r.stdout

    run("s3", "mb", f"s3://{bucket}")
    run("s3", "cp", str(src), f"s3://{bucket}/dir/obj.bin")
    assert "obj.bin" in run("s3", "ls", f"s3://{bucket}/dir/")
    run("s3", "cp", f"s3://{bucket}/dir/obj.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data
    run("s3", "rm", f"s3://{bucket}/dir/obj.bin")
    run("s3", "rb", f"s3://{bucket}")


def test_rclone_over_https(tls_server, pki, tmp_path):
    rclone = shutil.which("rclone")
    if rclone is None:
        pytest.fail("rclone is needed (apt-get install rclone): tests/suites/26-tls-doctor.sh installs it")
    env = dict(os.environ, RCLONE_CONFIG="/dev/null",
               RCLONE_CONFIG_BALE_TYPE="s3", RCLONE_CONFIG_BALE_PROVIDER="Other",
               RCLONE_CONFIG_BALE_ACCESS_KEY_ID=baleproc.ACCESS_KEY,
               RCLONE_CONFIG_BALE_SECRET_ACCESS_KEY=baleproc.SECRET_KEY,
               RCLONE_CONFIG_BALE_REGION=baleproc.REGION,
               RCLONE_CONFIG_BALE_ENDPOINT=tls_server.tls_endpoint,
               RCLONE_CONFIG_BALE_FORCE_PATH_STYLE="true")
    # rclone's AWS SDK fails outright ("unsupported transport") when AWS_CA_BUNDLE is set
    # together with --ca-cert: trust comes from --ca-cert alone.
    env.pop("AWS_CA_BUNDLE", None)
    base = [rclone, "--ca-cert", pki.ca, "--retries", "1", "--low-level-retries", "1"]
    bucket = f"tls-rc-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src"
    src.mkdir()
    files = {f"f{i}.bin": os.urandom(1000 * (i + 1) * 37) for i in range(4)}
    for n, b in files.items():
        (src / n).write_bytes(b)

    def run(*a):
        r = subprocess.run(base + list(a), env=env, capture_output=True, timeout=90)
        assert r.returncode == 0, f"rclone {a}: {r.stderr.decode(errors='replace')}"
        return r.stdout

    run("mkdir", f"bale:{bucket}")
    run("copy", str(src), f"bale:{bucket}/d")
    listed = run("lsf", f"bale:{bucket}/d").decode().split()
    assert sorted(listed) == sorted(files)
    for n, b in files.items():
        got = run("cat", f"bale:{bucket}/d/{n}")
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(b).hexdigest(), n
    run("check", str(src), f"bale:{bucket}/d")
    run("purge", f"bale:{bucket}")
