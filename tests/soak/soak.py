#!/usr/bin/env python3
"""Bounded soak test (issue 5, load): mixed GET/PUT/LIST/DELETE at high concurrency against one
bale process for N minutes, zero errors expected, bale's RSS and open fds sampled every second.

Load, all at once for the whole duration:
  - bale-bench get    (verified whole-object GETs of a preloaded set, --get-conns connections)
  - bale-bench load   (overwrite PUTs of a second set, in a loop, --put-conns connections)
  - Python workers    (--workers threads, each on its own keys: PUT random sizes, GET and ranged
                       GET verified byte for byte, HEAD, LIST of its prefix checked against what
                       it knows, DELETE then GET expects 404, occasional multipart upload)
Sampler: every second VmRSS/VmHWM from /proc/PID/status and the number of entries in
/proc/PID/fd.

Fails (exit 1) on: any error (bench errors, worker errors or verification mismatches), bale
exiting, peak RSS over --rss-limit-mb, fd growth (open fds after the load, once idle, more than
--fd-slack above the idle count before the load; or a peak above idle + 4 per connection + 64).

  tests/soak/soak.py --minutes 10                  # the long run (scripts/soak.sh)
  tests/soak/soak.py --minutes 1                   # CI quick mode (tests/suites/80-soak.sh)
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import baleproc  # noqa: E402

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402


def proc_sample(pid):
    st = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                st[k] = int(v.split()[0])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return st.get("VmRSS", 0) / 1024.0, st.get("VmHWM", 0) / 1024.0, fds, st.get("Threads", 0)


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples = []  # (t, rss_mb, hwm_mb, fds, threads)
        self.stop = threading.Event()
        self.t0 = time.time()

    def run(self):
        while not self.stop.is_set():
            try:
                self.samples.append((time.time() - self.t0,) + proc_sample(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                break
            self.stop.wait(1.0)


def payload(key, n, gen):
    seed = hashlib.sha256(f"{key}:{gen}".encode()).digest()
    return (seed * (n // 32 + 1))[:n]


class Worker:
    """One client thread on its own key prefix; knows exactly what should be there."""

    def __init__(self, idx, bale, bucket, stats, errors, deadline, max_size):
        self.idx = idx
        self.bucket = bucket
        self.prefix = f"mix/w{idx:02d}/"
        self.rng = random.Random(1000 + idx)
        self.live = {}  # key -> (size, gen)
        self.gen = 0
        self.stats = stats
        self.errors = errors
        self.deadline = deadline
        self.max_size = max_size
        self.s3 = boto3.client(
            "s3", endpoint_url=bale.endpoint, aws_access_key_id=bale.access_key,
            aws_secret_access_key=bale.secret_key, region_name=bale.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                          max_pool_connections=2, connect_timeout=10, read_timeout=60))

    def err(self, what):
        with self.stats["lock"]:
            self.errors.append(f"w{self.idx}: {what}")

    def count(self, op):
        with self.stats["lock"]:
            self.stats[op] = self.stats.get(op, 0) + 1

    def op_put(self):
        key = self.prefix + f"k{self.rng.randrange(200):03d}"
        n = self.rng.choice([0, 1, 100, 4096, 4097, 65536, self.rng.randrange(self.max_size + 1)])
        self.gen += 1
        body = payload(key, n, self.gen)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        self.live[key] = (n, self.gen)
        self.count("put")

    def op_multipart(self):
        key = self.prefix + f"mp{self.rng.randrange(5)}"
        self.gen += 1
        part1 = payload(key + "p1", 5 << 20, self.gen)
        part2 = payload(key + "p2", self.rng.randrange(1, 100000), self.gen)
        up = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key)
        uid = up["UploadId"]
        e1 = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=uid, PartNumber=1, Body=part1)["ETag"]
        e2 = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=uid, PartNumber=2, Body=part2)["ETag"]
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
        self.live[key] = ("mp", part1 + part2)
        self.count("multipart")

    def expected(self, key):
        v = self.live[key]
        if v[0] == "mp":
            return v[1]
        return payload(key, v[0], v[1])

    def op_get(self):
        if not self.live:
            return
        key = self.rng.choice(list(self.live))
        want = self.expected(key)
        if self.rng.random() < 0.3 and len(want) > 10:
            a = self.rng.randrange(len(want))
            b = min(len(want) - 1, a + self.rng.randrange(1, 70000))
            got = self.s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={a}-{b}")["Body"].read()
            if got != want[a:b + 1]:
                self.err(f"ranged GET {key} bytes={a}-{b}: {len(got)} bytes, content differs")
            self.count("get_range")
        else:
            got = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            if got != want:
                self.err(f"GET {key}: {len(got)} bytes, want {len(want)}, content differs")
            self.count("get")

    def op_head(self):
        if not self.live:
            return
        key = self.rng.choice(list(self.live))
        h = self.s3.head_object(Bucket=self.bucket, Key=key)
        if h["ContentLength"] != len(self.expected(key)):
            self.err(f"HEAD {key}: length {h['ContentLength']}")
        self.count("head")

    def op_list(self):
        keys = set()
        token = None
        while True:
            kw = dict(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=self.rng.choice([7, 100, 1000]))
            if token:
                kw["ContinuationToken"] = token
            r = self.s3.list_objects_v2(**kw)
            keys.update(o["Key"] for o in r.get("Contents", []))
            if not r.get("IsTruncated"):
                break
            token = r["NextContinuationToken"]
        if keys != set(self.live):
            self.err(f"LIST {self.prefix}: {len(keys)} keys, want {len(self.live)} "
                     f"(extra {sorted(keys - set(self.live))[:3]}, missing {sorted(set(self.live) - keys)[:3]})")
        self.count("list")

    def op_delete(self):
        if not self.live:
            return
        key = self.rng.choice(list(self.live))
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        del self.live[key]
        self.count("delete")
        try:
            self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            self.err(f"GET after DELETE {key} succeeded")
        except ClientError as e:
            if e.response["Error"]["Code"] != "NoSuchKey":
                self.err(f"GET after DELETE {key}: {e.response['Error']['Code']}")

    def run(self):
        ops = [(self.op_put, 30), (self.op_get, 35), (self.op_head, 8), (self.op_list, 10),
               (self.op_delete, 15), (self.op_multipart, 0.4)]
        fns = [o[0] for o in ops]
        weights = [o[1] for o in ops]
        while time.time() < self.deadline:
            fn = self.rng.choices(fns, weights)[0]
            try:
                fn()
            except Exception as e:  # every exception is an error in a soak
                self.err(f"{fn.__name__}: {type(e).__name__}: {e}"[:300])
                # resynchronise what we know with what is there
                time.sleep(0.05)


def bench(args, bale, cmd, extra):
    exe = os.environ.get("BALE_BENCH_BIN") or os.path.join(ROOT, "target", "release", "bale-bench")
    a = [exe, cmd, "--endpoint", bale.endpoint, "--access-key", bale.access_key,
         "--secret-key", bale.secret_key, "--bucket", args.bucket, "--json",
         "--max-error-lines", "5"] + extra
    p = subprocess.run(a, capture_output=True, text=True)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        doc = {}
    return p.returncode, doc, p.stderr[-2000:]


def find_num(doc, names):
    """Sum of numeric fields with these names anywhere in a JSON document."""
    total = 0
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in names and isinstance(v, (int, float)):
                total += v
            else:
                total += find_num(v, names)
    elif isinstance(doc, list):
        for v in doc:
            total += find_num(v, names)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--cores", type=int, default=None, help="bale --cores (default: all)")
    ap.add_argument("--cache-mb", type=int, default=256, help="bale --cache-mb (per core)")
    ap.add_argument("--get-conns", type=int, default=32)
    ap.add_argument("--put-conns", type=int, default=16)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--objects", type=int, default=2000, help="preloaded objects for the GET load")
    ap.add_argument("--sizes", default="4k,16k,64k,256k")
    ap.add_argument("--max-size", type=int, default=300_000, help="largest worker PUT")
    ap.add_argument("--rss-limit-mb", type=float, default=None,
                    help="peak RSS bound (default: cores x cache-mb + 512)")
    ap.add_argument("--fd-slack", type=int, default=16)
    ap.add_argument("--bucket", default="soak")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()

    cores = args.cores or os.cpu_count()
    rss_limit = args.rss_limit_mb or (cores * args.cache_mb + 512)
    duration = args.minutes * 60
    extra = ["--cache-mb", str(args.cache_mb)]
    errors = []
    result = {"minutes": args.minutes, "cores": cores, "cache_mb_per_core": args.cache_mb,
              "rss_limit_mb": rss_limit}
    with baleproc.Bale(cores=args.cores, extra_args=extra, env={"RUST_LOG": "warn"}) as bale:
        pid = bale.proc.pid
        rc, doc, err = bench(args, bale, "load", ["-n", str(args.objects), "--size", args.sizes,
                                                  "--prefix", "soak/", "-c", "16"])
        if rc != 0:
            errors.append(f"preload failed (rc {rc}): {err}")
        time.sleep(1)
        rss0, _, fds0, thr0 = proc_sample(pid)
        result["idle_before"] = {"rss_mb": round(rss0, 1), "fds": fds0, "threads": thr0}
        print(f"soak: bale pid {pid}, {cores} cores, cache {args.cache_mb} MiB/core; idle before: "
              f"RSS {rss0:.1f} MiB, {fds0} fds; running {args.minutes} min: GET x{args.get_conns}, "
              f"PUT x{args.put_conns}, mixed workers x{args.workers}", flush=True)

        sampler = Sampler(pid)
        sampler.start()
        deadline = time.time() + duration
        stats = {"lock": threading.Lock()}
        bench_runs = {"get": [], "load": []}

        def get_loop():
            while True:
                left = deadline - time.time()
                if left < 2:
                    return
                d = min(left, 60.0)
                rc, doc, err = bench(args, bale, "get", [
                    "-n", str(args.objects), "--size", args.sizes, "--prefix", "soak/",
                    "-c", str(args.get_conns), "-d", f"{d:.1f}s", "--dist", "zipf"])
                bench_runs["get"].append((rc, doc))
                if rc != 0:
                    errors.append(f"bale-bench get rc {rc}: {err}")

        def put_loop():
            n = 0
            while time.time() < deadline - 2:
                n += 1
                rc, doc, err = bench(args, bale, "load", [
                    "-n", "400", "--size", "4k,64k,1m", "--prefix", f"soak-w{n % 3}/",
                    "-c", str(args.put_conns)])
                bench_runs["load"].append((rc, doc))
                if rc != 0:
                    errors.append(f"bale-bench load rc {rc}: {err}")

        workers = [Worker(i, bale, args.bucket, stats, errors, deadline, args.max_size)
                   for i in range(args.workers)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=2 + args.workers) as ex:
            futs = [ex.submit(get_loop), ex.submit(put_loop)] + [ex.submit(w.run) for w in workers]
            last = time.time()
            while not all(f.done() for f in futs):
                time.sleep(1)
                if bale.proc.poll() is not None:
                    errors.append(f"bale exited with {bale.proc.returncode} during the soak")
                    break
                if time.time() - last >= 30 and sampler.samples:
                    last = time.time()
                    s = sampler.samples[-1]
                    print(f"  t={s[0]:5.0f}s RSS {s[1]:7.1f} MiB, fds {s[3]:4d}, errors so far {len(errors)}", flush=True)
            for f in futs:
                try:
                    f.result(timeout=120)
                except Exception as e:
                    errors.append(f"load thread: {e}")
        sampler.stop.set()
        sampler.join()
        time.sleep(3)  # let keep-alive connections close (clients are gone)
        alive = bale.proc.poll() is None
        if alive:
            rss1, hwm1, fds1, thr1 = proc_sample(pid)
        else:
            rss1 = hwm1 = fds1 = thr1 = -1
        result["idle_after"] = {"rss_mb": round(rss1, 1), "fds": fds1, "threads": thr1,
                                "hwm_mb": round(hwm1, 1)}
        log_tail = bale.log_tail() if hasattr(bale, "log_tail") else ""

    smp = sampler.samples
    rss = [s[1] for s in smp] or [0]
    fds = [s[3] for s in smp] or [0]
    q = max(1, len(smp) // 5)
    get_reqs = sum(find_num(d, {"requests", "count", "ok"}) for _, d in bench_runs["get"])
    get_errs = sum(find_num(d, {"errors"}) for _, d in bench_runs["get"])
    put_reqs = sum(find_num(d, {"requests", "count", "ok"}) for _, d in bench_runs["load"])
    put_errs = sum(find_num(d, {"errors"}) for _, d in bench_runs["load"])
    ops = {k: v for k, v in stats.items() if k != "lock"}
    conns = args.get_conns + args.put_conns + 2 * args.workers
    result.update({
        "samples": len(smp),
        "rss_mb": {"min": round(min(rss), 1), "median": round(statistics.median(rss), 1),
                   "max": round(max(rss), 1), "first_fifth_mean": round(statistics.mean(rss[:q]), 1),
                   "last_fifth_mean": round(statistics.mean(rss[-q:]), 1)},
        "fds": {"min": min(fds), "median": statistics.median(fds), "max": max(fds),
                "first_fifth_mean": round(statistics.mean(fds[:q]), 1),
                "last_fifth_mean": round(statistics.mean(fds[-q:]), 1)},
        "bench_get": {"runs": len(bench_runs["get"]), "requests": get_reqs, "errors": get_errs},
        "bench_put": {"runs": len(bench_runs["load"]), "requests": put_reqs, "errors": put_errs},
        "workers": ops,
        "worker_ops": sum(ops.values()),
        "errors": len(errors),
        "error_samples": errors[:10],
        "connections": conns,
    })
    fails = []
    if errors:
        fails.append(f"{len(errors)} errors")
    if not alive:
        fails.append("bale died")
    if max(rss) > rss_limit:
        fails.append(f"peak RSS {max(rss):.1f} MiB over the bound {rss_limit} MiB")
    if alive and fds1 > fds0 + args.fd_slack:
        fails.append(f"open fds idle after the load {fds1} > idle before {fds0} + {args.fd_slack}")
    if max(fds) > fds0 + 4 * conns + 64:
        fails.append(f"peak fds {max(fds)} > idle {fds0} + 4 x {conns} connections + 64")
    result["failures"] = fails
    result["passed"] = not fails

    print(f"soak: {len(smp)} s sampled; bench GET {get_reqs} requests ({get_errs} errors) in "
          f"{len(bench_runs['get'])} runs; bench PUT {put_reqs} requests ({put_errs} errors) in "
          f"{len(bench_runs['load'])} runs; workers {sum(ops.values())} ops {ops}")
    print(f"soak: RSS MiB min/median/max {min(rss):.1f}/{statistics.median(rss):.1f}/{max(rss):.1f} "
          f"(first fifth {result['rss_mb']['first_fifth_mean']}, last fifth {result['rss_mb']['last_fifth_mean']}; "
          f"bound {rss_limit}); fds min/median/max {min(fds)}/{statistics.median(fds)}/{max(fds)}; "
          f"idle fds before {fds0}, after {fds1}")
    for e in errors[:10]:
        print("  ERROR:", e)
    if fails and log_tail:
        print("---- bale log tail ----\n" + log_tail[-3000:])
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)
    print("soak: " + ("PASSED" if not fails else "FAILED: " + "; ".join(fails)))
    sys.exit(0 if not fails else 1)


if __name__ == "__main__":
    main()
