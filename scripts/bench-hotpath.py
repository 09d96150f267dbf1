#!/usr/bin/env python3
"""Issue 18's targets table in one command: bale and its peers side by side, interleaved.

Called by scripts/bench-hotpath.sh (which builds and installs everything first). One server core
(CPU 0, `--cores 1` / one nginx worker), the client on the other (CPU 1); every server is
started at once and the repeats are interleaved (server after server inside each repeat), so
a noisy neighbour hits all of them alike. Medians over the repeats.

Rows (the issue's table):
  warm GET 4 KiB c=1 p50       bale (default flags) ≤ 1.1× nginx; idle CPU of an idle bale < 1 %
                               of a core (/proc/PID/stat utime+stime over --idle-s seconds)
  warm GET 4 KiB c=16, c=64    bale ≥ 1.0× nginx req/s
  warm GET 4 KiB c=64          bale ≥ 15× SeaweedFS req/s
  cold GET 4 KiB c=32          bale with --cache-mb 0 ≥ 0.9 × 1/(1/warm c=32 + 1/fio QD32 IOPS)
  cold GET 4 KiB c=1 p50       bale right after a restart ≤ nginx warm p50 + fio QD1 p50
  GET p99 under a PUT stream   scripts/bench-mixed.py (30 % of PUT capacity, compaction every
                               second): p99 with ÷ alone ≤ 1.5 at c=1 and c=16
  allocations per warm hit     scripts/allocs-per-get.sh --counter (count-allocs build): 0
Also: bale --poll-us 0 (polling off, the old default), --poll-us 200 and --spin-us 50 (fixed spin) at c=1/16/64
with their idle CPU, and bale with 1 and 2 cores against nginx with 1 and 2 workers (c=64; the
client then shares the server's CPUs on a 2-CPU machine).

Writes bench/results/hotpath-<time>-<commit>/ (summary.json, table.md, raw JSON) and prints the
table (markdown) on stdout.
"""

import argparse
import datetime
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(ROOT, "scripts/bench-peers.py"))
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)
log = bp.log


