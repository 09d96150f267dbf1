#!/usr/bin/env python3
"""Turn a bench-peers run directory into a Markdown report and a latency plot.

    scripts/bench-report.py RUN_DIR [--quick]

Full runs write bench/RESULTS.md (and RUN_DIR/latency.svg); quick runs write RUN_DIR/RESULTS.md.
Medians are over the repeated runs of each scenario; ratios are bale's value divided by the
peer's (below 1.00 = bale lower latency; for req/s and MB/s above 1.00 = bale faster).
"""

import glob
import json
import os
import re
import shutil
import statistics
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER = ["bale", "bale-base", "bale-spin", "seaweedfs", "s3s-fs-nodelay", "s3s-fs", "nginx"]


def load(run):
    """The run's meta and every raw bale-bench document, from raw/ or from raw.tar.xz."""
    meta = json.load(open(os.path.join(run, "meta.json")))
    docs = {}
    packed = os.path.join(run, RAW_PACK)
    if not os.path.isdir(os.path.join(run, "raw")) and os.path.exists(packed):
        with tarfile.open(packed) as t:
            for m in t.getmembers():
                if m.isfile() and m.name.endswith(".json"):
                    d = json.load(t.extractfile(m))
                    docs.setdefault(d["server"], {})[d["tag"]] = d
        return meta, docs
    for f in glob.glob(os.path.join(run, "raw", "*", "*.json")):
        d = json.load(open(f))
        docs.setdefault(d["server"], {})[d["tag"]] = d
    return meta, docs


RAW_PACK = "raw.tar.xz"


def pack_raw(run):
    """Replaces the run's raw/ folder (hundreds of JSON files) by one raw.tar.xz, so the
    repository stays light; load() reads either."""
    raw = os.path.join(run, "raw")
    if not os.path.isdir(raw):
        return
    with tarfile.open(os.path.join(run, RAW_PACK), "w:xz") as t:
        t.add(raw, arcname="raw")
    shutil.rmtree(raw)


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, nd=0):
    if v is None:
        return "–"
    if nd == 0:
        return f"{v:,.0f}"
    return f"{v:,.{nd}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fr(r):
    if r is None:
        return "–"
    return f"{r:.3f}×" if r < 0.1 else f"{r:.2f}×"


class Data:
    def __init__(self, meta, docs):
        self.meta = meta
        self.docs = docs
        self.servers = [s for s in ORDER if s in docs] + sorted(s for s in docs if s not in ORDER)

    def reports(self, server, base, name=None):
        """All repeats' reports for a scenario base tag (tag-rN), optionally the named phase."""
        out = []
        for tag, d in self.docs.get(server, {}).items():
            if re.fullmatch(re.escape(base) + r"(-r\d+)?", tag):
                for r in d.get("reports", []):
                    if name is None or r["name"].startswith(name):
                        out.append(r)
                        if name is None:
                            break
        return out

    def stat(self, server, base, key, name=None):
        return med([r.get(key) for r in self.reports(server, base, name)])

    def errors(self, server, base):
        return sum(d.get("meta", {}).get("errors", 0) or sum(r["errors"] for r in d.get("reports", []))
                   for tag, d in self.docs.get(server, {}).items() if tag.startswith(base))

    def runs(self, server, base):
        return len([t for t in self.docs.get(server, {}) if re.fullmatch(re.escape(base) + r"(-r\d+)?", t)])

    def failed(self, server, base):
        return [d["failed"] for t, d in self.docs.get(server, {}).items()
                if re.fullmatch(re.escape(base) + r"(-r\d+)?", t) and d.get("failed")]


def scenarios(meta):
    s = []
    for kind, label in [("get-4k", "GET 4 KiB"), ("head-4k", "HEAD 4 KiB"), ("get-64k", "GET 64 KiB"),
                        ("range-4k-in-8m", "ranged GET 4 KiB in 8 MiB"),
                        ("range-4k-in-64m", "ranged GET 4 KiB in 64 MiB"),
                        ("footer-64k-in-8m", "footer GET (last 64 KiB) of 8 MiB")]:
        for c in meta["conc"]:
            s.append((f"{kind}-c{c}", f"{label}, c={c}"))
    return s


