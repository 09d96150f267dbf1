#!/usr/bin/env python3
"""Gateway tier benchmark (issue 15): GET 4 KiB and ranged 4 KiB in a 64 MiB object, side by
side in one run, through

  bale        plain bale (the objects loaded into it)
  gw-hit      a bale gateway in front of SeaweedFS, every object already local
  gw-miss     the same gateway started empty, every request a miss (fresh data dir per run)
  seaweedfs   SeaweedFS direct (what a Milvus user has without bale)

with `bale-bench get` (c=1, the client pinned to its own CPU where there are >= 2). Each
scenario runs --repeats times; the table shows medians of p50, p99 and req/s.

Misses: `gw-miss` restarts the gateway on an empty data directory before each run and sends
--miss-requests requests over --miss-count distinct keys, so almost every request is a miss
(bale-bench picks keys at random: a few repeats are hits). Ranged misses use
--miss-block-kb blocks (4 KiB ranges over 64 MiB: 1024 blocks at the default 64 KiB).

  scripts/bench-gateway.py [--repeats 3] [--duration 5] [--bins before=bench/out/bale-before,after=target/release/bale]

--bins runs the gateway rows (and plain bale) for each named binary, alternately within each
repeat (A/B on one machine state). `seaweedfs (miss keys)` reads the miss runs' keys directly
(the same request distribution: the upstream's own latency for those requests), and each miss
row also shows the mean upstream request time the gateway itself measured (its /metrics), so a
miss splits into "upstream" and "bale".

--milvus instead runs `bale-bench milvus` (segment-load replay: listings, HEADs, footer and
row-group ranged GETs, whole GETs, then a ranged search phase): the bucket is built once on
SeaweedFS, then each repeat loads and searches it through SeaweedFS direct, through a gateway
started empty (cold: every object a miss) and through the same gateway again (warm: hits).

  scripts/bench-gateway.py --milvus [--repeats 3] [--milvus-segments 2] [--milvus-scale 0.25]

--bins items may carry gateway flags after the path, separated by ';'
(`nospin=target/release/bale;--poll-us;0`): the same binary run with other flags is another
row. Plain bale and the hit gateway get the flags too.

--weed-cpus L1,L2,... (part 6): where SeaweedFS runs during the miss rows and their direct
rows, one CPU list per layout (`taskset` syntax, `all` = unpinned, the part-5 layout). Every
layout is applied (`taskset -a -p`, all of SeaweedFS's threads) before each miss run and before
the direct run it is compared with, alternately within each repeat, so the two rows of one
layout see the same upstream placement; rows are labelled `[weed L]` when there are several.
Default: the client's CPU (SeaweedFS never shares the gateway's core, as when the upstream is
another machine; the client waits while SeaweedFS works in both rows).

Writes bench/results/gateway-<time>-<commit>/ (RESULTS.md, runs.json, logs)."""

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BALE = os.environ.get("BENCH_BALE_BIN", os.path.join(TARGET, "release", "bale"))
BENCH = os.environ.get("BENCH_BIN", os.path.join(TARGET, "release", "bale-bench"))
WEED = os.environ.get("BENCH_WEED_BIN", os.path.join(ROOT, "bench/out/venv/bin/weed"))
AK, SK = "benchaccess", "benchsecret-key"


def log(*a):
    print("[bench-gateway]", *a, file=sys.stderr, flush=True)


