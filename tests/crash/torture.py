#!/usr/bin/env python3
"""Crash-consistency torture for bale (issue 5): kill -9 at random moments under PUT /
overwrite / delete load, restart on the same data, check everything against the client's log.

Each key belongs to one worker thread, so per key at most one request is in flight. The
content of (key, version) is derived from both (size and bytes), so any readback can be
checked against the versions it may legally be:

  * a PUT/DELETE answered 2xx is acknowledged: after a crash exactly that state must be read
    (object byte-identical, or 404 for a delete), unless a later request was in flight;
  * a request in flight at the kill (no answer) may or may not have happened: either the old
    state or the new one, whole -- never torn bytes, never other bytes;
  * the listing must show exactly the keys that GET returns, with their sizes.

PUTs use three body modes in turn: UNSIGNED-PAYLOAD, a signed sha256, and minio-go's
aws-chunked STREAMING-AWS4-HMAC-SHA256-PAYLOAD (64 KiB signed chunks).

Usage: torture.py [--kills N] [--max-seconds S] [--threads T] [--keys K] [--long] [--seed X]
Prints the number of kill points survived; exits 1 on any violation.
"""

import argparse
import concurrent.futures
import hashlib
import http.client
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "lib"))
sys.path.insert(0, os.path.join(TESTS, "functional"))

import baleproc  # noqa: E402
import sigv4  # noqa: E402

BUCKET = "torture"
KiB = 1024
MiB = 1024 * 1024


MP_PART = 5 * MiB  # S3's smallest part (all but the last)


def is_multipart(key, ver, mp_ratio):
    """Whether (key, version) is written by a multipart upload (deterministic)."""
    return mp_ratio > 0 and random.Random(f"mp:{key}#{ver}").random() < mp_ratio


def content(key, ver, mp_ratio=0.0):
    """The bytes of (key, version): size 0 B .. 3 MiB (a multipart version: 5-6 MiB in 2 parts),
    prefixed with a marker when it fits."""
    rnd = random.Random(f"{key}#{ver}")
    r = rnd.random()
    if is_multipart(key, ver, mp_ratio):
        size = MP_PART + rnd.randint(1, MiB)
    elif r < 0.08:
        size = rnd.randint(0, 16)
    elif r < 0.50:
        size = rnd.randint(17, 8 * KiB)
    elif r < 0.85:
        size = rnd.randint(8 * KiB, 256 * KiB)
    else:
        size = rnd.randint(256 * KiB, 3 * MiB)
    head = f"<{key}#{ver}>".encode()
    return (head + rnd.randbytes(size))[:size]


def etag_of(key, ver, data, mp_ratio):
    if is_multipart(key, ver, mp_ratio):
        parts = [data[:MP_PART], data[MP_PART:]]
        return '"' + hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + '-2"'
    return '"' + hashlib.md5(data).hexdigest() + '"'


def fresh_port(b):
    """Restart on a new port: nothing of the old process's sockets can interfere."""
    b.port = baleproc.free_port()
    b.endpoint = f"http://127.0.0.1:{b.port}"


