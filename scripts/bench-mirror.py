#!/usr/bin/env python3
"""Mirrored disks (issue 14, ADR 19): bale on two data directories with `--redundancy none`
against `--redundancy mirror`, side by side in one run, alternating per repeat.

    scripts/bench-mirror.py [--repeats 3] [--count 2000]

Rows: PUT 4 KiB c=16 and 2 MiB c=4 (`bale-bench load`), healthy GET 4 KiB c=1 and c=16 (cache
off: every GET reads the device), then degraded GET 4 KiB c=1/c=16 (the mirror server
restarted with its first directory renamed away) and the rebuild rate (the directory put
back empty: bale rebuilds it at start, `--rebuild-rate-mb 0`; MB/s from its log). Both
servers pinned to --server-cpus (`--cores 1`), the client on --client-cpus. Medians over
repeats. Writes bench/results/mirror-<time>-<commit>/ (table.md, summary.json, commands.txt).
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
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(ROOT, "scripts/bench-peers.py"))
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)


def bench(server, sub, args, client_cpus, commands):
    cmd = [peers.BENCH, sub, *server.client_args("bench"), "--json", *args]
    if client_cpus:
        cmd += ["--pin-cores", client_cpus]
    commands.append(" ".join(cmd).replace(peers.SK, "$SECRET"))
    p = subprocess.run(cmd, capture_output=True, text=True)
    try:
        rep = json.loads(p.stdout)["reports"][0]
    except Exception:
        peers.log(f"{server.name} {sub} {args}: exit {p.returncode}: {p.stderr[-800:]}")
        return None
    peers.log(f"{server.name:7} {sub} {' '.join(args)}: p50={rep['p50_us']:.0f}us p99={rep['p99_us']:.0f}us "
              f"rps={rep['req_per_s']:.0f} errors={rep.get('errors', 0)}")
    return rep


def write_results(out, lines, summary, commands):
    """table.md, summary.json and commands.txt into `out`; the table and the folder printed."""
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out, "commands.txt"), "w") as f:
        f.write("\n".join(commands) + "\n")
    print("\n".join(lines))
    print(out)


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--repeats", type=int, default=3)
    o.add_argument("--count", type=int, default=2000)
    o.add_argument("--get-seconds", default="5s")
    o.add_argument("--server-cpus", default="0")
    o.add_argument("--client-cpus", default="1")
    a = o.parse_args()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=9", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(ROOT, "bench/results", f"mirror-{stamp}-{commit}")
    work = tempfile.mkdtemp(prefix="bale-mirror-bench-")
    servers, commands = [], []
    res = {}
    rows = [("put 4k c=16", "load", "4k", 16, 1.0), ("put 2m c=4", "load", "2m", 4, 0.1)]
    try:
        for mode in ("none", "mirror"):
            w = os.path.join(work, mode)
            os.makedirs(w)
            s = peers.Bale(mode, w, a.server_cpus, 1, 0,
                           ["--data", os.path.join(w, "data2"), "--redundancy", mode, "--metrics-public",
                            "--scrub-interval-s", "0", "--compact-interval-s", "0"])
            s.start()
            commands.append(s.cmdline.replace(peers.SK, "$SECRET"))
            servers.append(s)
            res[mode] = {}
        for s in servers:
            bench(s, "load", ["-n", str(a.count), "--size", "4k", "-c", "16", "--prefix", "g/"],
                  a.client_cpus, commands)
        for r in range(a.repeats):
            order = servers if r % 2 == 0 else servers[::-1]
            for name, sub, size, c, share in rows:
                for s in order:
                    n = max(c * 4, int(a.count * share))
                    rep = bench(s, sub, ["-n", str(n), "--size", size, "-c", str(c), "--prefix", f"r{r}-{size}/"],
                                a.client_cpus, commands)
                    res[s.name].setdefault(name, []).append(rep)
            for c in (1, 16):
                for s in order:
                    rep = bench(s, "get", ["-n", str(a.count), "--size", "4k", "-c", str(c), "--prefix", "g/",
                                           "-d", a.get_seconds], a.client_cpus, commands)
                    res[s.name].setdefault(f"get 4k c={c}", []).append(rep)
        # Degraded GETs: the mirror server without its first directory.
        m = servers[1]
        m.stop()
        d1 = m.data
        os.rename(d1, d1 + ".away")
        m.start()
        for r in range(a.repeats):
            for c in (1, 16):
                rep = bench(m, "get", ["-n", str(a.count), "--size", "4k", "-c", str(c), "--prefix", "g/",
                                       "-d", a.get_seconds], a.client_cpus, commands)
                res["mirror"].setdefault(f"degraded get 4k c={c}", []).append(rep)
        m.stop()
        # Rebuild: an empty directory in its place.
        shutil.rmtree(d1 + ".away")
        os.makedirs(d1)
        m.extra = m.extra + ["--rebuild-rate-mb", "0"]
        m.start()
        log = open(os.path.join(m.work, f"{m.name}.log"), errors="replace").read()
        rb = re.findall(r"rebuild done.*?done_bytes=(\d+).*?mb_per_s=\"?([\d.]+)", log)
        res["rebuild"] = {"done_bytes": int(rb[-1][0]), "mb_per_s": float(rb[-1][1])} if rb else None
        peers.log(f"rebuild: {res['rebuild']}")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    summary = {"commit": commit, "stamp": stamp, "rows": {}, "rebuild": res.get("rebuild")}
    lines = [f"# Mirrored disks: 2 data dirs, --redundancy none vs mirror", "",
             f"Commit {commit}, {stamp}; `scripts/bench-mirror.py --repeats {a.repeats} --count {a.count}`; "
             f"bale `--cores 1 --cache-mb 0` on CPU {a.server_cpus}, client on CPU {a.client_cpus}. "
             f"Medians over {a.repeats} repeats.", "",
             "| row | none p50 / p99 ms | none req/s | mirror p50 / p99 ms | mirror req/s |", "|---|---|---|---|---|"]
    names = [r[0] for r in rows] + ["get 4k c=1", "get 4k c=16", "degraded get 4k c=1", "degraded get 4k c=16"]
    for row in names:
        cells = []
        for mode in ("none", "mirror"):
            runs = [x for x in res.get(mode, {}).get(row, []) if x]
            if not runs:
                cells += ["–", "–"]
                continue
            p50 = statistics.median(x["p50_us"] for x in runs) / 1e3
            p99 = statistics.median(x["p99_us"] for x in runs) / 1e3
            rps = statistics.median(x["req_per_s"] for x in runs)
            cells += [f"{p50:.3f} / {p99:.3f}", f"{rps:,.0f}"]
            summary["rows"].setdefault(row, {})[mode] = {"p50_ms": p50, "p99_ms": p99, "req_per_s": rps}
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    if res.get("rebuild"):
        lines += ["", f"Rebuild of the lost directory at start: {res['rebuild']['done_bytes']} bytes at "
                      f"{res['rebuild']['mb_per_s']} MB/s (unbounded)."]
    write_results(out, lines, summary, commands)


if __name__ == "__main__":
    main()
