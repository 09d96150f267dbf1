#!/usr/bin/env python3
"""What a 1 s Prometheus scrape costs the hot GET path: one bale, warm 4 KiB GETs, measured
with and without a scraper reading GET /metrics every second, interleaved round by round.

    scripts/bench-scrape.py [--bale target/release/bale] [--rounds 6] [--duration 5] [--conc 16]

Starts one server (`--cores 1`, pinned to CPU 0, `--metrics-public`), loads 5,000 x 4 KiB
objects, warms it, then for every round runs `bale-bench get` twice back to back, once with
the scraper running and once without (the order alternates each round). The scraper is a
thread of this script (CPU 1 with the client) that fetches /metrics on the S3 port every
second, so the exposition is rendered on the serving core itself (the costlier place). Prints
the median over rounds of p50, p99 and req/s for each, and with / without; writes
bench/results/metrics-scrape-<time>/RESULTS.md (no raw files). Needs target/release/bale-bench.
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
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target/release/bale-bench")
AK, SK = "benchaccess", "benchsecret-scrape"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench(args):
    cmd = [BENCH, *args, "--access-key", AK, "--secret-key", SK, "--json", "--pin-cores", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["reports"][0], " ".join(cmd).replace(SK, "$SECRET")


class Scraper(threading.Thread):
    def __init__(self, url, every_s=1.0):
        super().__init__(daemon=True)
        self.url, self.every_s = url, every_s
        self.stop = threading.Event()
        self.scrapes, self.bytes, self.ms, self.last = 0, 0, [], ""

    def run(self):
        os.sched_setaffinity(0, {1})
        while not self.stop.is_set():
            t = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=5) as r:
                body = r.read()
                assert r.status == 200 and b"bale_requests_total" in body
            self.ms.append((time.perf_counter() - t) * 1000)
            self.scrapes += 1
            self.bytes = len(body)
            self.last = body.decode()
            self.stop.wait(self.every_s)


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--bale", default=os.path.join(ROOT, "target/release/bale"))
    o.add_argument("--rounds", type=int, default=6)
    o.add_argument("--duration", type=int, default=5)
    o.add_argument("--conc", type=int, default=16)
    a = o.parse_args()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=9", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = tempfile.mkdtemp(prefix="bale-scrape-")
    port = free_port()
    ep = f"http://127.0.0.1:{port}"
    serve = ["taskset", "-c", "0", a.bale, "serve", "--listen", f"127.0.0.1:{port}", "--data",
             os.path.join(work, "d"), "--cores", "1", "--access-key", AK, "--secret-key", SK,
             "--metrics-public"]
    p = subprocess.Popen(serve, stdout=open(os.path.join(work, "log"), "w"), stderr=subprocess.STDOUT,
                         start_new_session=True)
    res = {"off": [], "on": []}
    commands = [" ".join(serve).replace(SK, "$SECRET")]
    scrape_ms, body_bytes, last_body = [], 0, ""
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(ep + "/health", timeout=1)
                break
            except Exception:
                time.sleep(0.05)
        common = ["--endpoint", ep, "--bucket", "scrape", "--prefix", "s4k/", "-n", "5000", "--size", "4k"]
        commands.append(bench(["load", *common, "-c", "8"])[1])
        commands.append(bench(["get", *common, "-c", "16", "--requests", "20000"])[1])
        for r in range(a.rounds):
            order = ("off", "on") if r % 2 == 0 else ("on", "off")
            for mode in order:
                s = None
                if mode == "on":
                    s = Scraper(ep + "/metrics")
                    s.start()
                rep, cmd = bench(["get", *common, "-c", str(a.conc), "-d", f"{a.duration}s", "--seed", str(r + 1)])
                if s:
                    s.stop.set()
                    s.join()
                    scrape_ms += s.ms
                    body_bytes = s.bytes
                    last_body = s.last
                if r == 0:
                    commands.append(cmd)
                res[mode].append({k: rep[k] for k in ("p50_us", "p99_us", "req_per_s")})
                print(f"round {r + 1} scrape {mode}: p50 {rep['p50_us']:.1f} p99 {rep['p99_us']:.1f} "
                      f"{rep['req_per_s']:.0f} req/s", file=sys.stderr)
    finally:
        p.terminate()
        p.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    m = {n: {k: statistics.median(x[k] for x in res[n]) for k in ("p50_us", "p99_us", "req_per_s")}
         for n in ("off", "on")}
    table = [f"| GET 4 KiB c={a.conc} | no scrape | 1 s scrape | with ÷ without |", "|---|---|---|---|"]
    for k, label in (("p50_us", "p50 µs"), ("p99_us", "p99 µs"), ("req_per_s", "req/s")):
        table.append(f"| {label} (median of {a.rounds}) | {m['off'][k]:.1f} | {m['on'][k]:.1f} | "
                     f"{m['on'][k] / m['off'][k]:.3f}× |")
    per_round = ["| round | mode | p50 µs | p99 µs | req/s |", "|---|---|---|---|---|"]
    for r in range(a.rounds):
        for mode in ("off", "on"):
            x = res[mode][r]
            per_round.append(f"| {r + 1} | {mode} | {x['p50_us']:.1f} | {x['p99_us']:.1f} | {x['req_per_s']:.0f} |")
    # The server's own account of the scrapes (op="Metrics"): time on the serving core per scrape
    # (the render runs there without yielding: its shard is local), so the share of that core
    # a 1 s scrape takes is this mean over 1 s.
    def metric(name):
        for line in last_body.splitlines():
            if line.startswith(name + '{op="Metrics"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0
    n_srv = metric("bale_request_duration_seconds_count")
    srv_ms = metric("bale_request_duration_seconds_sum") / n_srv * 1000 if n_srv else 0.0
    out = os.path.join(ROOT, "bench/results", f"metrics-scrape-{stamp}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write(f"# Cost of a 1 s /metrics scrape on warm 4 KiB GETs\n\n"
                f"Commit {commit}, {stamp}, `scripts/bench-scrape.py --rounds {a.rounds} --duration {a.duration} "
                f"--conc {a.conc}`. Server `--cores 1` on CPU 0, client and scraper on CPU 1; the two modes "
                f"alternate round by round. Load average at the end: {open('/proc/loadavg').read().strip()} "
                f"(the 2-core machine was shared with other engineers' builds).\n\n"
                + "\n".join(table) + "\n\n"
                f"Scrapes: {len(scrape_ms)}, body {body_bytes} bytes, median scrape time "
                f"{statistics.median(scrape_ms) if scrape_ms else 0:.2f} ms (client-side: includes waiting behind "
                f"the GETs queued on the one busy core). Server side (its own `bale_request_duration_seconds"
                f"{{op=\"Metrics\"}}`): {int(n_srv)} scrapes, mean {srv_ms:.3f} ms each, i.e. "
                f"{srv_ms / 10:.3f}% of one core at one scrape per second.\n\n"
                + "\n".join(per_round) + "\n\nCommands:\n\n```\n" + "\n".join(commands) + "\n```\n")
    print("\n".join(table))
    print(f"server-side scrape: {srv_ms:.3f} ms mean over {int(n_srv)}")
    print(os.path.relpath(out, ROOT))


if __name__ == "__main__":
    main()
