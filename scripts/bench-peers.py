#!/usr/bin/env python3
"""Run the same benchmark scenarios against bale and its peers, one server at a time.

Called by scripts/bench-peers.sh (which builds and installs everything first); prints the run
directory on stdout when done. Every bale-bench call is recorded (exact command line, raw JSON)
under the run directory; scripts/bench-report.py turns that into bench/RESULTS.md.

Servers (all on 127.0.0.1, free ports, fresh data directories):
  bale            target/release/bale serve (--cache-mb 2048, compaction every 1 s at 5 % garbage)
  bale-spin       the same with --spin-us 50 (spin before park; not in the default list)
  bale-base       the same flags as bale on another build: BENCH_BALE_BASE_BIN (a before/after
                  comparison in one run; not in the default list)
  seaweedfs       weed server -filer -s3 (master + volume + filer + s3 gateway in one process)
  s3s-fs          the shipped s3s-fs 0.14.1 binary (no TCP_NODELAY)
  s3s-fs-nodelay  the s3s-fs 0.14.1 library behind a TCP_NODELAY listener
  nginx           nginx serving the same objects as plain files (unsigned GETs): the no-S3 floor
plus fio (io_uring, O_DIRECT, random 4 KiB reads at QD1 and QD32) on the same filesystem.
"""

import argparse
import datetime
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AK, SK = "benchaccess", "benchsecret/with+chars"
BUCKET = "bench"
MILVUS_BUCKET = "milvus-bench"


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


def env_bin(name, default):
    return os.environ.get(name) or default


BENCH = env_bin("BENCH_BIN", os.path.join(ROOT, "target/release/bale-bench"))
BALE = env_bin("BENCH_BALE_BIN", os.path.join(ROOT, "target/release/bale"))
S3SFS = env_bin("BENCH_S3SFS_BIN", os.path.join(ROOT, "bench/out/s3s-root/bin/s3s-fs"))
S3SFS_ND = env_bin("BENCH_S3SFS_NODELAY_BIN", os.path.join(ROOT, "bench/out/s3s-target/release/s3s-fs-nodelay"))
WEED = env_bin("BENCH_WEED_BIN", os.path.join(ROOT, "bench/out/venv/bin/weed"))


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


def drop_caches():
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError as e:
        log(f"cannot drop the page cache ({e}): cold runs are restart-only")
        return False


