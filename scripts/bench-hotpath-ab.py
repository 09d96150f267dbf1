#!/usr/bin/env python3
"""A/B of two bale binaries on issue 18's warm and cold rows, alternated in one run.

    scripts/bench-hotpath-ab.py BEFORE_BIN AFTER_BIN [--repeats 3] [--duration 5] [--rt]

Both servers run `--cores 1` on CPU 0 (only one is driven at a time), the client on CPU 1;
each repeat runs every scenario on BEFORE then AFTER (warm 4 KiB GET c=1, c=16, c=64; then
cold: each restarted with `--cache-mb 0`, 4 KiB GET c=32 for 4,000 requests). Prints medians
and ratios (after ÷ before) as markdown; raw JSON goes to bench/results/ab-<time>-<commit>/.
--rt: re-executes itself under SCHED_FIFO (chrt -f 10), as bench-hotpath.sh --rt does, so
builds sharing the machine do not decide the numbers."""

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(ROOT, "scripts/bench-peers.py"))
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)


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
    a = o.parse_args()
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
    servers = []
    for name, binary in (("before", a.before), ("after", a.after)):
        w = os.path.join(work, name)
        os.makedirs(w)
        servers.append(bp.Bale(name, w, a.server_cpus, 1, 2048, extra, binary=os.path.abspath(binary)))
    res = {}
    try:
        for s in servers:
            s.start()
            run.bench(s, "load", [*ds, "-c", "8"], "put-4k")
            s.probe_prefix = "s4k/"
            run.bench(s, "get", [*ds, "-c", "16", "--requests", "10000"], "warmup-4k")
        for r in range(a.repeats):
            for c in (1, 16, 64):
                for s in servers:
                    doc = run.bench(s, "get", [*ds, "-c", str(c), "-d", f"{a.duration}s", "--seed", str(r + 1)],
                                    f"get-4k-c{c}-r{r + 1}")
                    if doc and doc.get("reports") and not doc.get("failed"):
                        res.setdefault(f"warm c={c}", {}).setdefault(s.name, []).append(doc["reports"][0])
            if not a.no_cold:
                for s in servers:
                    s.restart_cold(cache_off=True)
                    doc = run.bench(s, "get", [*ds, "-c", "32", "--requests", "4000", "--seed", str(200 + r)],
                                    f"cold-get-4k-c32-r{r + 1}")
                    if doc and doc.get("reports") and not doc.get("failed"):
                        res.setdefault("cold c=32", {}).setdefault(s.name, []).append(doc["reports"][0])
                    s.restart_cold(cache_off=False)
                    run.bench(s, "get", [*ds, "-c", "16", "--requests", "10000"], f"rewarm-r{r + 1}")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    lines = [f"A/B at commit `{commit[:9]}` ({stamp}): `scripts/bench-hotpath-ab.py {' '.join(sys.argv[1:])}`, "
             f"{a.repeats} alternated repeats of {a.duration} s, medians; load average "
             f"{open('/proc/loadavg').read().split()[0]} at the end.\n",
             "| scenario | before req/s | after req/s | ratio | before p50 µs | after p50 µs | before p99 µs | after p99 µs |",
             "|---|---|---|---|---|---|---|---|"]
    for scen, by in res.items():
        b, f = by.get("before", []), by.get("after", [])
        if not b or not f:
            continue
        q = lambda xs, k: med([x[k] for x in xs])  # noqa: E731
        lines.append(f"| {scen} | {q(b, 'req_per_s'):,.0f} | {q(f, 'req_per_s'):,.0f} | "
                     f"{q(f, 'req_per_s') / q(b, 'req_per_s'):.2f}× | {q(b, 'p50_us'):.0f} | {q(f, 'p50_us'):.0f} | "
                     f"{q(b, 'p99_us'):.0f} | {q(f, 'p99_us'):.0f} |")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(table)
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    print(table)


if __name__ == "__main__":
    main()
