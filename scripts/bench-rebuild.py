#!/usr/bin/env python3
"""Rebuild of lost stripe files while serving (issue 14, ADR 19, ninth session): one bale on
six data directories with `--redundancy ec:4+2`, the foreground 4 KiB GET idle, degraded and
during the rebuild, and the rebuild MB/s, in one run, alternating per repeat.

    scripts/bench-rebuild.py [--repeats 3] [--count 5000] [--big 400] \
        [--bale before=/path/to/old/bale --bale after=target/release/bale]

With several --bale, every repeat runs every row with each binary in turn (order alternated
per repeat), on the same directories; rows are labelled with the binary's label.

bale: `--cores 1 --cache-mb 0 --volume-target-mb 4`. Load: --count 4 KiB objects (the GETs'
set), then --big 2 MiB objects (the stripes' bulk); wait until the stripe count is stable.
"Lose" = every stripe file (members and parity) in the shard directories of data dir 3 that
hold no copy of their shard (no journal: positions > m), removed while bale is stopped: only
stripe files are lost, so the start has no copy to rebuild and the stripe rebuild runs while
serving. Per repeat:

  * idle: all files present, GET 4 KiB c=1 and c=16;
  * degraded: files lost, `--rebuild-rate-mb 1` (the rebuild barely moves), GET c=1 and c=16
    (a sixth of the 4 KiB objects' members are lost: those GETs decode);
  * during: files lost, `--rebuild-rate-mb --during-rate`, GET c=1 and c=16 started with the
    server (the GET run is shorter than the rebuild: checked, the row says how much of it
    overlapped);
  * rebuild MB/s at the default rate (200) and unbounded (0): files lost, time from the start
    until `bale_stripe_files_lost` is 0, bytes from `bale_rebuild_bytes_total`.

Writes bench/results/rebuild-<time>-<commit>/ (table.md, summary.json, commands.txt).
"""

import argparse
import datetime
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(ROOT, "scripts/bench-peers.py"))
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)
spec = importlib.util.spec_from_file_location("bench_mirror", os.path.join(ROOT, "scripts/bench-mirror.py"))
mirror = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mirror)


def metric(s, name):
    with urllib.request.urlopen(s.endpoint() + "/metrics", timeout=5) as r:
        m = re.search(rf"^{name} (\d+)", r.read().decode(), re.M)
    return int(m.group(1)) if m else 0


def lose(s, idx=3):
    """Removes the stripe files of data dir `idx`'s shard dirs that hold no copy; returns
    (files, bytes) removed."""
    d = s.data if idx == 0 else os.path.join(s.work, f"data{idx}")
    n = b = 0
    for sd in sorted(os.listdir(d)):
        p = os.path.join(d, sd)
        if not sd.startswith("shard-") or os.path.exists(os.path.join(p, "journal.log")):
            continue
        for f in os.listdir(p):
            if f.startswith("vol-") or f.startswith("parity-"):
                b += os.path.getsize(os.path.join(p, f))
                n += 1
                os.remove(os.path.join(p, f))
    return n, b


def with_rate(s, rate_mb):
    s.extra = [x for x in s.extra if not x.startswith("--rebuild-rate-mb=")] + [f"--rebuild-rate-mb={rate_mb}"]


