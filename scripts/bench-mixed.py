#!/usr/bin/env python3
"""Mixed-load check (issue 7): warm 4 KiB GET latency alone and with a background PUT stream.

    scripts/bench-mixed.py [--repeats 3] [--duration 5] [--conc 1,16]

Starts one bale (`--cores 1` pinned to CPU 0, compaction every second at 5 % garbage), loads
5,000 x 4 KiB and 2,000 x 64 KiB objects (the 64 KiB load measures PUT capacity), warms the
4 KiB set, then for each repeat and each GET concurrency: GET alone, then GET while
`bale-bench load --rate` overwrites the 64 KiB set at 30 % of the measured PUT rate (overwrites
make garbage, so compaction runs and dead records are punched). Clients are pinned to CPU 1.
Prints medians over repeats and the p99 ratio (with ÷ alone); raw JSON goes to
bench/results/mixed-<time>-<commit>/. Needs target/release/{bale,bale-bench}
(BENCH_BALE_BIN / BENCH_BIN override)."""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BALE = os.environ.get("BENCH_BALE_BIN") or os.path.join(ROOT, "target/release/bale")
BENCH = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target/release/bale-bench")
AK, SK = "benchaccess", "benchsecret-mixed"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--repeats", type=int, default=3)
    o.add_argument("--duration", type=int, default=5)
    o.add_argument("--conc", default="1,16")
    a = o.parse_args()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(ROOT, "bench/results", f"mixed-{stamp}-{commit[:9]}")
    os.makedirs(out)
    work = tempfile.mkdtemp(prefix="bale-mixed-")
    port = free_port()
    ep = f"http://127.0.0.1:{port}"
    cmd = ["taskset", "-c", "0", BALE, "serve", "--listen", f"127.0.0.1:{port}", "--data", os.path.join(work, "data"),
           "--cores", "1", "--access-key", AK, "--secret-key", SK, "--cache-mb", "1024",
           "--compact-interval-s", "1", "--compact-ratio", "0.05"]
    log = open(os.path.join(work, "bale.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    common = ["--endpoint", ep, "--access-key", AK, "--secret-key", SK, "--json", "--pin-cores", "1"]
    results = {"commit": commit, "cmd": " ".join(cmd), "runs": []}

    def bench(sub, args, tag, background=False):
        c = [BENCH, sub, *common, *args]
        if background:
            return subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        r = subprocess.run(c, capture_output=True, text=True)
        doc = json.loads(r.stdout)
        doc["tag"], doc["exit"] = tag, r.returncode
        with open(os.path.join(out, f"{tag}.json"), "w") as f:
            json.dump(doc, f, indent=1)
        if r.returncode != 0:
            sys.exit(f"{tag}: bale-bench exit {r.returncode}: {r.stderr[-400:]}")
        return doc["reports"][0]

    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(ep + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        bench("load", ["--prefix", "s4k/", "-n", "5000", "--size", "4k", "-c", "8"], "put-4k")
        cap = bench("load", ["--prefix", "s64k/", "-n", "2000", "--size", "64k", "-c", "8"], "put-64k")["req_per_s"]
        rate = 0.3 * cap
        bench("get", ["--prefix", "s4k/", "-n", "5000", "--size", "4k", "-c", "16", "--requests", "20000"], "warmup")
        print(f"PUT capacity (64 KiB, c=8): {cap:.0f}/s; background stream at {rate:.0f}/s", file=sys.stderr)
        dur = f"{a.duration}s"
        for r in range(1, a.repeats + 1):
            for c in [int(x) for x in a.conc.split(",")]:
                get = ["--prefix", "s4k/", "-n", "5000", "--size", "4k", "-c", str(c), "-d", dur, "--seed", str(r)]
                alone = bench("get", get, f"alone-c{c}-r{r}")
                bg = bench("load", ["--prefix", "s64k/", "-n", "2000", "--size", "64k", "-c", "4", "--rate",
                                    f"{rate:.1f}", "-d", f"{a.duration + 2}s"], None, background=True)
                time.sleep(1)
                mixed = bench("get", get, f"mixed-c{c}-r{r}")
                put_doc = json.loads(bg.communicate()[0])
                put = put_doc["reports"][0]
                with open(os.path.join(out, f"stream-c{c}-r{r}.json"), "w") as f:
                    json.dump(put_doc, f, indent=1)
                results["runs"].append({"c": c, "r": r, "alone": alone, "mixed": mixed, "stream": put})
                print(f"c={c} r{r}: alone p50 {alone['p50_us']:.0f} p99 {alone['p99_us']:.0f} | with stream "
                      f"({put['req_per_s']:.0f} PUT/s) p50 {mixed['p50_us']:.0f} p99 {mixed['p99_us']:.0f} µs",
                      file=sys.stderr)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    results["put_capacity_per_s"], results["stream_target_per_s"] = cap, rate
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(results, f, indent=1)
    # Keep the repository light: the per-run JSON files go into one raw.tar.xz.
    with tarfile.open(os.path.join(out, "raw.tar.xz"), "w:xz") as t:
        for name in sorted(os.listdir(out)):
            if name.endswith(".json") and name != "summary.json":
                t.add(os.path.join(out, name), arcname=name)
                os.remove(os.path.join(out, name))
    print(f"commit {commit}; PUT capacity {cap:.0f}/s (64 KiB), stream target {rate:.0f}/s; raw: "
          f"{os.path.relpath(out, ROOT)}\n")
    print("| GET 4 KiB | p50 alone | p50 with stream | p99 alone | p99 with stream | p99 ratio | stream PUT/s |")
    print("|---|---|---|---|---|---|---|")
    for c in sorted({x["c"] for x in results["runs"]}):
        rs = [x for x in results["runs"] if x["c"] == c]
        m = lambda f: statistics.median(f(x) for x in rs)  # noqa: E731
        a50, m50 = m(lambda x: x["alone"]["p50_us"]), m(lambda x: x["mixed"]["p50_us"])
        a99, m99 = m(lambda x: x["alone"]["p99_us"]), m(lambda x: x["mixed"]["p99_us"])
        print(f"| c={c} | {a50:.0f} µs | {m50:.0f} µs | {a99:.0f} µs | {m99:.0f} µs | {m99 / a99:.2f}× | "
              f"{m(lambda x: x['stream']['req_per_s']):.0f} |")


if __name__ == "__main__":
    main()
