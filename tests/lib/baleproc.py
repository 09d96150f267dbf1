"""Start and stop a real `bale serve` process for tests.

Every test that needs a server uses this: it picks a free loopback port, gives the
server its own data directory, waits for `/health`, and always stops what it started.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ACCESS_KEY = "baletestaccess"
SECRET_KEY = "baletestsecret/with+chars"
REGION = "us-east-1"


def bale_bin():
    path = os.environ.get("BALE_BIN") or os.path.join(ROOT, "target", "release", "bale")
    if not os.path.exists(path):
        raise RuntimeError(f"bale binary not found at {path}: run `cargo build --release` or set BALE_BIN")
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bale:
    """A running bale server. Use as a context manager or call stop()."""

    def __init__(self, data_dirs=None, cores=None, extra_args=(), env=None, keep_data=False,
                 scheme="http", ssl_context=None):
        self.port = free_port()
        # scheme="https" (with an ssl_context that trusts the test CA) for a TLS-only server.
        self.scheme = scheme
        self.ssl_context = ssl_context
        self.endpoint = f"{scheme}://127.0.0.1:{self.port}"
        self._tmp = None
        if data_dirs is None:
            self._tmp = tempfile.mkdtemp(prefix="bale-test-")
            data_dirs = [os.path.join(self._tmp, "data")]
        self.data_dirs = list(data_dirs)
        self.cores = cores
        self.extra_args = list(extra_args)
        self.env = env
        self.keep_data = keep_data
        self.proc = None
        self.log_path = None
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION

    def args(self):
        a = [bale_bin(), "serve", "--listen", f"127.0.0.1:{self.port}",
             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]
        for d in self.data_dirs:
            a += ["--data", d]
        if self.cores:
            a += ["--cores", str(self.cores)]
        return a + self.extra_args

    def start(self, timeout_s=30):
        log_dir = self._tmp or tempfile.gettempdir()
        self.log_path = os.path.join(log_dir, f"bale-{self.port}.log")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        if self.env:
            env.update(self.env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bale exited with {self.proc.returncode} at start: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1,
                                            context=self.ssl_context) as r:
                    if r.status == 200:
                        return self
            except Exception:
                time.sleep(0.05)
        raise RuntimeError(f"bale did not become healthy in {timeout_s}s: {self.log_tail()}")

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return "<no log>"

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s=30):
        """SIGTERM, wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def restart(self):
        self.stop()
        self.port = free_port()
        self.endpoint = f"{self.scheme}://127.0.0.1:{self.port}"
        return self.start()

    def cleanup(self):
        self.stop()
        if self._tmp and not self.keep_data:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False


@contextlib.contextmanager
def running(**kw):
    b = Bale(**kw)
    try:
        yield b.start()
    finally:
        b.cleanup()
