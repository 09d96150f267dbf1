"""The bale process itself: signals, restart durability, startup errors, --help, env keys."""

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

import baleproc
from helpers import needs_own_bale, payload

pytestmark = needs_own_bale

MiB = 1024 * 1024


def run_bale(args, timeout=20, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([baleproc.bale_bin()] + args, capture_output=True, timeout=timeout, env=e)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def first_line(out, err):
    for line in (err + "\n" + out).splitlines():
        if line.strip():
            return line
    return ""


def client(b):
    from conftest import Server

    return Server(b.endpoint, b.access_key, b.secret_key, b.region, proc=b).boto3()


def test_help():
    rc, out, err = run_bale(["--help"])
    assert rc == 0, err
    rc, out, err = run_bale(["serve", "--help"])
    assert rc == 0, err
    for flag in ("--listen", "--data", "--cores", "--access-key", "--secret-key", "--region"):
        assert flag in out, f"{flag} not explained in `bale serve --help`"


@pytest.mark.parametrize("args,word", [
    (["serve", "--bogus-flag"], "bogus"),
    (["serve", "--listen", "not-an-address"], "not-an-address"),
    (["serve", "--cores", "zero"], "zero"),
    (["no-such-subcommand"], "no-such-subcommand"),
])
def test_bad_flag(tmp_path, args, word):
    rc, out, err = run_bale(args + ([] if "serve" not in args else ["--data", str(tmp_path / "d")]))
    assert rc != 0
    line = first_line(out, err)
    assert word in line or word in err, f"first line does not say what is wrong: {line!r}\n{err}"


def test_unusable_data_dir(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("not a directory")
    port = baleproc.free_port()
    for d in (f, f / "sub"):
        rc, out, err = run_bale(["serve", "--listen", f"127.0.0.1:{port}", "--data", str(d),
                                 "--access-key", "goodaccesskey", "--secret-key", "goodsecretkey"])
        assert rc != 0, f"bale started on unusable data dir {d}"
        line = first_line(out, err)
        assert str(f) in (out + err), f"the message should name the directory: {line!r}"
        assert len([x for x in err.splitlines() if x.strip()]) == 1, f"one line expected: {err!r}"


def test_port_in_use(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        rc, out, err = run_bale(["serve", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "d"),
                                 "--access-key", "goodaccesskey", "--secret-key", "goodsecretkey"])
        assert rc != 0, "bale started on a port already in use"
        assert str(port) in (out + err) or "in use" in (out + err).lower(), (out, err)
        assert len([x for x in err.splitlines() if x.strip()]) == 1, f"one line expected: {err!r}"
    finally:
        s.close()


def test_sigterm_exit_0_and_durable():
    b = baleproc.Bale(keep_data=True)
    b.start()
    try:
        s3 = client(b)
        s3.create_bucket(Bucket="durable")
        objs = {f"k{i}": payload(sz, seed=i) for i, sz in enumerate([0, 1, 4096, MiB + 1, 5 * MiB])}
        for k, v in objs.items():
            s3.put_object(Bucket="durable", Key=k, Body=v)
        s3.delete_object(Bucket="durable", Key="k1")
        t0 = time.time()
        rc = b.stop(timeout_s=30)
        assert rc == 0, f"exit code {rc} after SIGTERM; log: {b.log_tail()}"
        assert time.time() - t0 < 30
        b.restart()
        s3 = client(b)
        for k, v in objs.items():
            if k == "k1":
                continue
            assert s3.get_object(Bucket="durable", Key=k)["Body"].read() == v, k
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="durable").get("Contents", [])]
        assert keys == ["k0", "k2", "k3", "k4"]
    finally:
        b.keep_data = False
        b.cleanup()


def test_sigint_exit_0():
    b = baleproc.Bale()
    b.start()
    try:
        b.proc.send_signal(signal.SIGINT)
        rc = b.proc.wait(timeout=30)
        assert rc == 0, b.log_tail()
    finally:
        b.cleanup()


