#!/usr/bin/env python3
"""A/B of two bale binaries on issue 18's warm and cold rows, alternated in one run.

    scripts/bench-hotpath-ab.py BEFORE_BIN AFTER_BIN [--repeats 3] [--duration 5] [--rt]

Both servers run `--cores 1` on CPU 0 (only one is driven at a time), the client on CPU 1;
each repeat runs every scenario on BEFORE then AFTER (warm 4 KiB GET c=1, c=16, c=64; then
cold: each restarted with `--cache-mb 0`, 4 KiB GET c=32 for 4,000 requests). Prints medians
and ratios (after ÷ before) as markdown; raw JSON goes to bench/results/ab-<time>-<commit>/.
--rt: re-executes itself under SCHED_FIFO (chrt -f 10), as bench-hotpath.sh --rt does, so
builds sharing the machine do not decide the numbers.

--scenarios picks rows (default warm1,warm16,warm64,cold32): warmN = warm 4 KiB GET at c=N for
--duration s; coldN = restarted with `--cache-mb 0`, 4 KiB GET at c=N for --cold-requests × N / 32
requests (at least 2,000);
mixed16 = warm 4 KiB GET c=16 while a paced stream of 64 KiB PUTs (4 connections) overwrites a
64 KiB set at --mixed-put-share of the PUT rate the before server reached loading that set
(compaction runs every second at a 5 % garbage ratio); its p99 is compared with warm16's.
--before-env / --after-env K=V (repeatable) set environment variables of one side only, so one
binary can be A/B'd against itself with a runtime switch (e.g. BALE_RING_COOP_TASKRUN=0)."""

import argparse
import datetime
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(ROOT, "scripts/bench-peers.py"))
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)


