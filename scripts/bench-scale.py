#!/usr/bin/env python3
"""Scale check (issue 13): what N objects cost bale in memory, disk, restart and listing.

    scripts/bench-scale.py [--counts 100000,1000000] [--sets 1k,mix] [--check]

For each object set (`1k`: 1 KiB objects; `mix`: 1-64 KiB) and each count, a fresh bale
(`--cores 2 --cache-mb 0`, so RSS is the index, not cached objects) is loaded with
`bale-bench scale --phase load` (Milvus-shaped keys, c=16), then measured:
  index memory      RSS after the load minus RSS of the empty server, per object (and minus
                    the key bytes);
  disk footprint    allocated bytes of the data directory / bytes of the objects;
  LIST              ListObjectsV2 pages of 1,000 from random points, with and without `/`
                    (c=1, p50);
  restart           SIGTERM: time to exit and time to answer /health again; kill -9: time to
                    answer /health again;
  device reads      page cache dropped, 20 requests for other objects (bale's code paged back
                    in), then 200 HEADs and 200 GETs at c=1 (objects of at most
                    64 KiB): reads completed by the block device (/proc/diskstats) per request
                    (other processes' reads count too: on a busy machine an upper bound), and
                    bytes the block layer read for bale's own threads (/proc/PID/io read_bytes);
  PUT rate          the load's own rate (1 KiB set: the issue's "PUT of 1 KiB objects, c=16"),
                    with the group commit's journal entries per fdatasync and the mean
                    fdatasync time during the load (from /metrics; bale runs --metrics-public).
Order: load, SIGTERM (exit time, footprint at rest), start (restart after SIGTERM), LIST pages,
kill -9, start (restart after kill -9), cold HEADs and GETs. --keep DIR keeps each data
directory (DIR/<set>-<count>) and its load's numbers (loaded.json): a later run with the same
DIR skips the load (the 10-million load takes half an hour) and measures the rest again;
--fifo runs those timing phases (not the load) under SCHED_FIFO, for a shared, loaded machine.
--index-memory-mb N runs bale with that index memory budget (ADR 29; 0: none, the default) and
records it; RSS and RssAnon are taken after the load and after the restart, and warm GETs of
random keys over the whole set (c=1, after a warm-up) after the restart.
--load-only stops after the footprint at rest (A/B runs of the PUT rate; BENCH_COMMIT names the
build in the results when the binaries are not HEAD's). Writes bench/results/scale-<time>-<commit>/RESULTS.md (each row with the issue's target and a
verdict) and summary.json. --check exits 1 when a bale-bench phase reports an error (CI smoke);
the targets are reported, not enforced. Needs target/release/{bale,bale-bench} (BENCH_BALE_BIN,
BENCH_BIN override) and root for dropping the page cache.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BALE = os.environ.get("BENCH_BALE_BIN") or os.path.join(ROOT, "target/release/bale")
BENCH = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target/release/bale-bench")
AK, SK = "scaleaccess", "scalesecret-bench"
SETS = {"1k": "1k", "mix": "1k,2k,4k,8k,16k,32k,64k"}
# Milvus-shaped key length of bale-bench scale (files/insert_log/<coll>/<part>/<seg>/<field>/<log>).
KEY_BYTES = len("files/insert_log/449210613400000001/449210613400000002/449210613500000000/100/"
                "449210613600000000")


def log(*a):
    print("[scale]", *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_anon_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def disk_reads():
    """Reads completed by every whole block device (not partitions)."""
    total = 0
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            if os.path.exists(f"/sys/block/{p[2]}"):
                total += int(p[3])
    return total


def proc_read_bytes(pid):
    """Bytes this process (all its threads, io_uring workers included) had the block layer read."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    return 0


def drop_caches():
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def du(path, apparent=False):
    cmd = ["du", "-s", "--block-size=1"] + (["--apparent-size"] if apparent else []) + [path]
    return int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[0])


def du_split(path):
    """Allocated bytes of the volume files (vol-*.dat) and of everything else (journal,
    snapshot, buckets), walking the data directory."""
    vols = other = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                n = os.stat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                continue
            if f.startswith("vol-") and f.endswith(".dat"):
                vols += n
            else:
                other += n
    return vols, other