def cpu_ticks(pid):
    """utime + stime of a process and all its threads, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def idle_cpu(s, secs):
    """Share of one core the server process used while nobody sent it anything."""
    pid = s.proc.pid
    time.sleep(1.0)
    t0, c0 = time.time(), cpu_ticks(pid)
    time.sleep(secs)
    t1, c1 = time.time(), cpu_ticks(pid)
    hz = os.sysconf("SC_CLK_TCK")
    return (c1 - c0) / hz / (t1 - t0)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rep_of(doc):
    if not doc or not doc.get("reports") or doc.get("failed"):
        return None
    return doc["reports"][0]


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--quick", action="store_true", help="small data, 2 s runs, 1 repeat")
    o.add_argument("--repeats", type=int, default=None, help="runs per scenario (default 3)")
    o.add_argument("--duration", type=int, default=None, help="seconds per timed run (default 5)")
    o.add_argument("--idle-s", type=int, default=10, help="seconds of idle CPU measurement")
    o.add_argument("--server-cpus", default="0")
    o.add_argument("--client-cpus", default="1")
    o.add_argument("--rt", action="store_true", help="(set by bench-hotpath.sh --rt: everything runs under "
                   "SCHED_FIFO; only recorded here)")
    o.add_argument("--no-mixed", action="store_true")
    o.add_argument("--no-scaling", action="store_true")
    o.add_argument("--no-seaweedfs", action="store_true")
    o.add_argument("--work", default=os.path.join(ROOT, "bench/out/hotpath"))
    a = o.parse_args()
    a.repeats = a.repeats or (1 if a.quick else 3)
    a.duration = a.duration or (2 if a.quick else 5)
    if a.quick:
        a.idle_s = min(a.idle_s, 3)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(ROOT, "bench/out/results" if a.quick else "bench/results",
                       f"hotpath-{'quick-' if a.quick else ''}{stamp}-{commit[:9]}")
    os.makedirs(out, exist_ok=True)
    run = bp.Runner(a, out)
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    meta = {"commit": commit, "started": stamp, "repeats": a.repeats, "duration_s": a.duration,
            "server_cpus": a.server_cpus, "client_cpus": a.client_cpus, "machine": bp.machine(),
            "argv": sys.argv[1:]}
    n4k = 500 if a.quick else 5000
    ds4k = ["--prefix", "s4k/", "-n", str(n4k), "--size", "4k"]
    dur = f"{a.duration}s"
    res = {"idle_cpu": {}, "warm": {}, "cold": {}, "scaling": {}}
    servers = []
    try:
        meta["fio"] = bp.fio(run, a, a.work)
        extra = ["--compact-interval-s", "1", "--compact-ratio", "0.05"]

        def mk(name, flags):
            w = os.path.join(a.work, name)
            os.makedirs(w, exist_ok=True)
            return bp.Bale(name, w, a.server_cpus, 1, 2048, extra + flags)

        servers = [mk("bale", []), mk("bale-nopoll", ["--poll-us", "0"]), mk("bale-poll200", ["--poll-us", "200"]),
                   mk("bale-spin50", ["--spin-us", "50"])]
        w = os.path.join(a.work, "nginx")
        os.makedirs(w)
        servers.append(bp.Nginx("nginx", w, a.server_cpus, 1))
        if not a.no_seaweedfs and os.path.exists(bp.WEED):
            w = os.path.join(a.work, "seaweedfs")
            os.makedirs(w)
            servers.append(bp.Weed("seaweedfs", w, a.server_cpus))
        for s in servers:
            s.start()
            log(f"{s.name} up: {s.cmdline}")
            files = ["--files-dir", s.data] if isinstance(s, bp.Nginx) else []
            run.bench(s, "load", [*ds4k, "-c", "8", *files], "put-4k")
            s.probe_prefix = "s4k/"
            run.bench(s, "get", [*ds4k, "-c", "16", "--requests", str(n4k * 2)], "warmup-4k")
        # idle CPU: every server is idle while each is measured in turn
        for s in servers:
            if isinstance(s, bp.Bale):
                res["idle_cpu"][s.name] = idle_cpu(s, a.idle_s)
                log(f"{s.name} idle CPU {100 * res['idle_cpu'][s.name]:.2f} % of a core")
        scen = [(f"get-4k-c{c}", c) for c in (1, 16, 32, 64)]
        for r in range(a.repeats):
            for tag, c in scen:
                for s in servers:
                    if c == 32 and not isinstance(s, bp.Bale):
                        continue
                    doc = run.bench(s, "get", [*ds4k, "-c", str(c), "-d", dur, "--seed", str(r + 1)], f"{tag}-r{r + 1}")
                    res["warm"].setdefault(s.name, {}).setdefault(tag, []).append(rep_of(doc))
        # cold: bale alone (the others idle)
        b = servers[0]
        for other in servers[1:]:
            other.stop()
        for r in range(a.repeats):
            b.restart_cold(cache_off=True)
            doc = run.bench(b, "get", [*ds4k, "-c", "32", "--requests", str(n4k * 4 // 5 if a.quick else 4000),
                                       "--seed", str(200 + r)], f"cold-get-4k-c32-r{r + 1}")
            res["cold"].setdefault("c32", []).append(rep_of(doc))
            b.restart_cold()
            doc = run.bench(b, "get", [*ds4k, "-c", "1", "--requests", str(min(n4k, 500)), "--seed", str(100 + r)],
                            f"cold-get-4k-c1-r{r + 1}")
            res["cold"].setdefault("c1", []).append(rep_of(doc))
        b.stop()
        # scaling: 1 and 2 server cores (all CPUs; the client is not pinned)
        if not a.no_scaling:
            ncpu = os.cpu_count() or 2
            allc = f"0-{ncpu - 1}"
            sc = []
            for n in (1, 2):
                w = os.path.join(a.work, f"bale-{n}c")
                os.makedirs(w)
                sc.append(bp.Bale(f"bale-{n}c", w, allc, n, 2048, extra))
                w = os.path.join(a.work, f"nginx-{n}w")
                os.makedirs(w)
                sc.append(bp.Nginx(f"nginx-{n}w", w, allc, n))
            saved = a.client_cpus
            a.client_cpus = ""
            try:
                for s in sc:
                    s.start()
                    files = ["--files-dir", s.data] if isinstance(s, bp.Nginx) else []
                    run.bench(s, "load", [*ds4k, "-c", "8", *files], "put-4k")
                    run.bench(s, "get", [*ds4k, "-c", "16", "--requests", str(n4k * 2)], "warmup-4k")
                for r in range(a.repeats):
                    for s in sc:
                        doc = run.bench(s, "get", [*ds4k, "-c", "64", "-d", dur, "--seed", str(r + 1)],
                                        f"get-4k-c64-r{r + 1}")
                        res["scaling"].setdefault(s.name, []).append(rep_of(doc))
            finally:
                a.client_cpus = saved
                for s in sc:
                    s.stop()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(a.work, ignore_errors=True)
    # mixed: its own bale, own script
    mixed = None
    if not a.no_mixed:
        before = set(os.listdir(os.path.join(ROOT, "bench/results")))
        cmd = [sys.executable, os.path.join(ROOT, "scripts/bench-mixed.py"), "--repeats", str(a.repeats),
               "--duration", str(a.duration), "--conc", "1,16"]
        run.commands.write(f"# mixed\n{' '.join(cmd)}\n")
        r = subprocess.run(cmd, capture_output=True, text=True)
        sys.stderr.write(r.stderr[-2000:])
        new = sorted(set(os.listdir(os.path.join(ROOT, "bench/results"))) - before)
        new = [d for d in new if d.startswith("mixed-")]
        if new:
            d = os.path.join(ROOT, "bench/results", new[-1])
            # keep it with this run
            dest = os.path.join(out, "mixed")
            shutil.move(d, dest)
            mixed = json.load(open(os.path.join(dest, "summary.json")))
    # allocations per warm hit
    allocs = {}
    for mode, args in (("counter", ["--counter"]), ("perf", [])):
        cmd = [os.path.join(ROOT, "scripts/allocs-per-get.sh"), *args, "2000" if a.quick else "5000"]
        run.commands.write(f"# allocs ({mode})\n{' '.join(cmd)}\n")
        r = subprocess.run(cmd, capture_output=True, text=True)
        allocs[mode] = (r.stdout.strip() or r.stderr.strip()[-300:])
        log(f"allocs ({mode}): {allocs[mode]}")
    meta["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    meta["machine"]["loadavg_end"] = open("/proc/loadavg").read().strip()
    summary = {"meta": meta, "results": res, "mixed": mixed, "allocs": allocs}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    table = report(summary, os.path.relpath(out, ROOT))
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    print(table)


def report(S, outrel):
    m, res = S["meta"], S["results"]
    W = res["warm"]

    def wv(server, tag, field):
        return med([x[field] for x in W.get(server, {}).get(tag, []) if x])

    def fio(qd, field):
        reps = (m.get("fio") or {}).get(f"qd{qd}") or []
        return med([x[field] for x in reps])

    def ok(v):
        return "**met**" if v else "**not met**"

    L = [f"Run `{outrel}` at commit `{m['commit'][:9]}` ({m['started']}): `scripts/bench-hotpath.sh "
         f"{' '.join(m['argv'])}`{' (everything under SCHED_FIFO, chrt -f 10)' if '--rt' in m['argv'] else ''}; server on CPU {m['server_cpus']} (`--cores 1`, nginx 1 worker), client on "
         f"CPU {m['client_cpus']}, {m['repeats']} interleaved repeats of {m['duration_s']} s, medians; "
         f"load average {m['machine'].get('loadavg_start', '?')} at start, {m['machine'].get('loadavg_end', '?')} "
         f"at the end.\n",
         "| scenario | target | limit | bale | verdict |", "|---|---|---|---|---|"]
    b1, n1 = wv("bale", "get-4k-c1", "p50_us"), wv("nginx", "get-4k-c1", "p50_us")
    idle = res["idle_cpu"].get("bale")
    if b1 and n1:
        L.append(f"| warm GET 4 KiB c=1 p50 | ≤ 1.1× nginx | {1.1 * n1:.1f} µs (nginx {n1:.1f} µs) | {b1:.1f} µs "
                 f"({b1 / n1:.2f}×) | {ok(b1 <= 1.1 * n1)} |")
    if idle is not None:
        L.append(f"| idle CPU of an idle bale | < 1 % of a core | 1 % | {100 * idle:.2f} % | {ok(idle < 0.01)} |")
    for c in (16, 64):
        bq, nq = wv("bale", f"get-4k-c{c}", "req_per_s"), wv("nginx", f"get-4k-c{c}", "req_per_s")
        if bq and nq:
            L.append(f"| warm GET 4 KiB c={c} req/s | ≥ 1.0× nginx | {nq:,.0f} | {bq:,.0f} ({bq / nq:.2f}×) | "
                     f"{ok(bq >= nq)} |")
    bq, sq = wv("bale", "get-4k-c64", "req_per_s"), wv("seaweedfs", "get-4k-c64", "req_per_s")
    if bq and sq:
        L.append(f"| warm GET 4 KiB c=64 req/s | ≥ 15× SeaweedFS | {15 * sq:,.0f} (SeaweedFS {sq:,.0f}) | "
                 f"{bq:,.0f} ({bq / sq:.1f}×) | {ok(bq >= 15 * sq)} |")
    w32, f32 = wv("bale", "get-4k-c32", "req_per_s"), fio(32, "iops")
    c32 = med([x["req_per_s"] for x in res["cold"].get("c32", []) if x])
    if w32 and f32 and c32:
        lim = 1 / (1 / w32 + 1 / f32)
        L.append(f"| cold GET 4 KiB c=32, cache off, req/s | ≥ 0.9× one-core limit | {lim:,.0f} (warm c=32 "
                 f"{w32:,.0f}, fio QD32 {f32:,.0f} IOPS) | {c32:,.0f} ({c32 / lim:.2f}×) | {ok(c32 >= 0.9 * lim)} |")
    c1, f1 = med([x["p50_us"] for x in res["cold"].get("c1", []) if x]), fio(1, "p50_us")
    if c1 and f1 and n1:
        L.append(f"| cold GET 4 KiB c=1 p50 | ≤ nginx warm p50 + fio QD1 p50 | {n1 + f1:.1f} µs ({n1:.1f} + "
                 f"{f1:.1f}) | {c1:.1f} µs | {ok(c1 <= n1 + f1)} |")
    mx = S.get("mixed")
    if mx:
        for c in (1, 16):
            rs = [x for x in mx["runs"] if x["c"] == c]
            if rs:
                a99 = med([x["alone"]["p99_us"] for x in rs])
                m99 = med([x["mixed"]["p99_us"] for x in rs])
                L.append(f"| GET p99 c={c} under a 30 % PUT stream + compaction | ≤ 1.5× idle | {1.5 * a99:.0f} µs "
                         f"(alone {a99:.0f} µs) | {m99:.0f} µs ({m99 / a99:.2f}×) | {ok(m99 <= 1.5 * a99)} |")
    al = S.get("allocs", {})
    if al.get("counter"):
        # The count covers the whole run on one connection (its setup, the counter's own
        # requests): below 0.05 per GET nothing is allocated per request.
        m = re.search(r"allocations per GET ([0-9.]+)", al["counter"])
        per_get = float(m.group(1)) if m else float("inf")
        L.append(f"| allocations per warm fast-path hit | 0 | < 0.05 per GET over the run (none "
                 f"per request; the rest is the connection's setup) | {al['counter']} | "
                 f"{ok(per_get < 0.05)} |")
    if al.get("perf"):
        L.append(f"| (the same, glibc malloc uprobes on the release binary) | | | {al['perf']} | |")
    L.append("\nPolling modes (bale = default flags, adaptive `--poll-us 50`; bale-nopoll = `--poll-us 0`, the "
             "old default; bale-poll200 = `--poll-us 200`; bale-spin50 = `--spin-us 50`), medians:\n")
    L.append("| server | c=1 p50 µs | c=1 p99 µs | c=16 req/s | c=64 req/s | idle CPU (% of a core) |")
    L.append("|---|---|---|---|---|---|")
    for s in ("bale", "bale-nopoll", "bale-poll200", "bale-spin50", "nginx", "seaweedfs"):
        if s not in W:
            continue
        ic = res["idle_cpu"].get(s)
        L.append(f"| {s} | {wv(s, 'get-4k-c1', 'p50_us') or 0:.1f} | {wv(s, 'get-4k-c1', 'p99_us') or 0:.1f} | "
                 f"{wv(s, 'get-4k-c16', 'req_per_s') or 0:,.0f} | {wv(s, 'get-4k-c64', 'req_per_s') or 0:,.0f} | "
                 f"{'' if ic is None else f'{100 * ic:.2f}'} |")
    if res.get("scaling"):
        L.append("\nCores (c=64 warm 4 KiB req/s, server on both CPUs, client not pinned, so it shares them):\n")
        L.append("| | 1 | 2 |")
        L.append("|---|---|---|")
        sc = res["scaling"]
        for pre, lab in (("bale-", "bale, cores"), ("nginx-", "nginx, workers")):
            v = [med([x["req_per_s"] for x in sc.get(f"{pre}{n}{'c' if pre == 'bale-' else 'w'}", []) if x])
                 for n in (1, 2)]
            L.append(f"| {lab} | {v[0] or 0:,.0f} | {v[1] or 0:,.0f} |")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