def wait_rebuilt(s, t0, timeout_s=300):
    """Seconds from t0 until no stripe file is lost, and the bytes rebuilt."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and metric(s, "bale_stripe_files_lost") > 0:
        time.sleep(0.05)
    return time.time() - t0, metric(s, "bale_rebuild_bytes_total")


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--repeats", type=int, default=3)
    o.add_argument("--count", type=int, default=5000)
    o.add_argument("--big", type=int, default=400, help="2 MiB objects loaded after the 4 KiB ones")
    o.add_argument("--get-seconds", default="3s")
    o.add_argument("--during-rate", type=int, default=20, help="--rebuild-rate-mb of the 'during' rows")
    o.add_argument("--bale", action="append", default=[],
                   help="label=path of a bale binary (repeatable: A/B, alternated per repeat); "
                        "default: this tree's target/release/bale")
    o.add_argument("--server-cpus", default="0")
    o.add_argument("--client-cpus", default="1")
    a = o.parse_args()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=9", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(ROOT, "bench/results", f"rebuild-{stamp}-{commit}")
    work = tempfile.mkdtemp(prefix="bale-rebuild-bench-")
    commands, res = [], {}
    summary = {"commit": commit, "stamp": stamp, "rebuild": {}}
    s = None
    get = ["-n", str(a.count), "--size", "4k", "--prefix", "g/", "-d", a.get_seconds]
    try:
        extra = []
        for i in range(1, 6):
            extra += ["--data", os.path.join(work, f"data{i}")]
        s = peers.Bale("ec", work, a.server_cpus, 1, 0,
                       [*extra, "--redundancy", "ec:4+2", "--metrics-public", "--volume-target-mb", "4",
                        "--scrub-interval-s", "0", "--compact-interval-s", "0"])
        s.start()
        commands.append(s.cmdline.replace(peers.SK, "$SECRET"))
        mirror.bench(s, "load", ["-n", str(a.count), "--size", "4k", "-c", "16", "--prefix", "g/"],
                     a.client_cpus, commands)
        mirror.bench(s, "load", ["-n", str(a.big), "--size", "2m", "-c", "4", "--prefix", "big/"],
                     a.client_cpus, commands)
        last, since = -1, time.time()
        deadline = time.time() + 300
        while time.time() < deadline:
            n = metric(s, "bale_stripes")
            if n != last:
                last, since = n, time.time()
            elif time.time() - since > 5:
                break
            time.sleep(0.5)
        summary["stripes"] = last
        peers.log(f"stripes: {last}")
        s.stop()

        bins = [tuple(x.split("=", 1)) for x in a.bale] or [("bale", peers.BALE)]
        summary["binaries"] = dict(bins)
        for r in range(a.repeats):
            for label, path in (bins if r % 2 == 0 else bins[::-1]):
                s.binary = path
                repeat(s, a, label, get, res, summary, commands)
        log = open(os.path.join(s.work, f"{s.name}.log"), errors="replace").read()
        summary["rebuild_passes_logged"] = len(re.findall(r"stripe rebuild pass done", log))
    finally:
        if s:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(a, out, res, summary, commands, commit, stamp)


def repeat(s, a, label, get, res, summary, commands):
    """One repeat of every row with the binary `s.binary`, rows labelled `label`."""
    def row(name, rep):
        res.setdefault(f"{label}: {name}", []).append(rep)

    # idle
    with_rate(s, 200)
    s.start()
    for c in (1, 16):
        row(f"idle get 4k c={c}", mirror.bench(s, "get", [*get, "-c", str(c)], a.client_cpus, commands))
    s.stop()
    # degraded (rebuild at 1 MB/s: barely moving)
    files, lost_bytes = lose(s)
    summary["lost"] = {"files": files, "bytes": lost_bytes}
    with_rate(s, 1)
    s.start()
    for c in (1, 16):
        row(f"degraded get 4k c={c}", mirror.bench(s, "get", [*get, "-c", str(c)], a.client_cpus,
                                                   commands))
    summary.setdefault("degraded_reads", []).append(metric(s, "bale_degraded_reads_total"))
    s.stop()
    # during the rebuild at --during-rate
    for c in (1, 16):
        lose(s)
        with_rate(s, a.during_rate)
        s.start()
        t0 = time.time()
        rep = mirror.bench(s, "get", [*get, "-c", str(c)], a.client_cpus, commands)
        left = metric(s, "bale_stripe_files_lost")
        wait_rebuilt(s, t0)
        rep = dict(rep, overlap=1 if left > 0 else 0) if rep else None
        row(f"during rebuild ({a.during_rate} MB/s) get 4k c={c}", rep)
        s.stop()
    # rebuild MB/s at the default and unbounded
    for rate in (200, 0):
        lose(s)
        with_rate(s, rate)
        s.start()
        t0 = time.time()
        secs, b = wait_rebuilt(s, t0)
        summary["rebuild"].setdefault(f"{label} {rate}", []).append({"seconds": secs, "bytes": b,
                                                             "mb_per_s": b / secs / 1e6})
        peers.log(f"{label}: rebuild at --rebuild-rate-mb {rate}: {b} bytes in {secs:.2f}s = {b / secs / 1e6:.1f} MB/s")
        s.stop()


def report(a, out, res, summary, commands, commit, stamp):
    os.makedirs(out, exist_ok=True)
    summary["rows"] = {}
    lines = ["# Rebuild of lost stripe files while serving: 6 data dirs, ec:4+2", "",
             f"Commit {commit}, {stamp}; `scripts/bench-rebuild.py --repeats {a.repeats} --count {a.count} "
             f"--big {a.big} --during-rate {a.during_rate}`; bale `--cores 1 --cache-mb 0 --volume-target-mb 4` "
             f"on CPU {a.server_cpus}, client on CPU {a.client_cpus}. Medians over {a.repeats} repeats. "
             f"Lost per repeat: {summary.get('lost')}; stripes {summary.get('stripes')}.", "",
             "| row | p50 ms | p99 ms | req/s | p99 / idle p99 |", "|---|---|---|---|---|"]
    idle = {}
    for name in sorted(res, key=lambda n: (n.split(": ")[0], n.split(" c=")[1], ": idle" not in n, n)):
        runs = [x for x in res[name] if x]
        if not runs:
            continue
        p50 = statistics.median(x["p50_us"] for x in runs) / 1e3
        p99 = statistics.median(x["p99_us"] for x in runs) / 1e3
        rps = statistics.median(x["req_per_s"] for x in runs)
        c = name.split(": ")[0] + name.split(" c=")[1]
        if ": idle" in name:
            idle[c] = p99
        ratio = f"{p99 / idle[c]:.2f}" if c in idle else "–"
        extra = ""
        if "overlap" in runs[0]:
            extra = f" (still rebuilding when the GETs ended: {sum(x['overlap'] for x in runs)} of {len(runs)})"
        lines.append(f"| {name}{extra} | {p50:.3f} | {p99:.3f} | {rps:,.0f} | {ratio} |")
        summary["rows"][name] = {"p50_ms": p50, "p99_ms": p99, "req_per_s": rps}
    for rate, runs in summary["rebuild"].items():
        each = ", ".join("%.1f" % x["mb_per_s"] for x in runs)
        lines.append("")
        lines.append(f"Rebuild, {rate.split()[0]} at --rebuild-rate-mb {rate.split()[1]}: median "
                     f"{statistics.median(x['mb_per_s'] for x in runs):.1f} MB/s of rebuilt files "
                     f"({each}; "
                     f"{statistics.median(x['bytes'] for x in runs) / 1e6:.0f} MB each, start to healthy).")
    mirror.write_results(out, lines, summary, commands)


if __name__ == "__main__":
    main()
