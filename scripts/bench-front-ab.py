#!/usr/bin/env python3
"""A/B of the HTTP/1.1 front (issue 18, docs/adr/0020-http-front.md): two bale binaries and nginx
side by side, interleaved, warm 4 KiB GETs at c=1 (p50), c=16 and c=64 (req/s).

  scripts/bench-front-ab.py BEFORE_BIN AFTER_BIN [--repeats 3] [--duration 3] [--rt]

Server on CPU 0 (`--cores 1`, nginx 1 worker), client on CPU 1 (scripts/bench-peers.py's
servers and runner). Writes bench/results/front-ab-<time>-<commit>/ and prints a markdown table
of medians and ratios to nginx.
"""

import argparse
import datetime
import importlib.util
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
    o.add_argument("--duration", type=int, default=3)
    o.add_argument("--server-cpus", default="0")
    o.add_argument("--client-cpus", default="1")
    o.add_argument("--rt", action="store_true", help="recorded only: run the script under chrt -f 10")
    o.add_argument("--work", default=os.path.join(ROOT, "bench/out/front-ab"))
    a = o.parse_args()
    a.before, a.after = os.path.abspath(a.before), os.path.abspath(a.after)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(ROOT, "bench/results", f"front-ab-{stamp}-{commit[:9]}")
    os.makedirs(out, exist_ok=True)
    run = bp.Runner(a, out)
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    ds = ["--prefix", "s4k/", "-n", "2000", "--size", "4k"]
    servers = []
    res = {}
    try:
        for name, binary in (("before", a.before), ("after", a.after)):
            w = os.path.join(a.work, name)
            os.makedirs(w)
            servers.append(bp.Bale(name, w, a.server_cpus, 1, 2048, [], binary=binary))
        w = os.path.join(a.work, "nginx")
        os.makedirs(w)
        servers.append(bp.Nginx("nginx", w, a.server_cpus, 1))
        for s in servers:
            s.start()
            files = ["--files-dir", s.data] if isinstance(s, bp.Nginx) else []
            run.bench(s, "load", [*ds, "-c", "8", *files], "put-4k")
            s.probe_prefix = "s4k/"
            run.bench(s, "get", [*ds, "-c", "16", "--requests", "4000"], "warmup-4k")
        for r in range(a.repeats):
            for c in (1, 16, 64):
                for s in servers:
                    doc = run.bench(s, "get", [*ds, "-c", str(c), "-d", f"{a.duration}s", "--seed", str(r + 1)],
                                    f"get-4k-c{c}-r{r + 1}")
                    rep = doc["reports"][0] if doc.get("reports") and not doc.get("failed") else None
                    res.setdefault((s.name, c), []).append(rep)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(a.work, ignore_errors=True)

    def med(name, c, field):
        xs = [r[field] for r in res.get((name, c), []) if r]
        return statistics.median(xs) if xs else None

    lines = [f"Run `{os.path.relpath(out, ROOT)}` at `{commit[:9]}`: before `{a.before}`, after `{a.after}`; "
             f"{a.repeats} interleaved repeats of {a.duration} s, medians{' (SCHED_FIFO)' if a.rt else ''}; "
             f"load average {open('/proc/loadavg').read().strip()} at the end.", "",
             "| server | c=1 p50 µs | c=1 ÷ nginx | c=16 req/s | c=16 ÷ nginx | c=64 req/s | c=64 ÷ nginx |",
             "|---|---|---|---|---|---|---|"]
    n1, n16, n64 = med("nginx", 1, "p50_us"), med("nginx", 16, "req_per_s"), med("nginx", 64, "req_per_s")
    for s in ("before", "after", "nginx"):
        p1, r16, r64 = med(s, 1, "p50_us"), med(s, 16, "req_per_s"), med(s, 64, "req_per_s")
        f = lambda x, fmt: fmt.format(x) if x is not None else "–"  # noqa: E731
        ratio = lambda x, y: f"{x / y:.2f}×" if x and y else "–"  # noqa: E731
        lines.append(f"| {s} | {f(p1, '{:.1f}')} | {ratio(p1, n1)} | {f(r16, '{:,.0f}')} | {ratio(r16, n16)} | "
                     f"{f(r64, '{:,.0f}')} | {ratio(r64, n64)} |")
    table = "\n".join(lines)
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(table + "\n")
    print(table)
    if run.failures:
        print("failures:", *run.failures, sep="\n", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
