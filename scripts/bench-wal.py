#!/usr/bin/env python3
"""Milvus 2.6 WAL (Woodpecker) shaped writes, bale and SeaweedFS side by side in one run.

    scripts/bench-wal.sh [--repeats 3] [--duration 20] [--servers "bale seaweedfs"]

(bench-wal.sh installs SeaweedFS into bench/out/venv and builds bale, then runs this file.)

Starts every server at once on its own data directory (servers pinned to --server-cpus, the
client to --client-cpus), then for each repeat runs `bale-bench wal` against each server in
turn (the order alternates per repeat) in two shapes:
  paced      4 writers x 1 MiB/s each, flush every 200 ms or 2 MiB (Woodpecker's defaults):
             append latency is the flush interval plus the PUT; the PUT and the reader lag show
             the store.
  capacity   4 writers, 2 MiB fragments back to back: MB/s the store sustains durably.
Every run also checks read-after-write for each acknowledged fragment, exact segment listings
and 50 `If-None-Match: *` create races (one winner, one 412). Prints medians over repeats; the
summary (RESULTS.md, summary.json, commands) goes to bench/results/wal-<time>-<commit>/.
"""

import argparse
import datetime
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(ROOT, "scripts/bench-peers.py"))
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)

SHAPES = {
    "paced": ["--writers", "4", "--append-rate", "1m", "--flush-ms", "200", "--flush-bytes", "2m"],
    "capacity": ["--writers", "4", "--append-rate", "0", "--flush-bytes", "2m"],
}
ROWS = [("wal-append", "p50_us", "append p50 ms", 1e3), ("wal-append", "p99_us", "append p99 ms", 1e3),
        ("wal-append", "p999_us", "append p99.9 ms", 1e3),
        ("wal-fragment-put", "p50_us", "fragment PUT p50 ms", 1e3),
        ("wal-fragment-put", "p99_us", "fragment PUT p99 ms", 1e3),
        ("wal-append", "mb_per_s", "MB/s", 1), ("wal-reader-lag", "p50_us", "reader lag p50 ms", 1e3),
        ("wal-reader-lag", "p99_us", "reader lag p99 ms", 1e3),
        ("wal-segment-list", "p50_us", "segment LIST p50 ms", 1e3)]


def run_wal(server, shape, dur, client_cpus, commands):
    cmd = [peers.BENCH, "wal", *server.client_args("wal"), *SHAPES[shape], "-d", f"{dur}s", "--races", "50",
           "--json"]
    if client_cpus:
        cmd += ["--pin-cores", client_cpus]
    commands.append(" ".join(cmd).replace(peers.SK, "$SECRET"))
    p = subprocess.run(cmd, capture_output=True, text=True)
    doc = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {"reports": []}
    reps = {r["name"]: r for r in doc["reports"]}
    extra = reps.get("wal-append", {}).get("extra", {})
    peers.log(f"{server.name:10} {shape:9} exit={p.returncode} "
              + " ".join(f"{k}={reps[k]['p50_us'] / 1e3:.1f}ms" for k in ("wal-append", "wal-fragment-put")
                         if k in reps)
              + f" MB/s={reps.get('wal-append', {}).get('mb_per_s', 0):.1f} violations="
              + json.dumps({k: v for k, v in extra.items() if k.startswith(("missing", "bad", "list", "race"))}))
    if p.returncode != 0:
        peers.log(p.stderr[-2000:])
    return {"exit": p.returncode, "reports": reps}


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--servers", default="bale seaweedfs")
    o.add_argument("--repeats", type=int, default=3)
    o.add_argument("--duration", type=int, default=20, help="seconds per run")
    o.add_argument("--server-cpus", default="0")
    o.add_argument("--client-cpus", default="1")
    a = o.parse_args()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=9", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(ROOT, "bench/results", f"wal-{stamp}-{commit}")
    work = tempfile.mkdtemp(prefix="bale-wal-")
    servers, commands = [], []
    res = {}
    try:
        peers.start_one_core_servers(servers, a.servers.split(), work, a.server_cpus, commands)
        for s in servers:
            res[s.name] = {shape: [] for shape in SHAPES}
        for r in range(a.repeats):
            order = servers if r % 2 == 0 else servers[::-1]
            for shape in SHAPES:
                for s in order:
                    res[s.name][shape].append(run_wal(s, shape, a.duration, a.client_cpus, commands))
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    write_results(out, a, commit, stamp, res, commands)
    print(out)


def med(runs, rep, field):
    vals = [x["reports"][rep][field] for x in runs if rep in x["reports"] and x["reports"][rep]["count"] > 0]
    return statistics.median(vals) if vals else float("nan")


def write_results(out, a, commit, stamp, res, commands):
    os.makedirs(out, exist_ok=True)
    names = list(res)
    lines = [f"# WAL (Woodpecker-shaped) writes, {' vs '.join(names)}", "",
             f"Commit {commit}, started {stamp}; `scripts/bench-wal.py --repeats {a.repeats} --duration "
             f"{a.duration} --servers \"{a.servers}\"`; servers on CPU {a.server_cpus}, client on "
             f"{a.client_cpus}. Medians over {a.repeats} repeats. Commands: commands.txt.", ""]
    for shape in SHAPES:
        lines += [f"## {shape}: `{' '.join(SHAPES[shape])}`", "",
                  "| | " + " | ".join(names) + (" | " + f"{names[0]} ÷ {names[1]}" if len(names) > 1 else "") + " |",
                  "|---" * (len(names) + 1 + (len(names) > 1)) + "|"]
        for rep, field, label, div in ROWS:
            vals = [med(res[n][shape], rep, field) / div for n in names]
            ratio = f" | {vals[0] / vals[1]:.2f}×" if len(vals) > 1 and vals[1] else ""
            lines.append(f"| {label} | " + " | ".join(f"{v:,.2f}" for v in vals) + ratio + " |")
        for n in names:
            runs = res[n][shape]
            ex = [x["reports"].get("wal-append", {}).get("extra", {}) for x in runs]
            lost = sum(e.get("missing_after_ack", 0) + e.get("bad_bytes", 0) for e in ex)
            races = sum(e.get("races", 0) for e in ex)
            one = sum(e.get("race_one_winner", 0) for e in ex)
            both = sum(e.get("race_both_won", 0) for e in ex)
            exits = [x["exit"] for x in runs]
            lines.append(f"\n{n}: exits {exits}; acknowledged fragments missing or wrong on the next GET: {lost}; "
                         f"create races with one winner: {one}/{races}, both won: {both}.")
        lines.append("")
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"commit": commit, "started": stamp, "args": vars(a), "runs": res}, f, indent=1)
    with open(os.path.join(out, "commands.txt"), "w") as f:
        f.write("\n".join(commands) + "\n")
    sys.stderr.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