def table(rows, header):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def plot(d, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    picks = [t for t in ["get-4k-c1", "get-64k-c1", "range-4k-in-8m-c1", "get-4k-c16", "get-64k-c16",
                         "range-4k-in-8m-c16"] if any(d.reports(s, t) for s in d.servers)]
    if not picks:
        return False
    cols = 3
    rows = (len(picks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    qs = [("min", "min_us"), ("p50", "p50_us"), ("p90", "p90_us"), ("p99", "p99_us"), ("p99.9", "p999_us"),
          ("max", "max_us")]
    for i, t in enumerate(picks):
        ax = axes[i // cols][i % cols]
        for s in d.servers:
            ys = [d.stat(s, t, k) for _, k in qs]
            if all(y is None for y in ys):
                continue
            ax.plot([q for q, _ in qs], ys, marker="o", label=s)
        ax.set_yscale("log")
        ax.set_title(t + " (warm, median of runs)")
        ax.set_ylabel("latency µs (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for j in range(len(picks), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"bale {d.meta['commit'][:9]} vs peers, loopback, {d.meta['machine']['nproc']} cores")
    fig.tight_layout()
    fig.savefig(path)
    fig.savefig(path[:-4] + ".png", dpi=80)
    return True


def targets(d, L):
    """Issue 7's targets, each with bale's figure, the limit it is held to, and the verdict."""
    if "bale" not in d.servers:
        return
    rows = []

    def st(server, tag, key):
        return d.stat(server, tag, key)

    def add(target, val, limit, ok_if_le, unit):
        if val is None or limit is None:
            rows.append([target, fmt(val, 1), fmt(limit, 1), "–", "not measured"])
            return
        met = val <= limit if ok_if_le else val >= limit
        rows.append([target, f"{fmt(val, 1)} {unit}", f"{'≤' if ok_if_le else '≥'} {fmt(limit, 1)} {unit}",
                     fr(ratio(val, limit)), "**met**" if met else "**not met**"])

    nginx = "nginx" if "nginx" in d.servers else None
    weed = "seaweedfs" if "seaweedfs" in d.servers else None
    fio = {}
    for qd, reps in (d.meta.get("fio") or {}).items():
        if reps:
            fio[qd] = {k: med([r[k] for r in reps]) for k in ("iops", "p50_us")}
    for c in (16, 64):
        t = f"get-4k-c{c}"
        n = st(nginx, t, "req_per_s") if nginx else None
        add(f"warm GET 4 KiB c={c}: req/s ≥ 0.6 × nginx", st("bale", t, "req_per_s"), n and 0.6 * n, False, "req/s")
    n = st(nginx, "get-4k-c1", "p50_us") if nginx else None
    add("warm GET 4 KiB c=1: p50 ≤ 1.5 × nginx", st("bale", "get-4k-c1", "p50_us"), n and 1.5 * n, True, "µs")
    n = st(nginx, "get-4k-c16", "p99_us") if nginx else None
    add("warm GET 4 KiB c=16: p99 ≤ 2 × nginx", st("bale", "get-4k-c16", "p99_us"), n and 2 * n, True, "µs")
    for c in (16, 64):
        w = st(weed, f"get-4k-c{c}", "req_per_s") if weed else None
        add(f"warm GET 4 KiB c={c}: req/s ≥ 10 × SeaweedFS", st("bale", f"get-4k-c{c}", "req_per_s"),
            w and 10 * w, False, "req/s")
    n = st(nginx, "get-4k-c1", "p50_us") if nginx else None
    q1 = fio.get("qd1", {}).get("p50_us")
    add("cold GET 4 KiB c=1: p50 ≤ nginx warm p50 + 1.2 × fio QD1 p50", st("bale", "cold-get-4k-c1", "p50_us"),
        None if n is None or q1 is None else n + 1.2 * q1, True, "µs")
    q32 = fio.get("qd32", {}).get("iops")
    add("cold GET 4 KiB c=32 (cache off): req/s ≥ 0.8 × fio QD32 IOPS", st("bale", "cold-get-4k-c32", "req_per_s"),
        q32 and 0.8 * q32, False, "req/s")
    whole1 = st("bale", "get-4k-c1", "p50_us")
    whole16 = st("bale", "get-4k-c16", "p50_us")
    for big in ("8m", "64m"):
        label = "8 MiB" if big == "8m" else "64 MiB"
        add(f"warm ranged 4 KiB in {label} c=1: p50 ≤ 1.2 × whole 4 KiB GET", st("bale", f"range-4k-in-{big}-c1", "p50_us"),
            whole1 and 1.2 * whole1, True, "µs")
        add(f"warm ranged 4 KiB in {label} c=16: p50 ≤ 1.2 × whole 4 KiB GET",
            st("bale", f"range-4k-in-{big}-c16", "p50_us"), whole16 and 1.2 * whole16, True, "µs")
        cw = st("bale", "cold-get-4k-c1", "p50_us")
        add(f"cold ranged 4 KiB in {label} c=1: p50 ≤ 1.2 × cold whole 4 KiB GET",
            st("bale", f"cold-range-4k-in-{big}-c1", "p50_us"), cw and 1.2 * cw, True, "µs")
    add("warm HEAD c=1: p50 ≤ 1.2 × whole 4 KiB GET", st("bale", "head-4k-c1", "p50_us"), whole1 and 1.2 * whole1,
        True, "µs")
    g64 = st("bale", "get-64k-c1", "p50_us")
    add("warm footer 64 KiB of 8 MiB c=1: p50 ≤ 1.2 × whole 64 KiB GET", st("bale", "footer-64k-in-8m-c1", "p50_us"),
        g64 and 1.2 * g64, True, "µs")
    base99 = st("bale", "get-4k-c16", "p99_us")
    add("mixed (PUT stream at 30 % + compaction): GET 4 KiB c=16 p99 ≤ 1.5 × alone",
        st("bale", "mixed-get-4k-c16", "p99_us"), base99 and 1.5 * base99, True, "µs")
    L.append("## Issue 7 targets on this run (bale, medians of runs)\n")
    L.append(table(rows, ["target", "bale", "limit", "bale ÷ limit", "verdict"]))
    put = [r for r in d.docs.get("bale", {}).values() if r.get("tag", "").startswith("mixed-put") and r.get("reports")]
    if put:
        got = med([r["reports"][0]["req_per_s"] for r in put])
        want = med([r.get("target_rate") for r in put])
        L.append(f"\nMixed run: the background stream overwrote 64 KiB objects at {fmt(got, 0)} PUT/s "
                 f"(target {fmt(want, 0)} = 30 % of the load phase's {fmt(med([r.get('capacity_req_per_s') for r in put]), 0)} "
                 "PUT/s, 4 connections); bale compacts every second at 5 % garbage.")
    if "bale-spin" in d.servers:
        L.append("\nSpin before park (`bale-spin` = bale `--spin-us 50`), bale-spin ÷ bale: " + ", ".join(
            f"{t} p50 {fr(ratio(st('bale-spin', t, 'p50_us'), st('bale', t, 'p50_us')))}"
            for t in ("get-4k-c1", "get-4k-c16", "range-4k-in-8m-c1")))
    L.append("")


def main():
    run = sys.argv[1].rstrip("/")
    quick = "--quick" in sys.argv[2:]
    meta, docs = load(run)
    d = Data(meta, docs)
    S = d.servers
    peers = [s for s in S if not s.startswith("bale")]
    out_md = os.path.join(run, "RESULTS.md") if quick else os.path.join(ROOT, "bench", "RESULTS.md")
    rel = os.path.relpath(run, os.path.dirname(out_md))
    svg = os.path.join(run, "latency.svg")
    have_plot = plot(d, svg)
    m = meta["machine"]
    L = []
    L.append("# bale vs peers: benchmark results\n")
    L.append(f"Generated by `scripts/bench-peers.sh{' --quick' if quick else ''}` "
             f"(then `scripts/bench-report.py {os.path.relpath(run, ROOT)}`), run {meta['started']}–{meta.get('finished', '?')}.\n")
    L.append(f"- **commit** `{meta['commit']}`" + (" (src/ or io/ had uncommitted changes)" if meta.get("dirty_src") else ""))
    L.append(f"- **machine** {m['cpu']}, {m['nproc']} vCPU ({m['virt'] or 'bare metal?'}), {m['mem']}, {m['os']}, "
             f"kernel {m['kernel']}, disk `{m['disk']}`")
    L.append(f"- load average at start / end: `{m['loadavg_start']}` / `{m.get('loadavg_end', '?')}` "
             "(other engineers' builds share this machine: tails are noisy, compare within this run only)")
    L.append(f"- servers pinned with `taskset -c {meta['server_cpus']}`, bale-bench pinned to CPUs "
             f"`{meta['client_cpus']}`; bale runs `--cores {len(expand(meta['server_cpus'])) if meta['server_cpus'] else m['nproc']}`, "
             "nginx the same number of workers")
    L.append(f"- each timed scenario: {meta['duration_s']} s, repeated {meta['repeats']}×, table cells are the "
             "**median over the repeats** of each run's percentile; every response verified (status, length, bytes)")
    desc = {"bale-spin": "bale-spin (the same bale with `--spin-us 50`)",
            "bale-base": "bale-base (the same flags on the build in `BENCH_BALE_BASE_BIN`: the before of a before/after)",
            "seaweedfs": f"SeaweedFS `{m['weed']}`",
            "s3s-fs": "s3s-fs 0.14.1 (shipped binary, no TCP_NODELAY)",
            "s3s-fs-nodelay": "s3s-fs-nodelay (same library, TCP_NODELAY listener: bench/s3s-fs-nodelay)",
            "nginx": f"{m['nginx']} (plain files, unsigned GETs: the no-S3 floor)"}
    L.append("- servers in this run: " + ", ".join(desc.get(s, s) for s in S if s != "bale")
             + "; fio " + m["fio"])
    L.append("- exact commands: [`commands.txt`](" + rel + "/commands.txt); raw JSON per run: [`raw.tar.xz`](" + rel + "/raw.tar.xz)\n")
    if meta.get("failures"):
        L.append("**Failures in this run** (each counted, the run went on):\n")
        for f in meta["failures"]:
            L.append(f"- `{f[:400]}`")
        L.append("")

    targets(d, L)

    # headline
    L.append("## Headline (warm, µs, median of runs)\n")
    hl = []
    for t, label in scenarios(meta):
        if not any(d.reports(s, t) for s in S):
            continue
        row = [label]
        for s in S:
            p50, p99 = d.stat(s, t, "p50_us"), d.stat(s, t, "p99_us")
            row.append(f"{fmt(p50, 1)} / {fmt(p99, 1)}")
        hl.append(row)
    L.append("p50 / p99 latency in µs:\n")
    L.append(table(hl, ["scenario"] + S))
    L.append("")
    if have_plot:
        L.append(f"![latency percentiles]({rel}/latency.svg)\n")

    for key, title, nd in [("p50_us", "p50 µs", 1), ("p90_us", "p90 µs", 1), ("p99_us", "p99 µs", 1),
                           ("p999_us", "p99.9 µs", 1), ("max_us", "max µs", 0), ("req_per_s", "req/s", 0),
                           ("mb_per_s", "MB/s", 1)]:
        rows = []
        for t, label in scenarios(meta):
            if not any(d.reports(s, t) for s in S):
                continue
            rows.append([label] + [fmt(d.stat(s, t, key), nd) for s in S])
        L.append(f"### GET {title} (warm)\n")
        L.append(table(rows, ["scenario"] + S))
        L.append("")

    if "bale" in S and peers:
        L.append("## Ratios: bale ÷ peer (warm, medians)\n")
        L.append("Latency ratios below 1.00× mean bale is faster; req/s ratios above 1.00× mean bale serves more.\n")
        rows = []
        for t, label in scenarios(meta):
            if not d.reports("bale", t):
                continue
            row = [label]
            for p in peers:
                row.append(" / ".join(fr(ratio(d.stat("bale", t, k), d.stat(p, t, k)))
                                      for k in ("p50_us", "p99_us", "req_per_s")))
            rows.append(row)
        L.append("p50 / p99 / req/s:\n")
        L.append(table(rows, ["scenario"] + [f"vs {p}" for p in peers]))
        L.append("")
        behind = []
        for t, label in scenarios(meta):
            for p in peers:
                for k, what in (("p50_us", "p50"), ("p99_us", "p99")):
                    r = ratio(d.stat("bale", t, k), d.stat(p, t, k))
                    if r is not None and r > 1.05:
                        behind.append(f"- {label}: bale's {what} is {r:.2f}× {p}'s "
                                      f"({fmt(d.stat('bale', t, k), 1)} vs {fmt(d.stat(p, t, k), 1)} µs)")
        L.append("### Where bale is behind (computed: bale worse by more than 5%)\n")
        L.extend(behind or ["- nowhere in this run"])
        L.append("")

    # cold
    cold = [("cold-get-4k-c1", "GET 4 KiB, c=1, first reads after restart + drop_caches"),
            ("cold-range-4k-in-8m-c1", "ranged GET 4 KiB in 8 MiB, c=1, after restart + drop_caches"),
            ("cold-range-4k-in-64m-c1", "ranged GET 4 KiB in 64 MiB, c=1, after restart + drop_caches"),
            ("cold-get-4k-c32", "GET 4 KiB, c=32 (bale: cache off; others: after restart + drop_caches)")]
    if any(d.reports(s, t) for s in S for t, _ in cold):
        L.append("## Cold reads (server restarted, page cache dropped; µs, median of runs)\n")
        rows = []
        for t, label in cold:
            rows.append([label] + [f"{fmt(d.stat(s, t, 'p50_us'), 1)} / {fmt(d.stat(s, t, 'p99_us'), 1)} / "
                                   f"{fmt(d.stat(s, t, 'max_us'), 0)} / {fmt(d.stat(s, t, 'req_per_s'), 0)}"
                                   for s in S])
        L.append("p50 / p99 / max µs / req/s:\n")
        L.append(table(rows, ["scenario"] + S))
        L.append("")

    # milvus
    ms = [s for s in S if d.reports(s, "milvus-warm")]
    if ms:
        L.append("## Milvus segment-load replay\n")
        L.append("`bale-bench milvus`: ListObjectsV2 (with and without delimiter), HEAD, Parquet-style footer and "
                 "row-group ranged GETs of insert binlogs, whole GETs of stats/delta logs and 16 MiB index slices, "
                 "then a search phase of random 4 KiB–1 MiB ranged GETs (c=16). Load time is the wall time to load "
                 "all segments (4 at once).\n")
        rows = []
        for label, base, name, key in [
            ("load wall time, warm (s)", "milvus-warm", "load segment", "elapsed_s"),
            ("load wall time, cold (s)", "milvus-cold", "load segment", "elapsed_s"),
            ("load MB/s, warm", "milvus-warm", "load segment", "mb_per_s"),
            ("load MB/s, cold", "milvus-cold", "load segment", "mb_per_s"),
            ("LIST p50 µs (warm)", "milvus-warm", "load list", "p50_us"),
            ("HEAD p50 µs (warm)", "milvus-warm", "load head", "p50_us"),
            ("whole GET p50 µs (warm)", "milvus-warm", "load get whole", "p50_us"),
            ("ranged GET p50 µs (warm)", "milvus-warm", "load get range", "p50_us"),
            ("ranged GET p99 µs (warm)", "milvus-warm", "load get range", "p99_us"),
            ("search p50 µs", "milvus-warm", "search", "p50_us"),
            ("search p99 µs", "milvus-warm", "search", "p99_us"),
            ("search p99.9 µs", "milvus-warm", "search", "p999_us"),
            ("search req/s", "milvus-warm", "search", "req_per_s"),
            ("search MB/s", "milvus-warm", "search", "mb_per_s"),
        ]:
            nd = 2 if key == "elapsed_s" else (1 if key.endswith("_us") or key == "mb_per_s" else 0)
            rows.append([label] + [fmt(d.stat(s, base, key, name), nd) for s in ms])
        L.append(table(rows, ["metric"] + ms))
        L.append("")

    # PUT
    L.append("## PUT throughput (load phase, 8 connections; 4 for 8 MiB)\n")
    rows = []
    for t, label in [("put-4k", "4 KiB"), ("put-64k", "64 KiB"), ("put-8m", "8 MiB"), ("milvus-build", "Milvus layout")]:
        row = [label]
        for s in S:
            if s == "nginx":
                row.append("(files)")
                continue
            r = d.reports(s, t)
            row.append("–" if not r else f"{fmt(r[0]['req_per_s'])} obj/s, {fmt(r[0]['mb_per_s'], 1)} MB/s, "
                                         f"p50 {fmt(r[0]['p50_us'], 0)} µs")
        rows.append(row)
    L.append(table(rows, ["objects"] + S))
    L.append("")

    # footprint
    L.append("## Storage footprint (same objects: the 4 KiB, 64 KiB and 8 MiB sets plus the Milvus layout)\n")
    rows = []
    for s in S:
        info = meta["servers"].get(s, {})
        fp = info.get("footprint")
        if not fp:
            continue
        logical = info.get("logical_bytes", 0)
        mv = d.docs.get(s, {}).get("milvus-build", {}).get("meta", {}).get("total_bytes", 0)
        logical += mv or 0
        rows.append([s, f"{logical / 1e6:,.1f}", f"{fp['allocated_bytes'] / 1e6:,.1f}",
                     f"{fp['apparent_bytes'] / 1e6:,.1f}",
                     fr(ratio(fp["allocated_bytes"], logical))])
    L.append(table(rows, ["server", "object bytes MB", "du allocated MB", "du apparent MB", "allocated ÷ objects"]))
    L.append("\n(nginx holds only the 4 KiB/64 KiB/8 MiB sets as files, no Milvus layout.)\n")

    # fio
    if meta.get("fio"):
        L.append("## Device floor: fio random 4 KiB reads, io_uring, O_DIRECT (same filesystem)\n")
        rows = []
        for qd, reps in meta["fio"].items():
            if not reps:
                continue
            rows.append([qd] + [fmt(med([r[k] for r in reps]), 1) for k in ("iops", "p50_us", "p99_us", "p999_us")])
        L.append(table(rows, ["queue depth", "IOPS", "p50 µs", "p99 µs", "p99.9 µs"]))
        L.append("")

    L.append("## Reproduce\n")
    L.append("```\nscripts/bench-peers.sh            # full run, rewrites this file\n"
             "scripts/bench-peers.sh --quick    # a few minutes, writes bench/out/results/quick-*/RESULTS.md\n```\n")
    L.append("Single scenarios by hand, e.g. against a bale on :9000:\n")
    L.append("```\ntarget/release/bale-bench load --endpoint http://127.0.0.1:9000 --access-key K --secret-key S "
             "--prefix s4k/ -n 5000 --size 4k -c 8\n"
             "target/release/bale-bench get  --endpoint http://127.0.0.1:9000 --access-key K --secret-key S "
             "--prefix s4k/ -n 5000 --size 4k -c 16 -d 10s\n"
             "target/release/bale-bench milvus --endpoint http://127.0.0.1:9000 --access-key K --secret-key S "
             "--bucket milvus-bench --segments 4 --scale 0.5\n```\n")
    notes = os.path.join(ROOT, "bench", "RESULTS-notes.md")
    if not quick and os.path.exists(notes):
        L.append(open(notes).read())
    with open(out_md, "w") as f:
        f.write("\n".join(L) + "\n")
    if not quick:
        pack_raw(run)
    print(out_md)


def expand(s):
    v = []
    for part in s.split(","):
        if "-" in part:
            x, y = part.split("-")
            v += list(range(int(x), int(y) + 1))
        elif part:
            v.append(int(part))
    return v


if __name__ == "__main__":
    main()