def free_port():
    while True:
        p = random.randint(20000, 50000)
        try:
            for q in (p, p + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


class Proc:
    def __init__(self, name, cmd, work, cpus=None):
        self.name, self.work = name, work
        if cpus and shutil.which("taskset"):
            cmd = ["taskset", "-c", cpus] + cmd
        self.log = open(os.path.join(work, f"{name}.log"), "ab")
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def start_weed(work, cpus):
    d = os.path.join(work, "weed")
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(work, "s3.json")
    with open(cfg, "w") as f:
        json.dump({"identities": [{"name": "b", "credentials": [{"accessKey": AK, "secretKey": SK}],
                                   "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
    port = free_port()
    ports = [free_port() for _ in range(3)]
    p = Proc("seaweedfs", [WEED, "server", f"-dir={d}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                           f"-master.port={ports[0]}", f"-volume.port={ports[1]}", f"-filer.port={ports[2]}",
                           "-filer", "-s3", f"-s3.port={port}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                           f"-s3.config={cfg}", "-volume.max=0", "-master.volumeSizeLimitMB=1024"], work, cpus)
    p.endpoint = f"http://127.0.0.1:{port}"
    wait_http(p.endpoint + "/")
    # The volume server registers a little later: retry a load until it works.
    deadline = time.time() + 60
    while True:
        r = subprocess.run([BENCH, "load", "--endpoint", p.endpoint, "--access-key", AK, "--secret-key", SK,
                            "--bucket", "probe", "-n", "1", "--size", "1k"], capture_output=True, text=True)
        if r.returncode == 0:
            return p
        if time.time() > deadline:
            raise RuntimeError(f"seaweedfs not ready: {r.stderr[-500:]}")
        time.sleep(0.5)


def weed_pin(weed, cpus):
    """Moves every thread of SeaweedFS to `cpus` (`all`: every CPU of the machine)."""
    ncpu = os.cpu_count() or 1
    c = f"0-{ncpu - 1}" if cpus == "all" else cpus
    subprocess.run(["taskset", "-a", "-p", "-c", c, str(weed.p.pid)], check=True, capture_output=True)


def parse_bins(spec):
    """[(label, path, [flags])] of --bins `label=path[;flag;flag...],...`."""
    out = []
    for x in spec.split(","):
        label, rest = x.split("=", 1)
        path, *flags = rest.split(";")
        out.append((label, path, flags))
    return out


def start_bale(name, work, cpus, extra=(), fresh=True, bin_path=None):
    data = os.path.join(work, f"{name}-data")
    if fresh:
        shutil.rmtree(data, ignore_errors=True)
    port = free_port()
    p = Proc(name, [bin_path or BALE, "serve", "--listen", f"127.0.0.1:{port}", "--data", data, "--cores", "1",
                    "--access-key", AK, "--secret-key", SK, *extra], work, cpus)
    p.endpoint = f"http://127.0.0.1:{port}"
    wait_http(p.endpoint + "/health")
    return p


def bench(endpoint, args, client_cpu):
    cmd = [BENCH, "get", "--endpoint", endpoint, "--access-key", AK, "--secret-key", SK, "--json", *args]
    if client_cpu is not None:
        cmd += ["--pin-cores", client_cpu]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"bale-bench failed: {r.stderr[-2000:]}")
    rep = json.loads(r.stdout)["reports"][-1]
    return rep


def load(endpoint, args):
    r = subprocess.run([BENCH, "load", "--endpoint", endpoint, "--access-key", AK, "--secret-key", SK, *args],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"load failed: {r.stderr[-2000:]}")


def milvus(endpoint, phases, a, client_cpu):
    cmd = [BENCH, "milvus", "--endpoint", endpoint, "--access-key", AK, "--secret-key", SK, "--json",
           "--bucket", "milvus", "--phases", phases, "--segments", str(a.milvus_segments),
           "--scale", str(a.milvus_scale), "--search-requests", str(a.milvus_search_requests)]
    if client_cpu is not None:
        cmd += ["--pin-cores", client_cpu]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"bale-bench milvus failed: {r.stderr[-2000:]}")
    return {rep["name"]: rep for rep in json.loads(r.stdout)["reports"]}


def finish(out, work, procs, runs, lines):
    """Stops what ran, keeps its logs, writes runs.json and RESULTS.md (also printed)."""
    for p in reversed(procs):
        p.stop()
    for f in os.listdir(work):
        if f.endswith(".log"):
            shutil.copy(os.path.join(work, f), out)
    shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(out, "runs.json"), "w") as f:
        json.dump(runs, f, indent=1)
    if lines is None:
        return
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write(text)
    print(text)
    log(f"wrote {out}")


def medians(rows, fields):
    return {k: statistics.median(r[k] for r in rows) for k in fields}


def miss_stages(endpoint):
    """{stage: {"p50": µs, "p90": µs, "mean": µs, "count": n}} of the gateway's
    bale_gateway_miss_stage_seconds summary (src/gateway/stages.rs); {} from a binary without it."""
    text = urllib.request.urlopen(endpoint + "/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if not line.startswith("bale_gateway_miss_stage_seconds"):
            continue
        name, val = line.rsplit(" ", 1)
        stage = name.split('stage="', 1)[1].split('"', 1)[0]
        d = out.setdefault(stage, {})
        if 'quantile="0.5"' in name:
            d["p50"] = float(val) * 1e6
        elif 'quantile="0.9"' in name:
            d["p90"] = float(val) * 1e6
        elif name.startswith("bale_gateway_miss_stage_seconds_sum"):
            d["sum"] = float(val) * 1e6
        elif name.startswith("bale_gateway_miss_stage_seconds_count"):
            d["count"] = float(val)
    for d in out.values():
        d["mean"] = d.get("sum", 0.0) / d["count"] if d.get("count") else 0.0
    return {k: v for k, v in out.items() if v.get("count")}


# The direct row a miss row is compared with: the same requests sent straight to SeaweedFS.
DIRECT = {"GET 4 KiB": "seaweedfs (miss keys)", "ranged 4 KiB in 64 MiB": "seaweedfs (miss ranges)"}

STAGE_ORDER = ["hook", "hop", "prepare", "flight", "sign", "conn", "write", "upstream", "body",
               "range_bytes", "fill"]


def upstream_seconds(endpoint):
    """(sum s, count) of the gateway's upstream request durations (its /metrics)."""
    text = urllib.request.urlopen(endpoint + "/metrics", timeout=5).read().decode()
    vals = {}
    for line in text.splitlines():
        for k in ("sum", "count"):
            if line.startswith(f"bale_gateway_upstream_duration_seconds_{k} "):
                vals[k] = float(line.split()[1])
    return vals.get("sum", 0.0), vals.get("count", 0.0)


def main_milvus(a, out, work, commit, stamp, server_cpus, client_cpu):
    """Milvus segment-load replay: SeaweedFS direct vs a gateway cold (empty) and warm."""
    procs, runs = [], []
    try:
        weed = start_weed(work, None)
        procs.append(weed)
        log("building the Milvus bucket on SeaweedFS")
        milvus(weed.endpoint, "build", a, None)
        gw_args = ["--upstream", weed.endpoint, "--upstream-access-key", AK, "--upstream-secret-key", SK]
        for rep in range(a.repeats):
            gw = start_bale("gw", work, server_cpus, gw_args)  # fresh data dir: cold
            try:
                for tname, ep in [("seaweedfs", weed.endpoint), ("gw-cold", gw.endpoint),
                                  ("gw-warm", gw.endpoint)]:
                    r = milvus(ep, "load,search", a, client_cpu)
                    seg = r["load segment"]
                    search = next(v for k, v in r.items() if k.startswith("search"))
                    row = {"target": tname, "repeat": rep,
                           "load_wall_s": seg["extra"]["load_wall_s"],
                           "load_mb_per_s": seg["extra"]["load_mb_per_s"],
                           "search_p50_us": search["p50_us"], "search_p99_us": search["p99_us"],
                           "search_req_per_s": search["req_per_s"],
                           "errors": sum(v["errors"] for v in r.values())}
                    runs.append(row)
                    log(f"milvus {tname:10} load {row['load_wall_s']:.3f} s ({row['load_mb_per_s']:.0f} MB/s)  "
                        f"search p50 {row['search_p50_us']:.0f} us p99 {row['search_p99_us']:.0f} us  "
                        f"errors {row['errors']}")
            finally:
                gw.stop()
    except BaseException:
        finish(out, work, procs, runs, None)
        raise
    lines = [f"# Gateway, Milvus segment-load replay: `scripts/bench-gateway.py --milvus --repeats {a.repeats} "
             f"--milvus-segments {a.milvus_segments} --milvus-scale {a.milvus_scale}`", "",
             f"Commit {commit}, {stamp}. Medians over repeats. gw-cold: a gateway started empty; gw-warm: "
             "the same gateway right after.", "",
             "| target | runs | load wall s | load MB/s | search p50 µs | search p99 µs | search req/s | errors | load ÷ seaweedfs |",
             "|---|---|---|---|---|---|---|---|---|"]
    med = {}
    for t in ["seaweedfs", "gw-cold", "gw-warm"]:
        rs = [r for r in runs if r["target"] == t]
        med[t] = m = medians(rs, ["load_wall_s", "load_mb_per_s", "search_p50_us", "search_p99_us", "search_req_per_s"])
        lines.append(f"| {t} | {len(rs)} | {m['load_wall_s']:.3f} | {m['load_mb_per_s']:.0f} | "
                     f"{m['search_p50_us']:.0f} | {m['search_p99_us']:.0f} | {m['search_req_per_s']:.0f} | "
                     f"{sum(r['errors'] for r in rs)} | {m['load_wall_s'] / med['seaweedfs']['load_wall_s']:.2f}× |")
    finish(out, work, procs, runs, lines)


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--repeats", type=int, default=3)
    o.add_argument("--duration", default="5s")
    o.add_argument("--count", type=int, default=2000, help="4 KiB objects")
    o.add_argument("--miss-count", type=int, default=20000, help="4 KiB objects for the miss runs")
    o.add_argument("--miss-requests", type=int, default=300)
    o.add_argument("--miss-block-kb", type=int, default=64)
    o.add_argument("--misses-only", action="store_true",
                   help="only the miss rows and SeaweedFS direct (no plain bale, no hit gateway)")
    o.add_argument("--bins", default=None,
                   help="label=path,... of bale binaries run alternately (default: the build's bale)")
    o.add_argument("--weed-cpus", default=None,
                   help="SeaweedFS CPU layouts for the miss rows, comma-separated (`all` = unpinned; "
                        "default: the client's CPU)")
    o.add_argument("--milvus", action="store_true", help="run the Milvus segment-load replay instead")
    o.add_argument("--milvus-segments", type=int, default=2)
    o.add_argument("--milvus-scale", type=float, default=0.25)
    o.add_argument("--milvus-search-requests", type=int, default=500)
    a = o.parse_args()
    ncpu = os.cpu_count() or 1
    server_cpus = "0" if ncpu >= 2 else None
    client_cpu = str(ncpu - 1) if ncpu >= 2 else None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = os.path.join(ROOT, "bench", "results", f"gateway{'-milvus' if a.milvus else ''}-{stamp}-{commit}")
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench-gw-")
    if a.milvus:
        return main_milvus(a, out, work, commit, stamp, server_cpus, client_cpu)
    bins = parse_bins(a.bins) if a.bins else [("", BALE, [])]
    layouts = (a.weed_cpus or client_cpu or "all").split(",")
    lay = lambda t, lo: f"{t} [weed {lo}]" if len(layouts) > 1 else t  # noqa: E731
    at = lambda t, label: f"{t}@{label}" if label else t  # noqa: E731
    procs, runs = [], []

    def record(sname, tname, rep, r, **extra):
        runs.append({"scenario": sname, "target": tname, "repeat": rep, **r, **extra})
        up = f"  upstream (in gw) mean {extra['upstream_mean_us']:8.1f} us" if "upstream_mean_us" in extra else ""
        log(f"{sname:24} {tname:22} p50 {r['p50_us']:8.1f} us  p99 {r['p99_us']:8.1f} us  "
            f"{r['req_per_s']:8.0f} req/s  errors {r['errors']}{up}")

    try:
        weed = start_weed(work, None)
        procs.append(weed)
        gw_args = ["--upstream", weed.endpoint, "--upstream-access-key", AK, "--upstream-secret-key", SK,
                   "--metrics-public"]
        plain, hit = {}, {}
        for label, path, flags in ([] if a.misses_only else bins):
            plain[label] = start_bale(at("bale", label), work, server_cpus, flags, bin_path=path)
            procs.append(plain[label])
        log("loading objects")
        for ep in [p.endpoint for p in plain.values()] + [weed.endpoint]:
            load(ep, ["-n", str(a.count), "--size", "4k", "--prefix", "s4k/"])
            load(ep, ["-n", "1", "--size", "64m", "--prefix", "big/"])
        load(weed.endpoint, ["-n", str(a.miss_count), "--size", "4k", "--prefix", "m4k/"])
        for label, path, flags in ([] if a.misses_only else bins):
            hit[label] = start_bale(at("gw-hit", label), work, server_cpus, gw_args + flags, bin_path=path)
            procs.append(hit[label])
            # Fill the hit gateway: every 4 KiB object, and the big object's blocks.
            log(f"filling the hit gateway {label}")
            bench(hit[label].endpoint, ["-n", str(a.count), "--size", "4k", "--prefix", "s4k/", "-c", "4",
                                        "--requests", str(a.count * 8)], None)
            bench(hit[label].endpoint, ["-n", "1", "--size", "64m", "--prefix", "big/", "--range", "4k",
                                        "--range-align", "4096", "-c", "4", "--requests", "3000"], None)
        scen = {
            "GET 4 KiB": ["-n", str(a.count), "--size", "4k", "--prefix", "s4k/"],
            "ranged 4 KiB in 64 MiB": ["-n", "1", "--size", "64m", "--prefix", "big/", "--range", "4k",
                                       "--range-align", "4096"],
        }
        for rep in range(a.repeats):
            for sname, sargs in scen.items():
                targets = [(at(t, label), d[label]) for label, _, _ in bins
                           for t, d in (("bale", plain), ("gw-hit", hit)) if label in d]
                weed_pin(weed, "all")
                for tname, p in targets + [("seaweedfs", weed)]:
                    r = bench(p.endpoint, [*sargs, "-c", "1", "-d", a.duration, "--warmup", "1s"], client_cpu)
                    record(sname, tname, rep, r)
                # Misses: a fresh gateway each run; the same requests straight to SeaweedFS.
                extra = ["--upstream-block-kb", str(a.miss_block_kb)] if "ranged" in sname else []
                margs = (["-n", str(a.miss_count), "--size", "4k", "--prefix", "m4k/"] if "ranged" not in sname
                         else sargs)
                for lo in layouts:
                    for label, path, flags in bins:
                        miss = start_bale("gw-miss", work, server_cpus, gw_args + extra + flags, bin_path=path)
                        weed_pin(weed, lo)
                        try:
                            r = bench(miss.endpoint, [*margs, "-c", "1", "--requests", str(a.miss_requests)],
                                      client_cpu)
                            up_s, up_n = upstream_seconds(miss.endpoint)
                            stages = miss_stages(miss.endpoint)
                        finally:
                            miss.stop()
                        record(sname, lay(at("gw-miss", label), lo), rep, r,
                               upstream_mean_us=up_s / max(up_n, 1) * 1e6, stages=stages, layout=lo)
                    weed_pin(weed, lo)
                    # The same requests straight to SeaweedFS, placed as in the miss rows.
                    r = bench(weed.endpoint, [*margs, "-c", "1", "--requests", str(a.miss_requests)], client_cpu)
                    record(sname, lay(DIRECT[sname], lo), rep, r, layout=lo)
                    if "ranged" in sname:
                        # The gateway's own upstream requests, sent by the client: the aligned
                        # blocks of --miss-block-kb that the misses fetch.
                        bk = a.miss_block_kb
                        r = bench(weed.endpoint, ["-n", "1", "--size", "64m", "--prefix", "big/", "--range", f"{bk}k",
                                                  "--range-align", str(bk * 1024), "-c", "1",
                                                  "--requests", str(a.miss_requests)], client_cpu)
                        record(sname, lay(f"seaweedfs ({bk} KiB blocks)", lo), rep, r, layout=lo)
                weed_pin(weed, "all")
    except BaseException:
        finish(out, work, procs, runs, None)
        raise
    names = ", ".join(f"{label} = {' '.join([path, *flags])}" for label, path, flags in bins if label)
    lines = [f"# Gateway tier (issue 15): `scripts/bench-gateway.py --repeats {a.repeats} --duration {a.duration}"
             f"{' --bins ' + a.bins if a.bins else ''}`",
             "", f"Commit {commit}, {stamp}, {ncpu} CPUs (servers on CPU {server_cpus}, client on CPU {client_cpu}; "
             f"SeaweedFS unpinned for the hit rows; for the miss rows and their direct rows on CPUs "
             f"{', '.join(layouts)} (`all` = unpinned)). c=1, medians of the runs' p50 / p99 / req/s, latencies in µs. "
             f"Misses: fresh gateway per run, {a.miss_requests} requests over {a.miss_count} keys "
             f"(ranged: {a.miss_block_kb} KiB blocks); `upstream (in gw)`: the mean upstream request time "
             f"the gateway measured during the miss run.{' Binaries: ' + names + '.' if names else ''}", "",
             "| scenario | target | runs | p50 µs | p99 µs | req/s | errors | p50 ÷ bale | p50 − seaweedfs | upstream (in gw) µs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for sname in scen:
        rows = {}
        for r in runs:
            if r["scenario"] == sname:
                rows.setdefault(r["target"], []).append(r)
        base = statistics.median(r["p50_us"] for r in rows["seaweedfs"])
        for tname, rs in rows.items():
            m = medians(rs, ["p50_us", "p99_us", "req_per_s"])
            label = tname.split("@")[1] if "@" in tname else ""
            plain_rows = rows.get(at("bale", label))
            ratio = m["p50_us"] / statistics.median(r["p50_us"] for r in plain_rows) if plain_rows else float("nan")
            lo = rs[0].get("layout")
            miss_base = (rows.get(lay(DIRECT[sname], lo)) if tname.startswith("gw-miss")
                         and lo is not None else None)
            over = m["p50_us"] - (statistics.median(r["p50_us"] for r in miss_base) if miss_base else base)
            up = (f"{statistics.median(r['upstream_mean_us'] for r in rs):.0f}"
                  if "upstream_mean_us" in rs[0] else "")
            lines.append(f"| {sname} | {tname} | {len(rs)} | {m['p50_us']:.1f} | {m['p99_us']:.1f} | "
                         f"{m['req_per_s']:.0f} | {sum(r['errors'] for r in rs)} | "
                         f"{'' if tname.startswith(('gw-miss', 'seaweedfs')) else f'{ratio:.2f}×'} | "
                         f"{'' if tname.startswith(('bale', 'gw-hit', 'seaweedfs')) else f'{over:+.1f}'} | {up} |")
    lines += ["", "`p50 − seaweedfs`: of a GET 4 KiB miss, against `seaweedfs (miss keys)` (the same requests "
              "sent straight to SeaweedFS); of a ranged miss, against `seaweedfs (miss ranges)` (the same 4 KiB "
              "ranges), each with SeaweedFS placed as in the miss row (`[weed L]`). "
              "`seaweedfs (N KiB blocks)`: the aligned block ranges a ranged miss fetches, sent by the client."]
    # Where a miss's time goes, as the gateway measured it (src/gateway/stages.rs).
    staged = [r for r in runs if r.get("stages")]
    if staged:
        lines += ["", "## Miss stages (the gateway's own `bale_gateway_miss_stage_seconds`; medians over repeats)",
                  "", "| scenario | target | stage | count per run | p50 µs | p90 µs | mean µs |", "|---|---|---|---|---|---|---|"]
        for sname in scen:
            for tname in sorted({r["target"] for r in staged if r["scenario"] == sname}):
                rs = [r for r in staged if r["scenario"] == sname and r["target"] == tname]
                for st in STAGE_ORDER:
                    vals = [r["stages"][st] for r in rs if st in r["stages"]]
                    if not vals:
                        continue
                    med = lambda f: statistics.median(v.get(f, 0.0) for v in vals)  # noqa: E731
                    lines.append(f"| {sname} | {tname} | {st} | {med('count'):.0f} | {med('p50'):.0f} | "
                                 f"{med('p90'):.0f} | {med('mean'):.0f} |")
        lines += ["", "`hook`: the fast path's hook from its entry to the answer built (a miss in bale but the "
                  "front's parse, signature check and answer write); `hop`: to the owner core; `prepare`: the "
                  "owner core's decision, upstream request included; `sign` / `conn` / `write` / `upstream`: "
                  "the upstream request (SigV4 and head, pooled connection, write, then until the answer head "
                  "was parsed); `body`: a small miss's body after its head; `range_bytes`: a ranged miss, head "
                  "to the requested bytes; `fill`: the local store in the background, after the answer."]
    finish(out, work, procs, runs, lines)


if __name__ == "__main__":
    main()
