#!/usr/bin/env python3
"""A/B check of two bale builds on the warm 4 KiB GET path, interleaved so that the machine's
noise falls on both alike.

    scripts/bench-ab.py --a OLD_BALE --b NEW_BALE [--rounds 5] [--duration 5] [--conc 1,16]
    scripts/bench-ab.py --a OLD_BALE --b NEW_BALE --cold [--rounds 5]

AB_CACHE_MB sets both servers' --cache-mb (default 256; 0 sends every read to the disk).
--cold: each measurement restarts the server (its object cache is empty), drops the page cache
(root) and reads 500 distinct 4 KiB objects at c=1 (first reads from the disk); the two builds
still alternate round by round.

Starts both servers at once (`--cores 1`, each pinned to CPU 0, separate data directories),
loads 5,000 x 4 KiB objects into each, warms both, then for every round and concurrency runs
`bale-bench get` against A and B back to back (the order alternates each round). Clients are
pinned to CPU 1. Prints the median over rounds of p50, p99 and req/s for each, and B / A; the
summary and the exact commands go to bench/results/ab-<time>-<commit>/ (one small JSON, no raw
files). Needs target/release/bale-bench (BENCH_BIN overrides).
"""

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target/release/bale-bench")
AK, SK = "benchaccess", "benchsecret-ab"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drop_caches():
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def start(binary, work, name, port=None):
    port = port or free_port()
    data = os.path.join(work, name)
    log = open(os.path.join(work, f"{name}.log"), "w")
    cmd = ["taskset", "-c", "0", binary, "serve", "--listen", f"127.0.0.1:{port}", "--data", data,
           "--cores", "1", "--access-key", AK, "--secret-key", SK, "--cache-mb", os.environ.get("AB_CACHE_MB", "256")]
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ep = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(ep + "/health", timeout=1)
            return p, ep
        except Exception:
            time.sleep(0.05)
    p.kill()
    raise SystemExit(f"{name} did not start: see {log.name}")


def bench(args, commands):
    cmd = [BENCH, *args, "--access-key", AK, "--secret-key", SK, "--json", "--pin-cores", "1"]
    commands.append(" ".join(cmd).replace(SK, "$SECRET"))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["reports"][0]


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--a", required=True, help="bale binary A (before)")
    o.add_argument("--b", required=True, help="bale binary B (after)")
    o.add_argument("--rounds", type=int, default=5)
    o.add_argument("--duration", type=int, default=5)
    o.add_argument("--conc", default="1,16")
    o.add_argument("--cold", action="store_true", help="first reads after a restart with caches dropped")
    a = o.parse_args()
    conc = [1] if a.cold else [int(c) for c in a.conc.split(",")]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=9", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(ROOT, "bench/results", f"ab-{'cold-' if a.cold else ''}{stamp}-{commit}")
    work = tempfile.mkdtemp(prefix="bale-ab-")
    commands, procs = [], []
    res = {"A": {c: [] for c in conc}, "B": {c: [] for c in conc}}
    try:
        eps, bins = {}, {"A": a.a, "B": a.b}
        for name, binary in (("A", a.a), ("B", a.b)):
            p, ep = start(binary, work, name)
            procs.append(p)
            eps[name] = ep
            common = ["--endpoint", ep, "--bucket", "abtest", "--prefix", "s4k/", "-n", "5000", "--size", "4k"]
            bench(["load", *common, "-c", "8"], commands)
            bench(["get", *common, "-c", "16", "--requests", "20000"], commands)
        for r in range(a.rounds):
            order = ("A", "B") if r % 2 == 0 else ("B", "A")
            for c in conc:
                for name in order:
                    if a.cold:
                        i = ("A", "B").index(name)
                        procs[i].terminate()
                        procs[i].wait(30)
                        drop_caches()
                        port = int(eps[name].rsplit(":", 1)[1])
                        procs[i], eps[name] = start(bins[name], work, name, port)
                        span = ["--requests", "500"]
                    else:
                        span = ["-d", f"{a.duration}s"]
                    rep = bench(["get", "--endpoint", eps[name], "--bucket", "abtest", "--prefix", "s4k/", "-n",
                                 "5000", "--size", "4k", "-c", str(c), *span, "--seed",
                                 str(r + 1)], commands)
                    res[name][c].append({k: rep[k] for k in ("p50_us", "p99_us", "req_per_s")})
                    print(f"round {r + 1} c={c} {name}: p50 {rep['p50_us']:.1f} p99 {rep['p99_us']:.1f} "
                          f"{rep['req_per_s']:.0f} req/s", file=sys.stderr)
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    summary = {"a": a.a, "b": a.b, "commit": commit, "started": stamp, "rounds": a.rounds, "cold": a.cold,
               "duration_s": a.duration, "loadavg_end": open("/proc/loadavg").read().strip(), "runs": res}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out, "commands.txt"), "w") as f:
        f.write("\n".join(commands) + "\n")
    print(f"A = {a.a}\nB = {a.b}\n{os.path.relpath(out, ROOT)}\n")
    print(f"| GET 4 KiB ({'cold' if a.cold else 'warm'}) | A p50 µs | B p50 µs | B ÷ A | A p99 µs | B p99 µs | B ÷ A | A req/s | B req/s | B ÷ A |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in conc:
        m = {n: {k: statistics.median(x[k] for x in res[n][c]) for k in ("p50_us", "p99_us", "req_per_s")}
             for n in ("A", "B")}
        print(f"| c={c} | {m['A']['p50_us']:.1f} | {m['B']['p50_us']:.1f} | {m['B']['p50_us'] / m['A']['p50_us']:.2f}× "
              f"| {m['A']['p99_us']:.0f} | {m['B']['p99_us']:.0f} | {m['B']['p99_us'] / m['A']['p99_us']:.2f}× "
              f"| {m['A']['req_per_s']:.0f} | {m['B']['req_per_s']:.0f} | "
              f"{m['B']['req_per_s'] / m['A']['req_per_s']:.2f}× |")


if __name__ == "__main__":
    main()
