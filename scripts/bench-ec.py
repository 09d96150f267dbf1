#!/usr/bin/env python3
"""Erasure-coded disks (issue 14, ADR 19): bale on six data directories with `--redundancy
none`, `mirror` and `ec:4+2`, side by side in one run, alternating per repeat.

    scripts/bench-ec.py [--repeats 3] [--count 3000]
    scripts/bench-ec.py --stripe-compaction [--rounds 6] [--count 3000] [--dead-pct 80]

Each server: `--cores 1 --cache-mb 0 --volume-target-mb 4` (small volumes, so that the 4 KiB
objects loaded first end up in sealed volumes, which the ec server encodes into stripes). Load:
--count 4 KiB objects, then 2 MiB objects to seal the volumes behind them; wait until the ec
server reports a stripe per shard (bale_stripes). Rows: healthy GET 4 KiB c=1 and c=16 (every
GET reads the device: a striped member on the ec server), then degraded GET 4 KiB c=1/c=16 (the
ec server restarted with its first directory renamed away: a sixth of the reads decode from 4
other stripe files). Also: bytes on disk / object bytes per mode, and the encode MB/s the ec
server logged. Writes bench/results/ec-disks-<time>-<commit>/ (table.md, summary.json,
commands.txt).
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
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(ROOT, "scripts/bench-peers.py"))
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)
spec = importlib.util.spec_from_file_location("bench_mirror", os.path.join(ROOT, "scripts/bench-mirror.py"))
mirror = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mirror)

MODES = ("none", "mirror", "ec:4+2")


def dirs_of(s):
    return [s.data] + [os.path.join(s.work, f"data{i}") for i in range(1, 6)]


def disk_bytes(s):
    n = 0
    for d in dirs_of(s):
        if os.path.isdir(d):
            out = subprocess.run(["du", "-s", "--apparent-size", "--block-size=1", d], capture_output=True,
                                 text=True).stdout
            n += int(out.split()[0])
    return n


def metric(s, name):
    with urllib.request.urlopen(s.endpoint() + "/metrics", timeout=5) as r:
        m = re.search(rf"^{name} (\d+)", r.read().decode(), re.M)
    return int(m.group(1)) if m else 0


def metric_sum(s, name):
    """A per-shard metric summed over its labels."""
    with urllib.request.urlopen(s.endpoint() + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(int(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\d+)", text, re.M))


def du_allocated(s):
    n = 0
    for d in dirs_of(s):
        if os.path.isdir(d):
            n += int(subprocess.run(["du", "-s", "--block-size=1", d], capture_output=True,
                                    text=True).stdout.split()[0])
    return n


def delete_prefix(s, prefix, count):
    """DELETEs prefix + 8-digit index for every index below count (bale-bench's key names)."""
    import boto3
    from botocore.config import Config
    c = boto3.client("s3", endpoint_url=s.endpoint(), aws_access_key_id=peers.AK,
                     aws_secret_access_key=peers.SK, region_name="us-east-1",
                     config=Config(s3={"addressing_style": "path"}))
    keys = [f"{prefix}{i:08}" for i in range(count)]
    for lo in range(0, len(keys), 1000):
        c.delete_objects(Bucket=peers.BUCKET,
                         Delete={"Objects": [{"Key": k} for k in keys[lo:lo + 1000]], "Quiet": True})


def stripe_compaction(a, commit, stamp):
    """Stripe compaction (issue 14, ADR 19 step 8) on one ec:4+2 server: `--rounds` rounds of
    4 KiB objects (kept) and 64 KiB objects (deleted: `--dead-pct` of the bytes), stripes
    encoded; bytes on disk full / after the deletes / after compaction; the time compaction
    took (first pass 1 s after the start to the last stripe deleted) and its MB/s; GET 4 KiB
    c=16 of the kept objects idle (before the deletes) and while stripes are compacted."""
    out = os.path.join(ROOT, "bench/results", f"ec-compaction-{stamp}-{commit}")
    work = tempfile.mkdtemp(prefix="bale-ec-compact-bench-")
    commands, summary = [], {"commit": commit, "stamp": stamp}
    w = os.path.join(work, "ec")
    os.makedirs(w)
    extra = []
    for i in range(1, 6):
        extra += ["--data", os.path.join(w, f"data{i}")]
    base = [*extra, "--redundancy", "ec:4+2", "--metrics-public", "--volume-target-mb", "1",
            "--scrub-interval-s", "0"]
    s = peers.Bale("ec:4+2", w, a.server_cpus, 1, 0, [*base, "--compact-interval-s", "0"])
    # 64 KiB dead objects per round for dead_pct of the bytes against n_live 4 KiB ones.
    n_live = a.count // a.rounds
    n_dead = max(1, round(n_live * 4 * a.dead_pct / (100 - a.dead_pct) / 64))
    rows = {}
    try:
        s.start()
        commands.append(s.cmdline.replace(peers.SK, "$SECRET"))
        for r in range(a.rounds):
            mirror.bench(s, "load", ["-n", str(n_live), "--size", "4k", "-c", "16", "--prefix", f"g{r}/"],
                         a.client_cpus, commands)
            mirror.bench(s, "load", ["-n", str(n_dead), "--size", "64k", "-c", "16", "--prefix", f"d{r}/"],
                         a.client_cpus, commands)
        deadline = time.time() + 120
        last, since = -1, time.time()
        while time.time() < deadline and not (last > 0 and time.time() - since > 3):
            n = metric(s, "bale_stripes")
            if n != last:
                last, since = n, time.time()
            time.sleep(0.5)
        summary["stripes"] = last
        # 1 s runs: a pass lasts seconds, so the runs during it are short too (and idle alike).
        get = ["-n", str(n_live), "--size", "4k", "-c", "16", "--prefix", "g0/", "-d", "1s"]
        for _ in range(a.repeats):
            rows.setdefault("idle", []).append(mirror.bench(s, "get", get, a.client_cpus, commands))
        for r in range(a.rounds):
            delete_prefix(s, f"d{r}/", n_dead)
        s.stop()
        summary["bytes_full"] = du_allocated(s)
        summary["object_bytes_live"] = a.rounds * n_live * 4096
        summary["object_bytes_dead"] = a.rounds * n_dead * 65536
        s.extra = [*base, "--compact-interval-s", "1", "--compact-ratio", "0.5"]
        s.start()
        t0 = time.time()
        t0_utc = datetime.datetime.now(datetime.timezone.utc)
        # GETs while the first pass runs (it starts 1 s after the start).
        time.sleep(1.0)
        for _ in range(4 * a.repeats):
            if metric(s, "bale_stripes") == 0 or metric_sum(s, "bale_shard_compaction_running") == 0:
                break
            rows.setdefault("during", []).append(mirror.bench(s, "get", get, a.client_cpus, commands))
        deadline = time.time() + 300
        last, since = metric(s, "bale_stripes"), time.time()
        while time.time() < deadline and time.time() - since < 5:
            n = metric(s, "bale_stripes")
            if n != last:
                last, since = n, time.time()
            time.sleep(0.2)
        s.stop()
        log = open(os.path.join(s.work, f"{s.name}.log"), errors="replace").read()
        stamps = re.findall(r"^(\S+)Z .*stripe compacted.*member_bytes=(\d+) parity_bytes=(\d+)", log, re.M)
        summary["stripes_left"] = last
        summary["stripes_compacted"] = len(stamps)
        summary["bytes_after"] = du_allocated(s)
        if stamps:
            t_last = datetime.datetime.fromisoformat(stamps[-1][0]).replace(tzinfo=datetime.timezone.utc)
            reclaimed = sum(int(m) + int(p) for _, m, p in stamps)
            # The first pass starts 1 s (--compact-interval-s) after the start.
            secs = max((t_last - t0_utc).total_seconds() - 1.0, 1e-3)
            summary["reclaimed_bytes"] = reclaimed
            summary["compaction_s"] = secs
            summary["reclaimed_mb_per_s"] = reclaimed / secs / 1e6
        summary["wall_s"] = time.time() - t0
    finally:
        s.stop()
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    lines = ["# Stripe compaction: 6 data dirs, ec:4+2", "",
             f"Commit {commit}, {stamp}; `scripts/bench-ec.py --stripe-compaction --rounds {a.rounds} "
             f"--count {a.count} --dead-pct {a.dead_pct}`; bale `--cores 1 --cache-mb 0 "
             f"--volume-target-mb 1` on CPU {a.server_cpus}, client on CPU {a.client_cpus}.", "",
             "| GET 4 KiB c=16 | p50 ms | p99 ms | req/s | runs |", "|---|---|---|---|---|"]
    for row in ("idle", "during"):
        runs = [x for x in rows.get(row, []) if x]
        if runs:
            lines.append(f"| {row} | {statistics.median(x['p50_us'] for x in runs) / 1e3:.3f} | "
                         f"{statistics.median(x['p99_us'] for x in runs) / 1e3:.3f} | "
                         f"{statistics.median(x['req_per_s'] for x in runs):,.0f} | {len(runs)} |")
            summary.setdefault("rows", {})[row] = [{k: x[k] for k in ("p50_us", "p99_us", "req_per_s")}
                                                   for x in runs]
    lines += ["", f"Objects: {summary.get('object_bytes_live')} live bytes, {summary.get('object_bytes_dead')} "
              f"deleted; stripes {summary.get('stripes')} -> {summary.get('stripes_left')} "
              f"({summary.get('stripes_compacted')} compacted). Bytes allocated on disk: "
              f"{summary.get('bytes_full')} after the deletes, {summary.get('bytes_after')} after compaction "
              f"({summary.get('bytes_after', 0) / max(summary.get('bytes_full', 1), 1):.2f}x). "
              f"Reclaimed {summary.get('reclaimed_bytes')} bytes (members + parity) in "
              f"{summary.get('compaction_s')} s: {summary.get('reclaimed_mb_per_s')} MB/s."]
    mirror.write_results(out, lines, summary, commands)


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--repeats", type=int, default=3)
    o.add_argument("--count", type=int, default=3000)
    o.add_argument("--big", type=int, default=60, help="2 MiB objects loaded after the 4 KiB ones")
    o.add_argument("--get-seconds", default="4s")
    o.add_argument("--server-cpus", default="0")
    o.add_argument("--client-cpus", default="1")
    o.add_argument("--stripe-compaction", action="store_true",
                   help="measure stripe compaction instead (one ec:4+2 server)")
    o.add_argument("--rounds", type=int, default=6, help="--stripe-compaction: load rounds")
    o.add_argument("--dead-pct", type=int, default=80, help="--stripe-compaction: deleted bytes, percent")
    a = o.parse_args()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=9", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if a.stripe_compaction:
        stripe_compaction(a, commit, stamp)
        return
    out = os.path.join(ROOT, "bench/results", f"ec-disks-{stamp}-{commit}")
    work = tempfile.mkdtemp(prefix="bale-ec-bench-")
    servers, commands, res = [], [], {}
    summary = {"commit": commit, "stamp": stamp}
    try:
        for mode in MODES:
            w = os.path.join(work, mode.replace(":", "-").replace("+", "-"))
            os.makedirs(w)
            extra = []
            for i in range(1, 6):
                extra += ["--data", os.path.join(w, f"data{i}")]
            s = peers.Bale(mode, w, a.server_cpus, 1, 0,
                           [*extra, "--redundancy", mode, "--metrics-public", "--volume-target-mb", "4",
                            "--scrub-interval-s", "0", "--compact-interval-s", "0"])
            s.start()
            commands.append(s.cmdline.replace(peers.SK, "$SECRET"))
            servers.append(s)
            res[mode] = {}
        object_bytes = a.count * 4096 + a.big * (2 << 20)
        for s in servers:
            mirror.bench(s, "load", ["-n", str(a.count), "--size", "4k", "-c", "16", "--prefix", "g/"],
                         a.client_cpus, commands)
            mirror.bench(s, "load", ["-n", str(a.big), "--size", "2m", "-c", "4", "--prefix", "big/"],
                         a.client_cpus, commands)
        ec = servers[2]
        deadline = time.time() + 120
        while time.time() < deadline and metric(ec, "bale_stripes") < 6:
            time.sleep(1)
        time.sleep(2)
        summary["stripes"] = metric(ec, "bale_stripes")
        peers.log(f"ec stripes: {summary['stripes']}")
        for r in range(a.repeats):
            order = servers if r % 2 == 0 else servers[::-1]
            for c in (1, 16):
                for s in order:
                    rep = mirror.bench(s, "get", ["-n", str(a.count), "--size", "4k", "-c", str(c), "--prefix",
                                                  "g/", "-d", a.get_seconds], a.client_cpus, commands)
                    res[s.name].setdefault(f"get 4k c={c}", []).append(rep)
        for s in servers:
            s.stop()
        summary["overhead"] = {s.name: disk_bytes(s) / object_bytes for s in servers}
        log = open(os.path.join(ec.work, f"{ec.name}.log"), errors="replace").read()
        rates = [float(x) for x in re.findall(r'encode_mb_per_s="?([\d.]+)', log)]
        summary["encode_mb_per_s"] = {"median": statistics.median(rates) if rates else None,
                                      "stripes": len(rates)}
        # Degraded: the ec server without its first directory.
        os.rename(ec.data, ec.data + ".away")
        ec.start()
        for r in range(a.repeats):
            for c in (1, 16):
                rep = mirror.bench(ec, "get", ["-n", str(a.count), "--size", "4k", "-c", str(c), "--prefix", "g/",
                                               "-d", a.get_seconds], a.client_cpus, commands)
                res[ec.name].setdefault(f"degraded get 4k c={c}", []).append(rep)
        summary["degraded_reads"] = metric(ec, "bale_degraded_reads_total")
        ec.stop()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    summary["rows"] = {}
    lines = ["# Erasure-coded disks: 6 data dirs, --redundancy none vs mirror vs ec:4+2", "",
             f"Commit {commit}, {stamp}; `scripts/bench-ec.py --repeats {a.repeats} --count {a.count}`; "
             f"bale `--cores 1 --cache-mb 0 --volume-target-mb 4` on CPU {a.server_cpus}, client on CPU "
             f"{a.client_cpus}. Medians over {a.repeats} repeats.", "",
             "| row | " + " | ".join(f"{m} p50 / p99 ms | {m} req/s" for m in MODES) + " |",
             "|---|" + "---|---|" * len(MODES)]
    for row in ["get 4k c=1", "get 4k c=16", "degraded get 4k c=1", "degraded get 4k c=16"]:
        cells = []
        for mode in MODES:
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
    lines += ["", "Bytes on disk (apparent) / object bytes: " +
              ", ".join(f"{m} {v:.2f}x" for m, v in summary.get("overhead", {}).items()),
              f"Stripes encoded: {summary.get('stripes')}; encode MB/s (median of the log's per-stripe "
              f"figures): {summary.get('encode_mb_per_s')}; degraded reads counted: "
              f"{summary.get('degraded_reads')}."]
    mirror.write_results(out, lines, summary, commands)


if __name__ == "__main__":
    main()