class Conn:
    """One keep-alive connection with our own signer."""

    def __init__(self, server, timeout=30):
        self.server = server
        self.timeout = timeout
        self.c = None

    def _conn(self):
        if self.c is None:
            self.c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=self.timeout)
        return self.c

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None

    def request(self, method, path, body=b"", mode="signed", query=(), headers=None):
        s = self.server
        signer = sigv4.Signer(s.access_key, s.secret_key, s.region)
        hp = f"127.0.0.1:{s.port}"
        if mode == "streaming":
            target, h, body = signer.streaming_put(hp, path, body)
        else:
            ph = sigv4.UNSIGNED if mode == "unsigned" else sigv4.sha256_hex(body)
            hdrs = dict(headers or {})
            if method in ("PUT", "POST"):
                hdrs["Content-Length"] = str(len(body))
            target, h, _ = signer.sign_headers(method, hp, path, query, hdrs, ph)
        try:
            c = self._conn()
            c.request(method, target, body=body if body else None, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
        except Exception:
            self.close()
            raise


class KeyState:
    __slots__ = ("acked", "maybe", "next_ver")

    def __init__(self):
        self.acked = None      # None = absent, else the acknowledged version
        self.maybe = set()     # states an unanswered request may have produced
        self.next_ver = 1


class Torture:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.keys = [f"k{t}/{i:03d}" for t in range(args.threads) for i in range(args.keys_per_thread)]
        self.state = {k: KeyState() for k in self.keys}
        self.violations = []
        self.errors = []  # 4xx/5xx answers while the server was up (not caused by the kill)
        self.stats = dict(puts_acked=0, deletes_acked=0, inflight_at_kill=0, in_doubt_new=0,
                          in_doubt_old=0, verified_objects=0, verified_bytes=0, kill_shapes={},
                          multipart_acked=0)
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ load
    def worker(self, t, server, stop, dead):
        rng = random.Random(f"{self.args.seed}/{t}/{time.time()}")
        mine = [k for k in self.keys if k.startswith(f"k{t}/")]
        conn = Conn(server)
        modes = ["unsigned", "signed", "streaming"]
        try:
            while not stop.is_set() and not dead.is_set():
                key = rng.choice(mine)
                st = self.state[key]
                delete = st.acked is not None and rng.random() < 0.15
                if delete:
                    new = None
                    try:
                        status, _, body = conn.request("DELETE", f"/{BUCKET}/{key}")
                    except Exception:
                        st.maybe.add(None)
                        with self.lock:
                            self.stats["inflight_at_kill"] += 1
                        dead.set()
                        return
                    ok = status == 204
                else:
                    new = st.next_ver
                    st.next_ver += 1
                    data = content(key, new, self.args.multipart)
                    mode = modes[new % 3]
                    try:
                        if is_multipart(key, new, self.args.multipart):
                            status, hdrs, body = self.multipart_put(conn, key, data)
                        else:
                            status, hdrs, body = conn.request("PUT", f"/{BUCKET}/{key}", data, mode)
                    except Exception:
                        st.maybe.add(new)
                        with self.lock:
                            self.stats["inflight_at_kill"] += 1
                        dead.set()
                        return
                    ok = status == 200
                    if ok and hdrs.get("etag") != etag_of(key, new, data, self.args.multipart):
                        self.violations.append(f"PUT {key} v{new}: ETag {hdrs.get('etag')} is not the MD5")
                if ok:
                    st.acked = new
                    st.maybe.clear()
                    with self.lock:
                        self.stats["deletes_acked" if delete else "puts_acked"] += 1
                        if not delete and is_multipart(key, new, self.args.multipart):
                            self.stats["multipart_acked"] += 1
                else:
                    # An error answer while the server is up is a bug to report; the request
                    # may still count as in doubt for the check.
                    self.errors.append(f"{'DELETE' if delete else 'PUT'} {key}: {status} {body[:300]!r}")
                    st.maybe.add(new)
        finally:
            conn.close()

    def multipart_put(self, conn, key, data):
        """CreateMultipartUpload, two UploadParts, CompleteMultipartUpload (the commit point)."""
        path = f"/{BUCKET}/{key}"
        status, hdrs, body = conn.request("POST", path, b"", query=[("uploads", "")])
        if status != 200:
            return status, hdrs, body
        upload_id = body.decode().split("<UploadId>")[1].split("</UploadId>")[0]
        parts = [data[:MP_PART], data[MP_PART:]]
        xml = "<CompleteMultipartUpload>"
        for n, part in enumerate(parts, 1):
            status, hdrs, body = conn.request("PUT", path, part, "unsigned",
                                              query=[("partNumber", str(n)), ("uploadId", upload_id)])
            if status != 200:
                return status, hdrs, body
            xml += f"<Part><PartNumber>{n}</PartNumber><ETag>{hdrs.get('etag')}</ETag></Part>"
        xml += "</CompleteMultipartUpload>"
        status, hdrs, body = conn.request("POST", path, xml.encode(), query=[("uploadId", upload_id)])
        if status == 200 and b"<CompleteMultipartUploadResult" not in body:
            return 500, hdrs, body  # S3 reports some errors inside a 200
        if status == 200:
            etag = body.decode().split("<ETag>")[1].split("</ETag>")[0].replace("&quot;", '"')
            hdrs = dict(hdrs, etag=etag)
        return status, hdrs, body

    # ------------------------------------------------------------------ check
    def verify(self, server):
        bad = []

        def check(key):
            st = self.state[key]
            allowed = {st.acked} | st.maybe
            conn = Conn(server, timeout=60)
            try:
                status, hdrs, body = conn.request("GET", f"/{BUCKET}/{key}")
            except Exception as e:  # noqa: BLE001
                return key, f"GET {key}: {e!r}", None
            finally:
                conn.close()
            if status == 404:
                if None not in allowed:
                    return key, f"GET {key}: 404 but acknowledged v{st.acked} (allowed {sorted(allowed, key=str)})", None
                return key, None, None
            if status != 200:
                return key, f"GET {key}: status {status} {body[:300]!r}", None
            mp = self.args.multipart
            for v in allowed:
                if v is not None and body == content(key, v, mp):
                    if hdrs.get("etag") != etag_of(key, v, body, mp):
                        return key, f"GET {key}: right bytes (v{v}) but ETag {hdrs.get('etag')}", None
                    return key, None, (v, len(body))
            # wrong bytes: describe them
            what = "unknown bytes"
            m = body[:64]
            if m.startswith(b"<"):
                what = f"bytes starting {m[:40]!r}"
            exp = {v: len(content(key, v, mp)) for v in allowed if v is not None}
            return key, (f"GET {key}: TORN/WRONG content: {len(body)} bytes, {what}; allowed versions "
                         f"{sorted(allowed, key=str)} with sizes {exp}"), None

        observed = {}
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            for key, problem, found in ex.map(check, self.keys):
                if problem:
                    bad.append(problem)
                    continue
                observed[key] = found
        # listing must agree with GETs
        listed = {}
        conn = Conn(server, timeout=60)
        token = None
        try:
            while True:
                q = [("list-type", "2"), ("max-keys", "1000")]
                if token:
                    q.append(("continuation-token", token))
                status, _, body = conn.request("GET", f"/{BUCKET}", query=q)
                if status != 200:
                    bad.append(f"LIST: status {status} {body[:300]!r}")
                    break
                text = body.decode()
                for part in text.split("<Contents>")[1:]:
                    k = part.split("<Key>")[1].split("</Key>")[0]
                    size = int(part.split("<Size>")[1].split("</Size>")[0])
                    listed[k] = size
                if "<IsTruncated>true</IsTruncated>" in text:
                    token = text.split("<NextContinuationToken>")[1].split("</NextContinuationToken>")[0]
                else:
                    break
        finally:
            conn.close()
        for key, found in observed.items():
            if found is None and key in listed:
                bad.append(f"LIST shows {key} ({listed[key]} B) but GET says 404")
            if found is not None and listed.get(key) != found[1]:
                bad.append(f"LIST shows {key} as {listed.get(key)} but GET returned {found[1]} bytes")
        for k in listed:
            if k not in self.state:
                bad.append(f"LIST shows a key never written: {k!r}")
        # resolve the doubt: what was read is now the state
        for key, found in observed.items():
            st = self.state[key]
            now = None if found is None else found[0]
            if st.maybe:
                self.stats["in_doubt_new" if now in st.maybe and now != st.acked else "in_doubt_old"] += 1
            st.acked = now
            st.maybe.clear()
            if found is not None:
                self.stats["verified_objects"] += 1
                self.stats["verified_bytes"] += found[1]
        return bad

    # ------------------------------------------------------------------ main loop
    def run(self):
        a = self.args
        tmp = tempfile.mkdtemp(prefix="bale-torture-")
        data_dir = os.path.join(tmp, "data")
        dirs = [data_dir] if a.data_dirs == 1 else [os.path.join(tmp, f"data{i}") for i in range(a.data_dirs)]
        b = baleproc.Bale(data_dirs=dirs, cores=a.cores, keep_data=True)
        b._tmp = tmp  # logs go there
        t_start = time.time()
        kills = 0
        try:
            b.start()
            c = Conn(b)
            status, _, body = c.request("PUT", f"/{BUCKET}")
            c.close()
            assert status == 200, (status, body)
            while kills < a.kills and time.time() - t_start < a.max_seconds:
                stop, dead = threading.Event(), threading.Event()
                threads = [threading.Thread(target=self.worker, args=(t, b, stop, dead), daemon=True)
                           for t in range(a.threads)]
                for th in threads:
                    th.start()
                delay = self.rng.choice([self.rng.uniform(0.0, 0.3), self.rng.uniform(0.2, 2.5)])
                time.sleep(delay)
                if b.proc.poll() is not None:
                    self.violations.append(f"bale died by itself (exit {b.proc.returncode}) under load: "
                                           f"{b.log_tail(3000)}")
                    dead.set()
                    break
                how = "kill -9"
                if self.rng.random() < 0.15:
                    # SIGTERM, then SIGKILL in the middle of the graceful shutdown
                    how = "SIGTERM then kill -9"
                    b.proc.send_signal(signal.SIGTERM)
                    time.sleep(self.rng.uniform(0.0, 0.2))
                b.kill9()
                kills += 1
                self.stats["kill_shapes"][how] = self.stats["kill_shapes"].get(how, 0) + 1
                dead.set()
                for th in threads:
                    th.join(60)
                    if th.is_alive():
                        self.violations.append("a client thread did not finish 60 s after the kill")
                if self.rng.random() < 0.15:
                    # and once more while it starts up / recovers
                    fresh_port(b)
                    p = subprocess.Popen(b.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(self.rng.uniform(0.0, 0.15))
                    p.kill()
                    p.wait()
                    self.stats["kill_shapes"]["during startup"] = self.stats["kill_shapes"].get("during startup", 0) + 1
                try:
                    fresh_port(b)
                    b.start(timeout_s=60)
                except Exception as e:  # noqa: BLE001
                    self.violations.append(f"kill point {kills}: bale did not restart: {e}")
                    break
                problems = self.verify(b)
                if problems:
                    self.violations += [f"kill point {kills} ({how} after {delay:.2f}s of load): {p}" for p in problems]
                    break
                if a.verbose:
                    print(f"kill point {kills}: ok ({delay:.2f}s load, {self.stats})", flush=True)
            # the last round ends with a clean stop: exit 0 and nothing lost
            rc = b.stop()
            if rc != 0:
                self.violations.append(f"SIGTERM after the torture: exit code {rc}")
            else:
                fresh_port(b)
                b.start(timeout_s=60)
                problems = self.verify(b)
                self.violations += [f"after clean restart: {p}" for p in problems]
                b.stop()
        finally:
            log = b.log_tail(6000)
            b.kill9()
            if self.violations and a.keep_on_failure:
                print(f"data kept for inspection: {tmp}", flush=True)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        survived = kills if not self.violations else kills - 1
        elapsed = time.time() - t_start
        print(f"torture: {survived} kill points survived of {kills} in {elapsed:.0f}s; "
              f"{self.stats['puts_acked']} PUTs ({self.stats['multipart_acked']} multipart) and "
              f"{self.stats['deletes_acked']} DELETEs acknowledged; "
              f"{self.stats['inflight_at_kill']} requests in flight at a kill "
              f"({self.stats['in_doubt_new']} landed, {self.stats['in_doubt_old']} did not); "
              f"{self.stats['verified_objects']} object reads verified "
              f"({self.stats['verified_bytes'] / MiB:.0f} MiB); kill shapes {self.stats['kill_shapes']}", flush=True)
        if self.errors:
            print(f"torture: {len(self.errors)} error answers while the server was up, e.g.:", flush=True)
            for e in self.errors[:10]:
                print("  " + e, flush=True)
        if self.violations:
            print("torture: FAILED", flush=True)
            for v in self.violations[:30]:
                print("  " + v, flush=True)
            print("---- bale log tail ----\n" + log, flush=True)
            return 1
        if a.min_kills and survived < min(a.min_kills, a.kills):
            print(f"torture: FAILED: only {survived} kill points in the time allowed (want {a.min_kills})")
            return 1
        if self.errors and a.strict_errors:
            print("torture: FAILED: error answers while the server was up")
            return 1
        return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=30)
    p.add_argument("--max-seconds", type=float, default=170)
    p.add_argument("--min-kills", type=int, default=10, help="fail if fewer kill points fit in the time")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--keys-per-thread", type=int, default=40)
    p.add_argument("--cores", type=int, default=None)
    p.add_argument("--data-dirs", type=int, default=1, help="number of --data directories (disks)")
    p.add_argument("--multipart", type=float, default=0.04,
                   help="share of PUTs done as 2-part multipart uploads (5-6 MiB); 0 turns them off")
    p.add_argument("--seed", default=str(int(time.time())))
    p.add_argument("--long", action="store_true", help="hundreds of kill points (300, up to 60 min)")
    p.add_argument("--strict-errors", action="store_true", default=True)
    p.add_argument("--keep-on-failure", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    if a.long:
        a.kills = max(a.kills, 300)
        a.max_seconds = max(a.max_seconds, 3600)
        a.min_kills = max(a.min_kills, 100)
    print(f"torture: seed {a.seed}, {a.threads} threads x {a.keys_per_thread} keys, {a.data_dirs} data dir(s), "
          f"up to {a.kills} kills "
          f"in {a.max_seconds:.0f}s", flush=True)
    sys.exit(Torture(a).run())


if __name__ == "__main__":
    main()