class Server:
    """One server process (own session, so the whole group is stopped)."""

    signed = True

    def __init__(self, name, work, cpus):
        self.name = name
        self.work = work
        self.data = os.path.join(work, "data")
        self.cpus = cpus
        self.proc = None
        self.port = None
        # once objects are loaded, "ready" also needs one GET of this prefix's first 4 KiB object
        # to succeed (SeaweedFS answers 500 until its volume server has re-registered)
        self.probe_prefix = None
        os.makedirs(self.data, exist_ok=True)

    def cmd(self):
        raise NotImplementedError

    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.port = free_port()
        cmd = self.cmd()
        if self.cpus:
            cmd = ["taskset", "-c", self.cpus] + cmd
        self.cmdline = " ".join(shlex.quote(c) for c in cmd)
        logf = open(os.path.join(self.work, f"{self.name}.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=self.work)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} at start; see {logf.name}")
            if self.ready() and self.probe_ok():
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready; see {logf.name}")

    def ready(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5):
                pass
        except OSError:
            return False
        # a signed CreateBucket (idempotent) proves the S3 path works end to end
        r = subprocess.run([BENCH, "load", *self.client_args(BUCKET), "-n", "0"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0

    def probe_ok(self):
        if not self.probe_prefix:
            return True
        r = subprocess.run([BENCH, "get", *self.client_args(BUCKET), "--prefix", self.probe_prefix, "-n", "1",
                            "--size", "4k", "--requests", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0

    def client_args(self, bucket):
        a = ["--endpoint", self.endpoint(), "--bucket", bucket, "--label", self.name]
        if self.signed:
            a += ["--access-key", AK, "--secret-key", SK]
        else:
            a += ["--no-sign"]
        return a

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart_cold(self, cache_off=False):
        self.stop()
        dropped = drop_caches()
        self.start()
        return dropped

    def footprint(self):
        out = subprocess.run(["du", "-s", "--block-size=1", self.data], capture_output=True, text=True).stdout
        apparent = subprocess.run(["du", "-s", "--apparent-size", "--block-size=1", self.data],
                                  capture_output=True, text=True).stdout
        return {"allocated_bytes": int(out.split()[0]), "apparent_bytes": int(apparent.split()[0])}


class Bale(Server):
    def __init__(self, name, work, cpus, cores, cache_mb, extra, binary=None):
        super().__init__(name, work, cpus)
        self.binary = binary or BALE
        self.cores = cores
        self.cache_mb = cache_mb
        self.extra = extra
        self.cache_off = False

    def cmd(self):
        return [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data", self.data,
                "--cores", str(self.cores), "--access-key", AK, "--secret-key", SK, *self.extra,
                "--cache-mb", "0" if self.cache_off else str(self.cache_mb)]

    def restart_cold(self, cache_off=False):
        """cache_off: restart with the object cache turned off (every read goes to the disk)."""
        self.cache_off = cache_off
        return super().restart_cold()

    def ready(self):
        try:
            with urllib.request.urlopen(self.endpoint() + "/health", timeout=1) as r:
                return r.status == 200
        except Exception:
            return False


class Weed(Server):
    def cmd(self):
        cfg = os.path.join(self.work, "s3.json")
        with open(cfg, "w") as f:
            json.dump({"identities": [{"name": "bench", "credentials": [{"accessKey": AK, "secretKey": SK}],
                                       "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        ports = [free_port() for _ in range(3)]
        return [WEED, "server", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={ports[0]}", f"-volume.port={ports[1]}", f"-filer.port={ports[2]}",
                "-filer", "-s3", f"-s3.port={self.port}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.config={cfg}", "-volume.max=0", "-master.volumeSizeLimitMB=1024"]


class S3sFs(Server):
    def __init__(self, name, work, cpus, binary):
        super().__init__(name, work, cpus)
        self.binary = binary

    def cmd(self):
        return [self.binary, "--host", "127.0.0.1", "--port", str(self.port),
                "--access-key", AK, "--secret-key", SK, self.data]


class Nginx(Server):
    signed = False

    def __init__(self, name, work, cpus, workers):
        super().__init__(name, work, cpus)
        self.workers = workers

    def cmd(self):
        conf = os.path.join(self.work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes {self.workers};
pid {self.work}/nginx.pid;
error_log {self.work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush off;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    default_type application/octet-stream;
    client_body_temp_path {self.work}/tmp;
    proxy_temp_path {self.work}/tmp;
    fastcgi_temp_path {self.work}/tmp;
    uwsgi_temp_path {self.work}/tmp;
    scgi_temp_path {self.work}/tmp;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.data};
    }}
}}
""")
        os.makedirs(os.path.join(self.work, "tmp"), exist_ok=True)
        return ["nginx", "-c", conf, "-p", self.work, "-g", "daemon off;"]

    def ready(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5):
                return True
        except OSError:
            return False


def start_one_core_servers(servers, names, work, cpus, commands, bale_extra=()):
    """Start bale (`--cores 1`, 256 MiB cache, `bale_extra` flags) and/or SeaweedFS, each on its
    own directory under `work`, pinned to `cpus`, appending each to `servers` as it starts (so
    the caller stops those started even when a later one fails); their command lines (secret
    masked) go to `commands`."""
    for name in names:
        w = os.path.join(work, name)
        os.makedirs(w)
        s = Bale(name, w, cpus, 1, 256, list(bale_extra)) if name == "bale" else Weed(name, w, cpus)
        s.start()
        commands.append(s.cmdline.replace(SK, "$SECRET"))
        servers.append(s)


class Runner:
    def __init__(self, a, out):
        self.a = a
        self.out = out
        self.commands = open(os.path.join(out, "commands.txt"), "a")
        self.failures = []

    def bench(self, server, sub, args, tag, bucket=BUCKET):
        """Run bale-bench, save its JSON as raw/<server>/<tag>.json; returns the parsed doc or None."""
        cmd = [BENCH, sub, *server.client_args(bucket), "--json", *args]
        if self.a.client_cpus:
            cmd += ["--pin-cores", self.a.client_cpus]
        line = " ".join(shlex.quote(c) for c in cmd).replace(shlex.quote(SK), "$SECRET")
        self.commands.write(f"# {server.name} {tag}\n{line}\n")
        self.commands.flush()
        t = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        d = os.path.join(self.out, "raw", server.name)
        os.makedirs(d, exist_ok=True)
        doc = None
        try:
            doc = json.loads(r.stdout)
        except json.JSONDecodeError:
            pass
        if doc is None or r.returncode != 0:
            msg = f"{server.name} {tag}: exit {r.returncode}: {r.stderr.strip()[-600:]}"
            log("FAILED", msg)
            self.failures.append(msg)
            if doc is None:
                doc = {"meta": {}, "reports": []}
            doc["failed"] = msg
        doc["exit"] = r.returncode
        doc["tag"] = tag
        doc["server"] = server.name
        doc["wall_s"] = time.time() - t
        with open(os.path.join(d, f"{tag}.json"), "w") as f:
            json.dump(doc, f, indent=1)
        rep = doc["reports"][0] if doc["reports"] else None
        if rep:
            log(f"{server.name:15} {tag:28} n={rep['count']:<7} p50={rep['p50_us']:9.1f} "
                f"p99={rep['p99_us']:9.1f} p99.9={rep['p999_us']:9.1f} req/s={rep['req_per_s']:8.0f} err={rep['errors']}")
        return doc


def datasets(quick):
    if quick:
        return {"4k": ("s4k/", 500, "4k"), "64k": ("s64k/", 200, "64k"), "8m": ("b8m/", 8, "8m"),
                "64m": ("b64m/", 2, "64m")}
    return {"4k": ("s4k/", 5000, "4k"), "64k": ("s64k/", 2000, "64k"), "8m": ("b8m/", 64, "8m"),
            "64m": ("b64m/", 8, "64m")}


def objset(ds):
    prefix, n, size = ds
    return ["--prefix", prefix, "-n", str(n), "--size", size]


def run_server(run, s, a):
    quick = a.quick
    ds = datasets(quick)
    dur = f"{a.duration}s"
    milvus = (["--segments", "2", "--scale", "0.05"] if quick else ["--segments", "4", "--scale", "0.5"])
    files = isinstance(s, Nginx)
    s.start()
    log(f"{s.name} up at {s.endpoint()}: {s.cmdline}")
    info = {"cmdline": s.cmdline}
    try:
        # load (PUT throughput); nginx gets files written directly
        for name, d in ds.items():
            conc = "4" if name in ("8m", "64m") else "8"
            extra = ["--files-dir", s.data] if files else []
            run.bench(s, "load", [*objset(d), "-c", conc, *extra], f"put-{name}")
        if not files:
            run.bench(s, "milvus", [*milvus, "--phases", "build", "--build-concurrency", "8"], "milvus-build",
                      bucket=MILVUS_BUCKET)
        subprocess.run(["sync"])
        s.probe_prefix = ds["4k"][0]
        info["footprint"] = s.footprint()
        info["logical_bytes"] = sum(int(n) * parse_size(sz) for _, n, sz in ds.values())
        # warm-up (not recorded): read every small object; ranged reads of the big objects for a
        # while (a server caches what is read: bale per 16 KiB block, nginx per page)
        for name in ("4k", "64k"):
            d = ds[name]
            run.bench(s, "get", [*objset(d), "-c", "16", "--requests", str(d[1] * 2)], f"warmup-{name}")
        warm_s = "2s" if quick else "15s"
        for name in ("8m", "64m"):
            run.bench(s, "get", [*objset(ds[name]), "--range", "4k", "-c", "16", "-d", warm_s], f"warmup-{name}")
        scen = []
        for c in a.conc:
            scen.append((f"get-4k-c{c}", [*objset(ds["4k"]), "-c", str(c), "-d", dur]))
        for c in a.conc:
            scen.append((f"head-4k-c{c}", [*objset(ds["4k"]), "--head", "-c", str(c), "-d", dur]))
        for c in a.conc:
            scen.append((f"get-64k-c{c}", [*objset(ds["64k"]), "-c", str(c), "-d", dur]))
        for c in a.conc:
            scen.append((f"range-4k-in-8m-c{c}", [*objset(ds["8m"]), "--range", "4k", "-c", str(c), "-d", dur]))
        for c in a.conc:
            scen.append((f"range-4k-in-64m-c{c}", [*objset(ds["64m"]), "--range", "4k", "-c", str(c), "-d", dur]))
        for c in a.conc:
            scen.append((f"footer-64k-in-8m-c{c}", [*objset(ds["8m"]), "--range", "64k", "--footer", "-c", str(c),
                                                   "-d", dur]))
        for r in range(a.repeats):
            for tag, args in scen:
                run.bench(s, "get", [*args, "--seed", str(r + 1)], f"{tag}-r{r + 1}")
            if not files:
                run.bench(s, "milvus", [*milvus, "--phases", "load,search", "--search-duration", dur,
                                        "--search-concurrency", "16", "--seed", str(r + 1)],
                          f"milvus-warm-r{r + 1}", bucket=MILVUS_BUCKET)
        if isinstance(s, Bale):
            mixed(run, s, a, ds, dur)
        if not a.no_cold:
            n4k = 200 if quick else 500  # first reads after a restart with the page cache dropped
            for r in range(a.repeats):
                # c=32 on the device: bale with its cache off, the others right after a restart
                # with the page cache dropped (their page cache fills as they go)
                info["cold_dropped_cache"] = s.restart_cold(cache_off=True)
                run.bench(s, "get", [*objset(ds["4k"]), "-c", "32", "--requests", str(n4k * 8), "--seed",
                                     str(200 + r)], f"cold-get-4k-c32-r{r + 1}")
                s.restart_cold()
                run.bench(s, "get", [*objset(ds["64m"]), "--range", "4k", "-c", "1", "--requests", str(n4k),
                                     "--seed", str(100 + r)], f"cold-range-4k-in-64m-c1-r{r + 1}")
                info["cold_dropped_cache"] = s.restart_cold()
                run.bench(s, "get", [*objset(ds["4k"]), "-c", "1", "--requests", str(n4k), "--seed", str(100 + r)],
                          f"cold-get-4k-c1-r{r + 1}")
                s.restart_cold()
                run.bench(s, "get", [*objset(ds["8m"]), "--range", "4k", "-c", "1", "--requests", str(n4k),
                                     "--seed", str(100 + r)], f"cold-range-4k-in-8m-c1-r{r + 1}")
                if not files:
                    s.restart_cold()
                    run.bench(s, "milvus", [*milvus, "--phases", "load", "--seed", str(100 + r)],
                              f"milvus-cold-r{r + 1}", bucket=MILVUS_BUCKET)
    finally:
        s.stop()
    return info


def mixed(run, s, a, ds, dur):
    """GET 4 KiB at c=16 while a paced PUT stream overwrites the 64 KiB set at 30 % of the PUT
    rate measured in the load phase (overwrites make garbage; bale runs with compaction every
    second at a 5 % garbage ratio, so compaction runs too). Compared with get-4k-c16."""
    put = os.path.join(run.out, "raw", s.name, "put-64k.json")
    try:
        cap = json.load(open(put))["reports"][0]["req_per_s"]
    except (OSError, KeyError, IndexError, ValueError):
        log("mixed: no put-64k result; skipped")
        return
    rate = 0.3 * cap
    secs = int(dur.rstrip("s"))
    for r in range(a.repeats):
        cmd = [BENCH, "load", *s.client_args(BUCKET), "--json", *objset(ds["64k"]), "-c", "4",
               "--rate", f"{rate:.1f}", "-d", f"{secs + 2}s"]
        if a.client_cpus:
            cmd += ["--pin-cores", a.client_cpus]
        tag = f"mixed-put-r{r + 1}"
        run.commands.write(f"# {s.name} {tag} (in the background of mixed-get-4k-c16-r{r + 1})\n"
                           f"{' '.join(shlex.quote(c) for c in cmd).replace(shlex.quote(SK), '$SECRET')}\n")
        bg = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(1)
        run.bench(s, "get", [*objset(ds["4k"]), "-c", "16", "-d", dur, "--seed", str(300 + r)],
                  f"mixed-get-4k-c16-r{r + 1}")
        out, _ = bg.communicate()
        d = os.path.join(run.out, "raw", s.name)
        try:
            doc = json.loads(out)
        except json.JSONDecodeError:
            doc = {"meta": {}, "reports": [], "failed": f"background load exit {bg.returncode}"}
        doc.update({"tag": tag, "server": s.name, "exit": bg.returncode, "target_rate": rate,
                    "capacity_req_per_s": cap})
        with open(os.path.join(d, f"{tag}.json"), "w") as f:
            json.dump(doc, f, indent=1)
        if doc["reports"]:
            rep = doc["reports"][0]
            log(f"{s.name:15} {tag:28} n={rep['count']:<7} req/s={rep['req_per_s']:8.0f} "
                f"(target {rate:.0f}) err={rep['errors']}")


def parse_size(s):
    s = s.lower()
    mul = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(s[-1], 1)
    return int(float(s.rstrip("kmg")) * mul)


def fio(run, a, work):
    """Device floor: random 4 KiB O_DIRECT reads via io_uring at QD1 and QD32."""
    if shutil.which("fio") is None:
        return None
    f = os.path.join(work, "fio.dat")
    size = "256M" if a.quick else "2G"
    runtime = str(max(3, a.duration))
    res = {}
    for qd in (1, 32):
        cmd = ["fio", "--name=randread", f"--filename={f}", f"--size={size}", "--ioengine=io_uring", "--direct=1",
               "--rw=randread", "--bs=4k", f"--iodepth={qd}", f"--runtime={runtime}", "--time_based",
               "--output-format=json"]
        if a.server_cpus:
            cmd = ["taskset", "-c", a.server_cpus] + cmd
        run.commands.write(f"# fio qd{qd}\n{' '.join(shlex.quote(c) for c in cmd)}\n")
        reps = []
        for _ in range(a.repeats):
            r = subprocess.run(cmd, capture_output=True, text=True)
            try:
                j = json.loads(r.stdout[r.stdout.index("{"):])
            except (ValueError, json.JSONDecodeError):
                log("fio failed:", r.stderr[-400:])
                break
            rd = j["jobs"][0]["read"]
            p = rd["clat_ns"]["percentile"]
            reps.append({"iops": rd["iops"], "p50_us": p["50.000000"] / 1000, "p99_us": p["99.000000"] / 1000,
                         "p999_us": p["99.900000"] / 1000, "mean_us": rd["clat_ns"]["mean"] / 1000})
            log(f"fio qd{qd}: iops={rd['iops']:.0f} p50={reps[-1]['p50_us']:.1f}us p99={reps[-1]['p99_us']:.1f}us")
        res[f"qd{qd}"] = reps
    os.remove(f)
    return res


def machine():
    def sh(c):
        return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    return {
        "cpu": sh("lscpu | sed -n 's/^Model name: *//p' | head -1"),
        "nproc": os.cpu_count(),
        "mem": sh("free -g | awk '/Mem:/{print $2\" GiB\"}'"),
        "kernel": sh("uname -r"),
        "os": sh(". /etc/os-release; echo $PRETTY_NAME"),
        "virt": sh("systemd-detect-virt 2>/dev/null || lscpu | sed -n 's/^Hypervisor vendor: *//p'"),
        "disk": sh(f"df -h --output=source,fstype,size {ROOT} | tail -1"),
        "loadavg_start": sh("cat /proc/loadavg"),
        "rustc": sh("rustc --version"),
        "weed": sh(f"{WEED} version 2>/dev/null | head -1"),
        "nginx": sh("nginx -v 2>&1"),
        "fio": sh("fio --version"),
    }


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--quick", action="store_true", help="small data, 2 s runs, 1 repeat (a few minutes)")
    o.add_argument("--servers", default="bale seaweedfs s3s-fs s3s-fs-nodelay nginx")
    o.add_argument("--repeats", type=int, default=None, help="runs per scenario (default 3, quick 1)")
    o.add_argument("--duration", type=int, default=None, help="seconds per timed run (default 10, quick 2)")
    o.add_argument("--conc", default="1,16,64", help="client connections per scenario")
    o.add_argument("--no-cold", action="store_true")
    o.add_argument("--bale-cache-mb", type=int, default=2048,
                   help="bale's --cache-mb (default 2048: the data set fits, as it fits nginx's page cache)")
    o.add_argument("--spin-us", type=int, default=50, help="--spin-us of the bale-spin server")
    ncpu = os.cpu_count() or 2
    half = max(1, ncpu // 2)
    o.add_argument("--server-cpus", default=f"0-{half - 1}" if half > 1 else "0",
                   help="taskset CPU list for the server (default: the lower half)")
    o.add_argument("--client-cpus", default=f"{half}-{ncpu - 1}" if ncpu - half > 1 else str(half),
                   help="CPU list bale-bench pins its threads to (default: the upper half)")
    o.add_argument("--work", default=os.path.join(ROOT, "bench/out/run"), help="data directories (deleted)")
    o.add_argument("--out", default=None, help="run directory (default bench/results/<time>-<commit>)")
    a, _ = o.parse_known_args()
    a.repeats = a.repeats or (1 if a.quick else 3)
    a.duration = a.duration or (2 if a.quick else 10)
    a.conc = [int(c) for c in a.conc.split(",")]
    if ncpu < 2:
        a.server_cpus = a.client_cpus = ""
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "src", "io"],
                           capture_output=True, text=True).stdout.strip() != ""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = a.out or os.path.join(ROOT, "bench/out/results" if a.quick else "bench/results",
                                f"{'quick-' if a.quick else ''}{stamp}-{commit[:9]}")
    os.makedirs(out, exist_ok=True)
    run = Runner(a, out)
    meta = {"commit": commit, "dirty_src": dirty, "started": stamp, "quick": a.quick, "repeats": a.repeats,
            "duration_s": a.duration, "conc": a.conc, "server_cpus": a.server_cpus, "client_cpus": a.client_cpus,
            "machine": machine(), "servers": {}, "argv": sys.argv[1:]}
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    ncores = len(expand_cpus(a.server_cpus)) if a.server_cpus else ncpu
    try:
        meta["fio"] = fio(run, a, a.work)
        for name in a.servers.split():
            w = os.path.join(a.work, name)
            os.makedirs(w)
            cpus = a.server_cpus
            bale_extra = ["--compact-interval-s", "1", "--compact-ratio", "0.05"]
            s = {"bale": lambda: Bale(name, w, cpus, ncores, a.bale_cache_mb, bale_extra),
                 "bale-base": lambda: Bale(name, w, cpus, ncores, a.bale_cache_mb, bale_extra,
                                           binary=os.environ["BENCH_BALE_BASE_BIN"]),
                 "bale-spin": lambda: Bale(name, w, cpus, ncores, a.bale_cache_mb,
                                           bale_extra + ["--spin-us", str(a.spin_us)]),
                 "seaweedfs": lambda: Weed(name, w, cpus),
                 "s3s-fs": lambda: S3sFs(name, w, cpus, S3SFS),
                 "s3s-fs-nodelay": lambda: S3sFs(name, w, cpus, S3SFS_ND),
                 "nginx": lambda: Nginx(name, w, cpus, ncores)}[name]()
            log(f"=== {name}")
            try:
                meta["servers"][name] = run_server(run, s, a)
            except Exception as e:  # one server failing must not lose the others' numbers
                log(f"{name} FAILED: {e}")
                run.failures.append(f"{name}: {e}")
                meta["servers"][name] = {"failed": str(e)}
            shutil.rmtree(w, ignore_errors=True)
    finally:
        meta["failures"] = run.failures
        meta["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        meta["machine"]["loadavg_end"] = open("/proc/loadavg").read().strip()
        with open(os.path.join(out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        shutil.rmtree(a.work, ignore_errors=True)
    print(out)


def expand_cpus(s):
    v = []
    for part in s.split(","):
        if "-" in part:
            x, y = part.split("-")
            v += list(range(int(x), int(y) + 1))
        elif part:
            v.append(int(part))
    return v


if __name__ == "__main__":
    main()