def cpu_ns(server):
    """CPU time (ns) the server's threads have used so far (/proc/PID/task/*/schedstat)."""
    total = 0
    base = f"/proc/{server.proc.pid}/task"
    for t in os.listdir(base):
        try:
            with open(f"{base}/{t}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except OSError:
            pass
    return total


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("before")
    o.add_argument("after")
    o.add_argument("--repeats", type=int, default=3)
    o.add_argument("--duration", type=int, default=5)
    o.add_argument("--rt", action="store_true")
    o.add_argument("--no-cold", action="store_true")
    o.add_argument("--server-cpus", default="0")
    o.add_argument("--client-cpus", default="1")
    o.add_argument("--scenarios", default="warm1,warm16,warm64,cold32")
    o.add_argument("--cold-requests", type=int, default=4000)
    o.add_argument("--mixed-put-share", type=float, default=0.3)
    o.add_argument("--before-env", action="append", default=[])
    o.add_argument("--after-env", action="append", default=[])
    a = o.parse_args()
    if a.no_cold:
        a.scenarios = ",".join(x for x in a.scenarios.split(",") if not x.startswith("cold"))
    scen = [x.strip() for x in a.scenarios.split(",") if x.strip()]
    for x in scen:
        if not (x.startswith(("warm", "cold")) and x[4:].isdigit()) and x != "mixed16":
            o.error(f"unknown scenario {x!r} (warmN, coldN, mixed16)")
    if a.rt and os.environ.get("AB_RT_ON") != "1":
        os.environ["AB_RT_ON"] = "1"
        os.execvp("chrt", ["chrt", "-f", "10", sys.executable, *sys.argv])
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(ROOT, "bench/results", f"ab-{stamp}-{commit[:9]}")
    os.makedirs(out)
    run = bp.Runner(a, out)
    work = os.path.join(ROOT, "bench/out/ab")
    shutil.rmtree(work, ignore_errors=True)
    extra = ["--compact-interval-s", "1", "--compact-ratio", "0.05"]
    ds = ["--prefix", "s4k/", "-n", "5000", "--size", "4k"]
    ds64 = ["--prefix", "s64k/", "-n", "500", "--size", "64k"]
    servers = []
    for name, binary, envs in (("before", a.before, a.before_env), ("after", a.after, a.after_env)):
        w = os.path.join(work, name)
        os.makedirs(w)
        binary = os.path.abspath(binary)
        if envs:
            # a wrapper that sets this side's environment and execs the binary (same pid)
            wrap = os.path.join(w, "bale-env.sh")
            with open(wrap, "w") as fh:
                fh.write("#!/bin/sh\nexec env " + " ".join(shlex.quote(e) for e in envs) + " "
                         + shlex.quote(binary) + ' "$@"\n')
            os.chmod(wrap, 0o755)
            binary = wrap
        servers.append(bp.Bale(name, w, a.server_cpus, 1, 2048, extra, binary=binary))
    res = {}
    put_rate = None
    try:
        for s in servers:
            s.start()
            run.bench(s, "load", [*ds, "-c", "8"], "put-4k")
            if "mixed16" in scen:
                doc = run.bench(s, "load", [*ds64, "-c", "4"], "put-64k")
                if put_rate is None and doc and doc.get("reports"):
                    put_rate = a.mixed_put_share * doc["reports"][0]["req_per_s"]
            s.probe_prefix = "s4k/"
            run.bench(s, "get", [*ds, "-c", "16", "--requests", "10000"], "warmup-4k")

        def keep(name, s, doc, cpu0=None):
            if doc and doc.get("reports") and not doc.get("failed"):
                rep = doc["reports"][0]
                if cpu0 is not None and rep.get("count"):
                    # the server's CPU time (all its threads, user + kernel, as the scheduler
                    # counts it) per request answered
                    rep["cpu_us_per_req"] = (cpu_ns(s) - cpu0) / 1e3 / rep["count"]
                res.setdefault(name, {}).setdefault(s.name, []).append(rep)

        for r in range(a.repeats):
            for x in scen:
                if x.startswith("warm"):
                    c = int(x[4:])
                    for s in servers:
                        cpu0 = cpu_ns(s)
                        doc = run.bench(s, "get", [*ds, "-c", str(c), "-d", f"{a.duration}s", "--seed", str(r + 1)],
                                        f"get-4k-c{c}-r{r + 1}")
                        keep(f"warm c={c}", s, doc, cpu0)
                elif x.startswith("cold"):
                    c = int(x[4:])
                    for s in servers:
                        s.restart_cold(cache_off=True)
                        cpu0 = cpu_ns(s)
                        n = max(2000, a.cold_requests * c // 32)
                        doc = run.bench(s, "get", [*ds, "-c", str(c), "--requests", str(n),
                                                   "--seed", str(200 + r)], f"cold-get-4k-c{c}-r{r + 1}")
                        keep(f"cold c={c}", s, doc, cpu0)
                        s.restart_cold(cache_off=False)
                        run.bench(s, "get", [*ds, "-c", "16", "--requests", "10000"], f"rewarm-r{r + 1}")
                elif x == "mixed16" and put_rate:
                    for s in servers:
                        cmd = [bp.BENCH, "load", *s.client_args(bp.BUCKET), "--json", *ds64, "-c", "4",
                               "--rate", f"{put_rate:.1f}", "-d", f"{a.duration + 2}s", "--pin-cores", a.client_cpus]
                        bg = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                        time.sleep(1)
                        doc = run.bench(s, "get", [*ds, "-c", "16", "-d", f"{a.duration}s", "--seed", str(300 + r)],
                                        f"mixed-get-4k-c16-r{r + 1}")
                        out_put, _ = bg.communicate()
                        keep("mixed c=16", s, doc)
                        try:
                            rep = json.loads(out_put)["reports"][0]
                            res.setdefault("mixed PUTs", {}).setdefault(s.name, []).append(rep)
                        except (ValueError, KeyError, IndexError):
                            bp.log(f"{s.name} mixed-put-r{r + 1}: no report (exit {bg.returncode})")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    lines = [f"A/B at commit `{commit[:9]}` ({stamp}): `scripts/bench-hotpath-ab.py {' '.join(sys.argv[1:])}`, "
             f"{a.repeats} alternated repeats of {a.duration} s, medians; load average "
             f"{open('/proc/loadavg').read().split()[0]} at the end.\n",
             "| scenario | before req/s | after req/s | ratio | before p50 µs | after p50 µs | before p99 µs | after p99 µs "
             "| before CPU µs/req | after CPU µs/req |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    def cpu(xs):
        v = [x["cpu_us_per_req"] for x in xs if "cpu_us_per_req" in x]
        return f"{med(v):.1f}" if v else "–"

    for scen, by in res.items():
        b, f = by.get("before", []), by.get("after", [])
        if not b or not f:
            continue
        q = lambda xs, k: med([x[k] for x in xs])  # noqa: E731
        lines.append(f"| {scen} | {q(b, 'req_per_s'):,.0f} | {q(f, 'req_per_s'):,.0f} | "
                     f"{q(f, 'req_per_s') / q(b, 'req_per_s'):.2f}× | {q(b, 'p50_us'):.0f} | {q(f, 'p50_us'):.0f} | "
                     f"{q(b, 'p99_us'):.0f} | {q(f, 'p99_us'):.0f} | {cpu(b)} | {cpu(f)} |")
    if "mixed c=16" in res and "warm c=16" in res:
        lines.append("")
        lines.append(f"mixed c=16: PUT stream target {put_rate:.0f}/s of 64 KiB; GET p99 under it ÷ idle warm c=16 p99:")
        for side in ("before", "after"):
            mx, idle = res["mixed c=16"].get(side, []), res["warm c=16"].get(side, [])
            puts = res.get("mixed PUTs", {}).get(side, [])
            if mx and idle:
                pr = f", PUTs done {med([p['req_per_s'] for p in puts]):.0f}/s" if puts else ""
                lines.append(f"- {side}: {med([x['p99_us'] for x in mx]):.0f} ÷ {med([x['p99_us'] for x in idle]):.0f} µs = "
                             f"{med([x['p99_us'] for x in mx]) / med([x['p99_us'] for x in idle]):.2f}×{pr}")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(table)
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    print(table)


if __name__ == "__main__":
    main()