# `--fifo`: the timing phases (restart, LIST, cold reads) run bale and the client under
# SCHED_FIFO (`chrt -f 10`), so a loaded shared machine delays them less; the load does not
# (it would starve the machine for minutes).
FIFO = []
USE_FIFO = False
# `--index-memory-mb`: bale's index memory budget (0: none).
INDEX_MB = 0


class Bale:
    def __init__(self, work):
        self.data = os.path.join(work, "data")
        self.logf = open(os.path.join(work, "bale.log"), "ab")
        self.port = free_port()
        self.proc = None

    def start(self):
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([*FIFO, BALE, "serve", "--listen", f"127.0.0.1:{self.port}", "--data", self.data,
                                      "--cores", "2", "--cache-mb", "0", "--access-key", AK, "--secret-key", SK,
                                      "--metrics-public",
                                      *(["--index-memory-mb", str(INDEX_MB)] if INDEX_MB else [])],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        while time.perf_counter() - t0 < 120:
            if self.proc.poll() is not None:
                raise SystemExit(f"bale exited with {self.proc.returncode}; see {self.logf.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.02)
        raise SystemExit("bale did not answer /health in 120 s")

    def stop(self, sig=signal.SIGTERM):
        t0 = time.perf_counter()
        self.proc.send_signal(sig)
        self.proc.wait(120)
        return time.perf_counter() - t0

    def bench(self, phase, count, sizes, extra, commands):
        cmd = [*FIFO, BENCH, "scale", "--endpoint", f"http://127.0.0.1:{self.port}", "--access-key", AK,
               "--secret-key", SK, "--bucket", "scale", "--phase", phase, "-n", str(count), "--size", sizes,
               "--json", *extra]
        commands.append(" ".join(cmd).replace(SK, "$SECRET"))
        p = subprocess.run(cmd, capture_output=True, text=True)
        doc = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {"reports": [], "meta": {}}
        rep = doc["reports"][0] if doc["reports"] else {"errors": -1, "count": 0}
        if p.returncode != 0 or rep["errors"]:
            log(f"{phase}: exit {p.returncode}, errors {rep['errors']}: {p.stderr[-1500:]}")
        return rep, doc.get("meta", {}), p.returncode


def cold_reads(b, phase, count, sizes, commands):
    drop_caches()
    # A few requests for other objects first: the page cache drop also evicted bale's own code,
    # and faulting it back in would count as bale's reads.
    b.bench(phase, count, sizes, ["-c", "1", "--requests", "20", "--seed", "99"], [])
    r0, b0 = disk_reads(), proc_read_bytes(b.proc.pid)
    rep, _, rc = b.bench(phase, count, sizes, ["-c", "1", "--requests", "200", "--seed", "7"], commands)
    n = max(rep["count"], 1)
    return (disk_reads() - r0) / n, (proc_read_bytes(b.proc.pid) - b0) / n, rep, rc


def commit_counters(port):
    """Group commit counters from /metrics: (journal entries, fdatasyncs, fsync seconds) summed
    over the shards; None when the scrape fails."""
    want = {"bale_group_commit_batch_entries_sum": 0.0, "bale_group_commit_batch_entries_count": 0.0,
            "bale_fsync_duration_seconds_sum": 0.0}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError as e:
        log("metrics scrape failed:", e)
        return None
    for line in text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in want:
            want[name] += float(line.rsplit(" ", 1)[1])
    return want


def load(set_name, count, work, commands):
    """Fresh bale, load `count` objects, stop it with SIGTERM: the load's rate and commit
    counters, index memory, and the footprint while running and at rest."""
    sizes = SETS[set_name]
    b = Bale(work)
    b.start()
    time.sleep(0.5)
    rss0 = rss_bytes(b.proc.pid)
    c0 = commit_counters(b.port)
    load, meta, rc_load = b.bench("load", count, sizes, ["-c", "16"], commands)
    c1 = commit_counters(b.port)
    time.sleep(1.0)
    rss1 = rss_bytes(b.proc.pid)
    anon1 = rss_anon_bytes(b.proc.pid)
    object_bytes = meta.get("object_bytes", 0)
    out = {"set": set_name, "objects": count, "object_bytes": object_bytes,
           "put_per_s": load.get("req_per_s", 0), "put_p50_us": load.get("p50_us", 0),
           "put_p99_us": load.get("p99_us", 0), "rss_empty_bytes": rss0, "rss_loaded_bytes": rss1,
           "rss_anon_loaded_bytes": anon1, "index_memory_mb": INDEX_MB}
    if c0 and c1:
        entries = c1["bale_group_commit_batch_entries_sum"] - c0["bale_group_commit_batch_entries_sum"]
        syncs = c1["bale_group_commit_batch_entries_count"] - c0["bale_group_commit_batch_entries_count"]
        secs = c1["bale_fsync_duration_seconds_sum"] - c0["bale_fsync_duration_seconds_sum"]
        out["load_entries_per_journal_sync"] = entries / max(syncs, 1)
        out["load_journal_syncs_per_s"] = syncs / max(count / max(out["put_per_s"], 1), 1e-9)
        out["load_journal_fsync_mean_ms"] = 1e3 * secs / max(syncs, 1)
    out["rss_per_object"] = (rss1 - rss0) / count
    out["rss_per_object_beyond_key"] = out["rss_per_object"] - KEY_BYTES
    out["disk_allocated_bytes"] = du(b.data)
    out["disk_apparent_bytes"] = du(b.data, apparent=True)
    out["footprint"] = out["disk_allocated_bytes"] / max(object_bytes, 1)
    out["sigterm_exit_s"] = b.stop(signal.SIGTERM)
    # After a clean stop the active volumes are sealed (their preallocated tails, up to 64 MiB
    # per shard, given back) and the index is checkpointed (journal trimmed): what the objects
    # cost at rest. Volumes (records) and the rest (snapshot, journal) separately.
    out["disk_allocated_at_rest_bytes"] = du(b.data)
    out["footprint_at_rest"] = out["disk_allocated_at_rest_bytes"] / max(object_bytes, 1)
    vols, meta_bytes = du_split(b.data)
    out["volume_footprint_at_rest"] = vols / max(object_bytes, 1)
    out["metadata_bytes_at_rest"] = meta_bytes
    out["bench_exit_codes"] = [rc_load]
    return out


def timings(out, work, commands):
    """On the loaded data directory (bale stopped by SIGTERM): restart, LIST pages, restart
    after kill -9, device reads of cold HEADs and GETs."""
    sizes, count = SETS[out["set"]], out["objects"]
    FIFO[:] = ["chrt", "-f", "10"] if USE_FIFO else []
    b = Bale(work)
    out["sigterm_restart_s"] = b.start()
    out["timings_index_memory_mb"] = INDEX_MB
    time.sleep(0.5)
    out["rss_restarted_bytes"] = rss_bytes(b.proc.pid)
    out["rss_anon_restarted_bytes"] = rss_anon_bytes(b.proc.pid)
    rcs = out["bench_exit_codes"]
    # Warm GETs of random keys over the whole set: a warm-up pass, then the measured one.
    b.bench("get", count, sizes, ["-c", "1", "--requests", "2000", "--seed", "5"], [])
    rep, _, rc = b.bench("get", count, sizes, ["-c", "1", "--requests", "5000", "--seed", "11"], commands)
    out["warm_get_p50_us"], out["warm_get_p99_us"] = rep.get("p50_us", 0), rep.get("p99_us", 0)
    rcs.append(rc)
    for name, extra in (("list", []), ("list_delimited", ["--delimiter"])):
        rep, _, rc = b.bench("list", count, sizes, ["-c", "1", "--requests", "200", *extra], commands)
        out[f"{name}_p50_us"], out[f"{name}_p99_us"] = rep.get("p50_us", 0), rep.get("p99_us", 0)
        rcs.append(rc)
    b.stop(signal.SIGKILL)
    out["kill9_restart_s"] = b.start()
    for phase in ("head", "get"):
        per, per_bytes, rep, rc = cold_reads(b, phase, count, sizes, commands)
        out[f"cold_{phase}_device_reads"] = per
        out[f"cold_{phase}_bale_read_bytes"] = per_bytes
        out[f"cold_{phase}_p50_us"] = rep.get("p50_us", 0)
        rcs.append(rc)
    b.stop()
    FIFO.clear()
    return out


def measure(set_name, count, work, commands, load_only=False):
    """`load`, then (unless `load_only`) `timings`. With a kept work directory that already
    holds this set's load (`loaded.json`), the load is not repeated: its numbers are reused
    and only the timings are measured again."""
    saved = os.path.join(work, "loaded.json")
    if os.path.exists(saved):
        with open(saved) as f:
            out = json.load(f)
        if (out["set"], out["objects"]) != (set_name, count):
            raise SystemExit(f"{saved} holds {out['set']} x {out['objects']}, not {set_name} x {count}")
        log(f"reusing the load in {work}")
    else:
        out = load(set_name, count, work, commands)
        with open(saved, "w") as f:
            json.dump(out, f)
    if not load_only:
        out = timings(out, work, commands)
    log(json.dumps(out))
    return out


ROWS = [
    ("index memory per object beyond the key, B", "rss_per_object_beyond_key", "≤ 64", lambda v: v <= 64, "{:,.0f}"),
    ("disk footprint ÷ object bytes", "footprint", "1k ≤ 1.1, mix ≤ 1.05", None, "{:.2f}×"),
    ("disk footprint ÷ object bytes at rest (after SIGTERM)", "footprint_at_rest", "1k ≤ 1.1, mix ≤ 1.05", None,
     "{:.2f}×"),
    ("volume bytes (records) ÷ object bytes at rest", "volume_footprint_at_rest", "–", None, "{:.2f}×"),
    ("block-device reads per cold GET (all processes: upper bound)", "cold_get_device_reads", "1", None, "{:.2f}"),
    ("bytes bale read from the device per cold GET", "cold_get_bale_read_bytes", "one aligned span", None,
     "{:,.0f}"),
    ("block-device reads per cold HEAD (all processes: upper bound)", "cold_head_device_reads", "0", None,
     "{:.2f}"),
    ("bytes bale read from the device per cold HEAD", "cold_head_bale_read_bytes", "0", lambda v: v == 0,
     "{:,.0f}"),
    ("RSS after the load, MiB", "rss_loaded_bytes", "–", None, "{:,.0f}"),
    ("RssAnon after the load, MiB", "rss_anon_loaded_bytes", "–", None, "{:,.0f}"),
    ("RSS after the restart, MiB", "rss_restarted_bytes", "–", None, "{:,.0f}"),
    ("RssAnon after the restart, MiB", "rss_anon_restarted_bytes", "–", None, "{:,.0f}"),
    ("warm GET of random keys p50, us (c=1)", "warm_get_p50_us", "–", None, "{:,.0f}"),
    ("warm GET of random keys p99, us (c=1)", "warm_get_p99_us", "–", None, "{:,.0f}"),
    ("restart after SIGTERM, s", "sigterm_restart_s", "≤ 5", lambda v: v <= 5, "{:.2f}"),
    ("restart after kill -9, s", "kill9_restart_s", "≤ 15", lambda v: v <= 15, "{:.2f}"),
    ("LIST 1,000 keys p50, ms", "list_p50_us", "≤ 5", lambda v: v / 1e3 <= 5, "{:.2f}"),
    ("LIST 1,000 prefixes (delimiter) p50, ms", "list_delimited_p50_us", "≤ 5", lambda v: v / 1e3 <= 5, "{:.2f}"),
    ("PUT rate c=16, objects/s", "put_per_s", "1k: ≥ 20,000", None, "{:,.0f}"),
    ("load: journal entries per group commit (all shards)", "load_entries_per_journal_sync", "–", None, "{:.1f}"),
    ("load: journal fdatasync mean, ms", "load_journal_fsync_mean_ms", "–", None, "{:.2f}"),
]


def verdict(key, v, set_name, check):
    if key in ("footprint", "footprint_at_rest"):
        return "met" if v <= (1.1 if set_name == "1k" else 1.05) else "not met"
    if check is None and key != "put_per_s":
        return "–"
    if key == "put_per_s":
        return ("met" if v >= 20000 else "not met") if set_name == "1k" else "–"
    return "met" if check(v) else "not met"


def write(out_dir, results, args, commit, stamp, commands):
    os.makedirs(out_dir, exist_ok=True)
    cols = [f"{r['set']} × {r['objects']:,}" for r in results]
    lines = ["# Scale (issue 13)", "",
             f"Commit {commit}, started {stamp}: `scripts/bench-scale.py --counts {args.counts} --sets {args.sets}"
             + (" --fifo" if args.fifo else "") + (f" --keep {args.keep}" if args.keep else "")
             + (f" --index-memory-mb {args.index_memory_mb}" if args.index_memory_mb else "") + "`; "
             "bale `--cores 2 --cache-mb 0`; keys like Milvus's "
             f"({KEY_BYTES} bytes: `files/insert_log/<collection>/<partition>/<segment>/<field>/<log id>`). "
             "Device reads count the whole block device (an upper bound on a shared machine). "
             "Commands: commands.txt.", "",
             "| | target | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for label, key, target, check, fmt in ROWS:
        cells = []
        for r in results:
            v = r.get(key, float("nan"))
            if key.endswith("_us") and "LIST" in label:
                shown = fmt.format(v / 1e3)
            elif key.endswith("_bytes") and "MiB" in label:
                shown = fmt.format(v / 2**20)
            else:
                shown = fmt.format(v)
            cells.append(f"{shown} ({verdict(key, v, r['set'], check)})")
        lines.append(f"| {label} | {target} | " + " | ".join(cells) + " |")
    lines += ["", "Also measured: " + "; ".join(
        f"{r['set']} × {r['objects']:,}: RSS {r['rss_empty_bytes'] / 2**20:.0f} → {r['rss_loaded_bytes'] / 2**20:.0f} MiB, "
        f"{r['rss_per_object']:.0f} B/object with the key; data dir {r['disk_allocated_bytes'] / 2**20:.0f} MiB "
        f"allocated for {r['object_bytes'] / 2**20:.0f} MiB of objects; SIGTERM exit {r['sigterm_exit_s']:.2f} s"
        for r in results) + "."]
    with open(os.path.join(out_dir, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump({"commit": commit, "started": stamp, "args": vars(args), "results": results}, f, indent=1)
    with open(os.path.join(out_dir, "commands.txt"), "w") as f:
        f.write("\n".join(commands) + "\n")
    sys.stderr.write("\n".join(lines) + "\n")


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--counts", default="100000,1000000")
    o.add_argument("--sets", default="1k,mix")
    o.add_argument("--check", action="store_true", help="exit 1 if a bale-bench phase reported errors")
    o.add_argument("--load-only", action="store_true",
                   help="only the load (PUT rate, commit counters) and the footprint at rest: for A/B runs")
    o.add_argument("--out", help="results directory (default bench/results/scale-<time>-<commit>)")
    o.add_argument("--keep", metavar="DIR",
                   help="keep each set's data in DIR/<set>-<count> (one set and count per DIR entry); "
                        "a later run with the same DIR reuses the load and measures the timings again")
    o.add_argument("--fifo", action="store_true",
                   help="run bale and the client under SCHED_FIFO (chrt -f 10) for the timing phases")
    o.add_argument("--index-memory-mb", type=int, default=0,
                   help="bale's --index-memory-mb (ADR 29; 0: no budget)")
    a = o.parse_args()
    global USE_FIFO, INDEX_MB
    USE_FIFO = a.fifo
    INDEX_MB = a.index_memory_mb
    commit = os.environ.get("BENCH_COMMIT") or subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--short=9", "HEAD"], capture_output=True, text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = a.out or os.path.join(ROOT, "bench/results", f"scale-{stamp}-{commit}")
    results, commands = [], []
    for set_name in a.sets.split(","):
        for count in (int(c) for c in a.counts.split(",")):
            if a.keep:
                work = os.path.join(a.keep, f"{set_name}-{count}")
                os.makedirs(work, exist_ok=True)
            else:
                work = tempfile.mkdtemp(prefix=f"bale-scale-{set_name}-")
            try:
                log(f"{set_name} x {count:,}")
                out = measure(set_name, count, work, commands, a.load_only)
                results.append(out)
            finally:
                if not a.keep:
                    shutil.rmtree(work, ignore_errors=True)
    write(out_dir, results, a, commit, stamp, commands)
    print(out_dir)
    if a.check and any(rc != 0 for r in results for rc in r["bench_exit_codes"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