def test_sigterm_during_uploads():
    """SIGTERM while PUTs stream in: every PUT answered 200 is there after restart."""
    b = baleproc.Bale(keep_data=True)
    b.start()
    acked = {}
    stop = threading.Event()
    try:
        s3 = client(b)
        s3.create_bucket(Bucket="inflight")

        def worker(w):
            c = client(b)
            i = 0
            while not stop.is_set():
                k = f"w{w}-{i}"
                data = payload(64 * 1024 * (i % 7) + 100, seed=k)
                try:
                    c.put_object(Bucket="inflight", Key=k, Body=data)
                except Exception:  # noqa: BLE001 - the server is going away
                    return
                acked[k] = data
                i += 1

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        t0 = time.time()
        b.proc.send_signal(signal.SIGTERM)
        rc = b.proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(30)
        assert rc == 0, f"exit code {rc}; log {b.log_tail()}"
        assert time.time() - t0 < 30
        assert acked, "no PUT succeeded before SIGTERM"
        b.restart()
        s3 = client(b)
        for k, v in acked.items():
            assert s3.get_object(Bucket="inflight", Key=k)["Body"].read() == v, k
    finally:
        stop.set()
        b.keep_data = False
        b.cleanup()


def test_kill9_acknowledged_survive():
    b = baleproc.Bale(keep_data=True)
    b.start()
    try:
        s3 = client(b)
        s3.create_bucket(Bucket="killnine")
        objs = {f"o{i}": payload(i * 37_000, seed=i) for i in range(20)}
        for k, v in objs.items():
            s3.put_object(Bucket="killnine", Key=k, Body=v)
        s3.delete_object(Bucket="killnine", Key="o3")
        b.kill9()
        b.restart()
        s3 = client(b)
        assert s3.head_bucket(Bucket="killnine")["ResponseMetadata"]["HTTPStatusCode"] == 200
        for k, v in objs.items():
            if k == "o3":
                continue
            assert s3.get_object(Bucket="killnine", Key=k)["Body"].read() == v, k
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="killnine")["Contents"]}
        assert keys == set(objs) - {"o3"}
    finally:
        b.keep_data = False
        b.cleanup()


class EnvKeysBale(baleproc.Bale):
    def args(self):
        a = [baleproc.bale_bin(), "serve", "--listen", f"127.0.0.1:{self.port}"]
        for d in self.data_dirs:
            a += ["--data", d]
        return a


@pytest.mark.parametrize("names", [("BALE_ACCESS_KEY", "BALE_SECRET_KEY"), ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")])
def test_keys_from_env(names):
    env = {names[0]: "envaccesskey", names[1]: "envsecretkey123"}
    b = EnvKeysBale(env=env)
    b.access_key, b.secret_key = env[names[0]], env[names[1]]
    b.start()
    try:
        s3 = client(b)
        s3.create_bucket(Bucket="envkeys")
        s3.put_object(Bucket="envkeys", Key="k", Body=b"v")
        assert s3.get_object(Bucket="envkeys", Key="k")["Body"].read() == b"v"
    finally:
        b.cleanup()


def test_several_data_dirs_and_cores():
    tmp = tempfile.mkdtemp(prefix="bale-multi-")
    dirs = [os.path.join(tmp, f"d{i}") for i in range(3)]
    b = baleproc.Bale(data_dirs=dirs, cores=2, keep_data=True)
    b.start()
    try:
        s3 = client(b)
        s3.create_bucket(Bucket="multi")
        objs = {f"key-{i}": payload(i * 1000, seed=i) for i in range(60)}
        for k, v in objs.items():
            s3.put_object(Bucket="multi", Key=k, Body=v)
        keys = []
        token = None
        while True:
            kw = {"Bucket": "multi", "MaxKeys": 7}
            if token:
                kw["ContinuationToken"] = token
            r = s3.list_objects_v2(**kw)
            keys += [o["Key"] for o in r.get("Contents", [])]
            if not r["IsTruncated"]:
                break
            token = r["NextContinuationToken"]
        assert keys == sorted(objs), "listing merged across shards must be ordered and complete"
        b.restart()
        s3 = client(b)
        for k, v in objs.items():
            assert s3.get_object(Bucket="multi", Key=k)["Body"].read() == v
    finally:
        b.keep_data = False
        b.cleanup()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
