#!/usr/bin/env python3
"""Small durable PUTs (issue 18's "Small durable PUTs" rows): PUT latency p50/p99 of 4 KiB,
64 KiB and 2 MiB objects at c=1 and c=16 (2 MiB also at c=4), bale and SeaweedFS side by
side in one run, plus bale's group-commit batch sizes.

    scripts/bench-putlat.py [--repeats 3] [--count 2000] [--servers "bale seaweedfs"]

Every server starts at once on its own data directory, pinned to --server-cpus (bale
`--cores 1`), the client (`bale-bench load`, UNSIGNED-PAYLOAD, one thread per connection) on
--client-cpus. Each repeat runs every (size, concurrency) row against each server in turn, the
order alternating per repeat, each run under a fresh key prefix (new objects, no overwrites).
A bale PUT is acknowledged only after its bytes and its journal entry are fdatasynced (ADR 4);
the batch columns come from bale's /metrics (`bale_group_commit_batch_entries`,
`bale_fsync_duration_seconds`), read before and after each run. Medians over repeats.
Writes bench/results/putlat-<time>-<commit>/ (table.md, summary.json, commands.txt).
"""

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name, rel):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


peers = _load("bench_peers", "scripts/bench-peers.py")
scale = _load("bench_scale", "scripts/bench-scale.py")

# (size, concurrency, objects per run as a share of --count): 2 MiB runs fewer objects.
ROWS = [("4k", 1, 1.0), ("4k", 16, 1.0), ("64k", 1, 1.0), ("64k", 16, 1.0),
        ("2m", 1, 0.1), ("2m", 4, 0.1), ("2m", 16, 0.1)]


def run_load(server, size, conc, count, prefix, client_cpus, commands):
    before = scale.commit_counters(server.port) if server.name == "bale" else None
    cmd = [peers.BENCH, "load", *server.client_args("load"), "-n", str(count), "--size", size,
           "-c", str(conc), "--prefix", prefix, "--json"]
    if client_cpus:
        cmd += ["--pin-cores", client_cpus]
    commands.append(" ".join(cmd).replace(peers.SK, "$SECRET"))
    p = subprocess.run(cmd, capture_output=True, text=True)
    doc = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {"reports": []}
    rep = doc["reports"][0] if doc.get("reports") else None
    after = scale.commit_counters(server.port) if before is not None else None
    out = {"exit": p.returncode, "report": rep}
    if before and after:
        commits = after["bale_group_commit_batch_entries_count"] - before["bale_group_commit_batch_entries_count"]
        entries = after["bale_group_commit_batch_entries_sum"] - before["bale_group_commit_batch_entries_sum"]
        fsync_s = after["bale_fsync_duration_seconds_sum"] - before["bale_fsync_duration_seconds_sum"]
        if commits > 0:
            out["entries_per_commit"] = entries / commits
            out["fsync_mean_ms"] = fsync_s / commits * 1e3
    errors = (rep or {}).get("errors", 0)
    peers.log(f"{server.name:10} {size:>4} c={conc:<2} exit={p.returncode} errors={errors} "
              + (f"p50={rep['p50_us']:.0f}us p99={rep['p99_us']:.0f}us rps={rep['req_per_s']:.0f}" if rep else "no report")
              + (f" batch={out['entries_per_commit']:.1f}" if "entries_per_commit" in out else ""))
    if p.returncode != 0:
        peers.log(p.stderr[-2000:])
    return out


def med(runs, f):
    vals = [f(r) for r in runs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, scale_by=1.0, digits=0):
    return "–" if v is None else f"{v / scale_by:,.{digits}f}"


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--servers", default="bale seaweedfs")
    o.add_argument("--repeats", type=int, default=3)
    o.add_argument("--count", type=int, default=2000, help="objects per 4 KiB / 64 KiB run (2 MiB: a tenth)")
    o.add_argument("--server-cpus", default="0")
    o.add_argument("--client-cpus", default="1")
    o.add_argument("--out", default=None, help="results directory (default bench/results/putlat-<time>-<commit>)")
    a = o.parse_args()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=9", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = a.out or os.path.join(ROOT, "bench/results", f"putlat-{stamp}-{commit}")
    work = tempfile.mkdtemp(prefix="bale-putlat-")
    servers, commands, res = [], [], {}
    try:
        peers.start_one_core_servers(servers, a.servers.split(), work, a.server_cpus, commands, bale_extra=["--metrics-public"])
        for s in servers:
            res[s.name] = {f"{sz} c={c}": [] for sz, c, _ in ROWS}
        for r in range(a.repeats):
            order = servers if r % 2 == 0 else servers[::-1]
            for sz, c, share in ROWS:
                n = max(c * 4, int(a.count * share))
                for s in order:
                    res[s.name][f"{sz} c={c}"].append(
                        run_load(s, sz, c, n, f"r{r}-{sz}-c{c}/", a.client_cpus, commands))
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    write_results(out, a, commit, stamp, res, commands)
    print(out)


def write_results(out, a, commit, stamp, res, commands):
    os.makedirs(out, exist_ok=True)
    names = list(res)
    head = "| PUT | " + " | ".join(f"{n} p50 / p99 ms | {n} PUT/s" for n in names)
    head += " | bale entries per group commit | bale fdatasync mean ms |" if "bale" in names else " |"
    lines = [f"# Small durable PUTs, {' vs '.join(names)}", "",
             f"Commit {commit}, started {stamp}; `scripts/bench-putlat.py --repeats {a.repeats} --count "
             f"{a.count} --servers \"{a.servers}\"`; servers on CPU {a.server_cpus} (bale `--cores 1`), "
             f"client on CPU {a.client_cpus}. Medians over {a.repeats} repeats. Commands: commands.txt.", "",
             head, "|" + "---|" * (head.count("|") - 1)]
    summary = {"commit": commit, "stamp": stamp, "rows": {}}
    for sz, c, _ in ROWS:
        row = f"{sz} c={c}"
        cells, srow = [], {}
        for n in names:
            runs = res[n][row]
            p50 = med(runs, lambda x: (x["report"] or {}).get("p50_us"))
            p99 = med(runs, lambda x: (x["report"] or {}).get("p99_us"))
            rps = med(runs, lambda x: (x["report"] or {}).get("req_per_s"))
            errs = sum((x["report"] or {}).get("errors", 0) + (x["exit"] != 0) for x in runs)
            cells.append(f"{fmt(p50, 1e3, 2)} / {fmt(p99, 1e3, 2)}" + (f" ({errs} errors)" if errs else ""))
            cells.append(fmt(rps))
            srow[n] = {"p50_us": p50, "p99_us": p99, "req_per_s": rps, "errors": errs}
        if "bale" in names:
            bat = med(res["bale"][row], lambda x: x.get("entries_per_commit"))
            fsm = med(res["bale"][row], lambda x: x.get("fsync_mean_ms"))
            cells += [fmt(bat, 1, 1), fmt(fsm, 1, 2)]
            srow["bale"].update({"entries_per_commit": bat, "fsync_mean_ms": fsm})
        lines.append(f"| {sz} c={c} | " + " | ".join(cells) + " |")
        summary["rows"][row] = srow
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"runs": res, **summary}, f, indent=1)
    with open(os.path.join(out, "commands.txt"), "w") as f:
        f.write("\n".join(commands) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
