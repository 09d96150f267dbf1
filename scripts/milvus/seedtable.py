#!/usr/bin/env python3
"""The seed's Milvus benchmark (issue 17), scaled to this machine: one pass per call.

Three roles:

  * `run()` (inside the Milvus namespace, called by `e2e.py inner --mode seedtable`): with a real
    Milvus 2.3.5 standalone on one store (bale, SeaweedFS, or `common.storageType: local`):
    create a collection (id, cat, vec), insert seeded random vectors in batches of 5,000, flush,
    build HNSW (M=16, efConstruction=200, as the seed), measure the footprint in the store, a
    first load, a cold load (Milvus stopped, the store restarted, page cache dropped, Milvus
    started again, `load()` timed), warm loads (release + load), single-vector top-10 searches
    (p50/p99, recall@10 against numpy brute force on the same data), query-by-filter latency,
    and searches that return the vector field (does Milvus go back to the store for it?).
    Every step's wall-clock interval goes into result["phases"].
  * `outer_finish()` (host side, e2e.py outer): the S3 requests Milvus sent (counted by the
    relay's recorder, e2e.S3Recorder), split by phase and operation.
  * `python seedtable.py report DIR ...` / `check FILE` (scripts/seed-table.sh): medians over the
    passes in DIR/raw/*.json -> DIR/RESULTS.md, DIR/summary.json, DIR/seed-table.png; optionally
    the "Milvus, the seed's table" section of bench/RESULTS.md and README's row block.

The helpers (log, pct, s3_client, count_objects, request_restart, Failed, MILVUS_PORT, ...)
are e2e.py's: this module is imported by e2e.py running as __main__, and takes them from there.
"""

import json
import os
import statistics
import subprocess
import sys
import time

DEFAULTS = {
    "rows": 3000, "dim": 128, "batch": 5000, "seed": 20261130,
    "index": {"index_type": "HNSW", "metric_type": "L2", "params": {"M": 16, "efConstruction": 200}},
    "ef": 64, "topk": 10, "searches": 200, "filter_queries": 50, "outvec_searches": 50,
    "warm_reps": 3, "cats": 100, "index_timeout": 1800, "load_timeout": 900, "latent": 32, "min_recall": 0.8,
}
MILVUS_CLIENTS = ("minio-go", "aws-sdk-cpp")
QUERY_PHASES = ("search", "query_filter", "search_output_vec")


def _h():
    return sys.modules["__main__"]


# --------------------------------------------------------------------------- inside the namespace

def brute_force_topk(vecs, queries, k):
    """Exact L2 top-k ids (numpy), the recall reference."""
    import numpy as np
    xx = (vecs.astype(np.float64) ** 2).sum(1)
    out = []
    for a in range(0, len(queries), 100):
        q = queries[a:a + 100].astype(np.float64)
        d = xx[None, :] - 2.0 * q @ vecs.T.astype(np.float64)
        idx = np.argpartition(d, k, axis=1)[:, :k]
        order = np.take_along_axis(d, idx, 1).argsort(1)
        out.append(np.take_along_axis(idx, order, 1))
    return np.vstack(out)


def make_data(seed, n, nq, dim, latent):
    """Embedding-like vectors, seeded: a `latent`-dimensional Gaussian through one fixed random
    latent x dim matrix, plus a little isotropic noise (uniform random 768-d vectors have no
    structure at all: HNSW's recall@10 on them was 0.39 at ef=64, a property of the data, not of
    the store). The queries come from the same distribution, not from the data set."""
    import numpy as np
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((latent, dim)).astype(np.float32) / np.float32(np.sqrt(latent))

    def draw(r, m):
        z = r.standard_normal((m, latent), dtype=np.float32)
        return (z @ w + np.float32(0.05) * r.standard_normal((m, dim), dtype=np.float32)).astype(np.float32)

    return draw(np.random.default_rng(seed + 1), n), draw(np.random.default_rng(seed + 2), nq)


def mapped_under(path):
    """Bytes that processes in this PID namespace (Milvus) have mapped from files under path
    (Milvus 2.3 unlinks its mmap files once mapped: /proc/PID/maps still shows them)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    if path in line:
                        a, b = line.split()[0].split("-")
                        total += int(b, 16) - int(a, 16)
        except OSError:
            continue
    return total


def disk_usage(path):
    """(allocated bytes, apparent bytes, files) under path."""
    alloc = apparent = files = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            alloc += st.st_blocks * 512
            apparent += st.st_size
            files += 1
    return alloc, apparent, files


def run(args, result, restart_milvus):
    import numpy as np
    from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility
    from pymilvus.settings import Config
    Config.WaitTimeDurationWhenLoad = 0.05  # load(): poll progress every 50 ms, not 500 ms
    h = _h()
    P = dict(DEFAULTS)
    P.update(json.loads(args.seed_params))
    m, fails = result["metrics"], result["failures"]
    phases = result.setdefault("phases", [])
    result["params"] = P
    local = P.get("store") == "local"

    def phase(name, fn):
        h.log(f"{name} ...")
        t0, p0 = time.time(), time.perf_counter()
        out = fn()
        dt = time.perf_counter() - p0
        phases.append({"name": name, "t0": t0, "t1": time.time(), "s": round(dt, 4)})
        h.log(f"{name}: {dt:.2f}s")
        return out, dt

    def check(cond, msg):
        if not cond:
            fails.append(msg)
            h.log(f"CHECK FAILED: {msg}")
        return cond

    def connect():
        connections.connect("default", host="127.0.0.1", port=str(h.MILVUS_PORT), timeout=60)

    n, dim, k = P["rows"], P["dim"], P["topk"]
    vecs, queries = make_data(P["seed"], n, P["searches"], dim, P["latent"])
    ids = np.arange(n, dtype=np.int64)
    cats = ids % P["cats"]
    t = time.perf_counter()
    truth = brute_force_topk(vecs, queries, k)
    h.log(f"data: {n} x {dim} (seed {P['seed']}), brute-force top-{k} of {len(queries)} queries in "
          f"{time.perf_counter() - t:.1f}s")

    connect()
    name = "seed_table"
    if utility.has_collection(name):
        utility.drop_collection(name)
    schema = CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema("cat", DataType.INT64),
        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=dim),
    ], description="the seed's table")
    coll = Collection(name, schema, shards_num=1, consistency_level="Strong")

    def insert():
        for a in range(0, n, P["batch"]):
            b = min(a + P["batch"], n)
            coll.insert([ids[a:b].tolist(), cats[a:b].tolist(), vecs[a:b]])

    _, dt = phase("insert", insert)
    m["insert_s"] = round(dt, 3)
    m["insert_rows_per_s"] = round(n / dt, 1)
    _, m["flush_s"] = phase("flush", coll.flush)
    check(coll.num_entities == n, f"num_entities {coll.num_entities} != {n}")

    def build():
        coll.create_index("vec", P["index"], index_name="vec_idx")
        utility.wait_for_index_building_complete(name, index_name="vec_idx", timeout=P["index_timeout"])
    _, m["index_s"] = phase("index", build)
    prog = utility.index_building_progress(name, index_name="vec_idx")
    check(prog.get("indexed_rows") == n, f"index progress {prog}")

    # Footprint: bytes stored (what the store says it holds) against bytes on disk (allocated).
    os.sync()
    alloc, apparent, files = disk_usage(args.store_dir)
    st = {"disk_allocated_bytes": alloc, "disk_apparent_bytes": apparent, "disk_files": files,
          "store_dir": args.store_dir}
    if local:
        st["stored_bytes"], st["objects"] = apparent, files
        st["by_prefix"] = {}
    else:
        counts, keys = h.count_objects(h.s3_client(args))
        st["stored_bytes"] = sum(sz for _, sz, _ in keys)
        st["objects"] = len(keys)
        st["by_prefix"] = {p: {"objects": c[0], "bytes": c[1]} for p, c in counts.items()}
    st["disk_over_stored"] = round(alloc / st["stored_bytes"], 3) if st["stored_bytes"] else None
    m["storage"] = st
    h.log(f"storage: stored {st['stored_bytes']:,} B in {st['objects']} objects, on disk {alloc:,} B allocated")
    check(st["stored_bytes"] > n * dim * 4, f"store holds {st['stored_bytes']} B, less than the raw vectors")

    _, m["first_load_s"] = phase("first_load", lambda: coll.load(timeout=P["load_timeout"]))
    if P.get("mmap_dir"):  # queryNode.mmapDirPath: did Milvus put anything there?
        m["mmap_dir_after_load"] = dict(zip(("allocated", "apparent", "files"), disk_usage(P["mmap_dir"])))
        m["mmap_dir_after_load"]["mapped_bytes"] = mapped_under(P["mmap_dir"])
        h.log(f"mmap dir after load: {m['mmap_dir_after_load']}")

    # Cold load: Milvus stopped, the store restarted (bale's cache is in its process), the page
    # cache dropped, Milvus started again; then load() is timed.
    coll.release()
    connections.disconnect("default")
    restart = {}

    def between():
        t = time.perf_counter()
        out = h.request_restart(args, how="term")
        if not out.get("ok"):
            raise h.Failed(f"restart of the store failed: {out.get('error', out)}")
        restart["store_restart_s"] = round(time.perf_counter() - t, 2)
        os.sync()
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            restart["page_cache_dropped"] = True
        except OSError as e:
            restart["page_cache_dropped"] = f"no: {e}"
            h.log(f"WARNING: could not drop the page cache: {e}")

    (startup, _) = phase("cold_restart", lambda: restart_milvus(between))
    restart["milvus_start_s"] = round(startup, 2)
    m["cold_restart"] = restart
    connect()
    coll = Collection(name)
    _, m["cold_load_s"] = phase("cold_load", lambda: coll.load(timeout=P["load_timeout"]))

    warm = []
    for r in range(P["warm_reps"]):
        coll.release()
        _, dt = phase(f"warm_load_{r + 1}", lambda: coll.load(timeout=P["load_timeout"]))
        warm.append(round(dt, 4))
    m["warm_load_s_each"] = warm
    m["warm_load_s"] = statistics.median(warm)

    sp = {"metric_type": "L2", "params": {"ef": max(P["ef"], k)}}
    for q in queries[:10]:  # warm-up, not timed
        coll.search([q], "vec", sp, limit=k, consistency_level="Eventually")

    def searches():
        lat, found = [], []
        for q in queries:
            t = time.perf_counter()
            r = coll.search([q], "vec", sp, limit=k, consistency_level="Eventually")
            lat.append((time.perf_counter() - t) * 1000)
            found.append(list(r[0].ids))
        return lat, found

    (lat, found), _ = phase("search", searches)
    recall = float(np.mean([len(set(f) & set(tr.tolist())) / k for f, tr in zip(found, truth)]))
    m.update({"search_n": len(lat), "search_p50_ms": round(h.pct(lat, 50), 3),
              "search_p99_ms": round(h.pct(lat, 99), 3), "recall_at_10": round(recall, 4)})
    check(recall >= P["min_recall"], f"recall@{k} {recall:.3f} < {P['min_recall']}")

    def filters():
        lat, bad = [], 0
        want = n // P["cats"]
        for i in range(P["filter_queries"]):
            c = i % P["cats"]
            t = time.perf_counter()
            rows = coll.query(f"cat == {c}", output_fields=["id"], consistency_level="Eventually")
            lat.append((time.perf_counter() - t) * 1000)
            if len(rows) not in (want, want + 1) or any(r["id"] % P["cats"] != c for r in rows[:20]):
                bad += 1
        return lat, bad

    (flat, bad), _ = phase("query_filter", filters)
    m.update({"filter_expr": "cat == c (1 row in %d)" % P["cats"], "filter_n": len(flat),
              "filter_p50_ms": round(h.pct(flat, 50), 3), "filter_p99_ms": round(h.pct(flat, 99), 3)})
    check(bad == 0, f"{bad} filter queries returned the wrong rows")

    # The raw vector back with each hit: in 2.3.5 does this go to the store (chunk cache)?
    def outvec():
        lat, bad = [], 0
        for i, q in enumerate(queries[:P["outvec_searches"]]):
            t = time.perf_counter()
            r = coll.search([q], "vec", sp, limit=k, output_fields=["vec"], consistency_level="Eventually")
            lat.append((time.perf_counter() - t) * 1000)
            hit = r[0][0]
            v = np.asarray(hit.entity.get("vec"), dtype=np.float32)
            if not np.array_equal(v, vecs[hit.id]):
                bad += 1
        return lat, bad

    (olat, obad), _ = phase("search_output_vec", outvec)
    m.update({"outvec_n": len(olat), "outvec_p50_ms": round(h.pct(olat, 50), 3),
              "outvec_p99_ms": round(h.pct(olat, 99), 3)})
    check(obad == 0, f"{obad} searches returned a vector different from the inserted one")

    coll.release()  # a loaded collection makes Milvus 2.3.5 slow to stop
    connections.disconnect("default")


# --------------------------------------------------------------------------- host side

def outer_finish(result, recorder):
    """S3 requests sent by Milvus (minio-go, aws-sdk-cpp; not the benchmark's own boto3), by phase
    and operation, from the relay's records (their wall-clock time at the response head)."""
    with recorder.lock:
        recs = [r for r in recorder.records if r["client"].startswith(MILVUS_CLIENTS)]
    total, by_phase, time_in = {}, {}, {}
    for r in recs:
        total[r["op"]] = total.get(r["op"], 0) + 1
    for p in result.get("phases", []):
        ops, inside = {}, []
        for r in recs:
            if p["t0"] <= r["wall"] <= p["t1"]:
                ops[r["op"]] = ops.get(r["op"], 0) + 1
                inside.append(r)
        by_phase[p["name"]] = ops
        if inside:  # how much of the step the store accounts for (request sent -> response head)
            first = min(r["wall"] - r["ms"] / 1000 for r in inside)
            time_in[p["name"]] = {"requests_ms_sum": round(sum(r["ms"] for r in inside), 1),
                                  "first_to_last_s": round(max(r["wall"] for r in inside) - first, 3),
                                  "step_s": p["s"]}
    m = result.setdefault("metrics", {})
    m["s3_requests_total"] = dict(sorted(total.items()))
    m["s3_requests_by_phase"] = by_phase
    m["s3_time_by_phase"] = time_in
    qph = [p for p in result.get("phases", []) if p["name"] in QUERY_PHASES]
    m["s3_requests_during_queries"] = [
        {k: r.get(k) for k in ("op", "client", "status", "target", "ms")}
        for r in recs if any(p["t0"] <= r["wall"] <= p["t1"] for p in qph)][:20]


# --------------------------------------------------------------------------- report

SYSTEM_LABEL = {"bale": "bale", "weed": "SeaweedFS", "seaweedfs": "SeaweedFS", "local": "local storage (no S3)",
                "bale-mmap": "bale + mmapDirPath"}
# (metric, label, unit, format)
ROWS = [
    ("insert_rows_per_s", "insert (batches of 5,000)", "rows/s", "{:,.0f}"),
    ("flush_s", "flush", "s", "{:.2f}"),
    ("index_s", "index build (HNSW M=16, efC=200)", "s", "{:.1f}"),
    ("first_load_s", "first load (after index build)", "s", "{:.2f}"),
    ("cold_load_s", "cold load (Milvus + store restarted, caches dropped)", "s", "{:.2f}"),
    ("warm_load_s", "warm load (release, load again; median of 3)", "s", "{:.3f}"),
    ("search_p50_ms", "search p50 (1 vector, top 10)", "ms", "{:.2f}"),
    ("search_p99_ms", "search p99", "ms", "{:.2f}"),
    ("recall_at_10", "recall@10 vs brute force", "", "{:.4f}"),
    ("filter_p50_ms", "query by filter p50 (cat == c)", "ms", "{:.2f}"),
    ("filter_p99_ms", "query by filter p99", "ms", "{:.2f}"),
    ("outvec_p50_ms", "search returning the vector field, p50", "ms", "{:.2f}"),
    ("stored_mb", "bytes stored (sum of objects)", "MB", "{:.1f}"),
    ("disk_mb", "bytes on disk (allocated, store's data dir)", "MB", "{:.1f}"),
    ("disk_over_stored", "on disk ÷ stored", "×", "{:.2f}"),
    ("cold_load_s3_ms", "cold load: time inside S3 requests (sum)", "ms", "{:,.0f}"),
    ("milvus_requests", "S3 requests from Milvus, whole pass", "", "{:,.0f}"),
    ("requests_search", "S3 requests during the searches + queries", "", "{:,.0f}"),
]


LOCAL_NA = {"disk_over_stored", "cold_load_s3_ms"}  # no S3 server, no such figure


def flat_metrics(r):
    m = dict(r.get("metrics", {}))
    st = m.get("storage", {})
    if st:
        m["stored_mb"] = st["stored_bytes"] / 1e6
        m["disk_mb"] = st["disk_allocated_bytes"] / 1e6
        m["disk_over_stored"] = st.get("disk_over_stored")
    m["cold_load_s3_ms"] = (m.get("s3_time_by_phase") or {}).get("cold_load", {}).get("requests_ms_sum")
    total = m.get("s3_requests_total")
    if total is not None:
        m["milvus_requests"] = sum(total.values())
        byp = m.get("s3_requests_by_phase", {})
        m["requests_search"] = sum(sum(byp.get(p, {}).values()) for p in QUERY_PHASES)
    return m


def load_passes(d):
    out = []
    raw = os.path.join(d, "raw")
    for f in sorted(os.listdir(raw)):
        if f.endswith(".json"):
            with open(os.path.join(raw, f)) as fh:
                r = json.load(fh)
            r["_file"] = f
            out.append(r)
    return out


def check(path, want_systems=None):
    """Fail (exit 1) when a pass failed or a figure is missing: the smoke test's assertion."""
    with open(path) as f:
        s = json.load(f)
    errs = []
    for sysname, row in s["systems"].items():
        if row["passes_ok"] < 1:
            errs.append(f"{sysname}: no pass succeeded")
        for key, *_ in ROWS:
            if key in LOCAL_NA and sysname == "local":
                continue
            v = row["median"].get(key)
            if v is None:
                errs.append(f"{sysname}: {key} missing")
        if sysname != "local" and not row["median"].get("milvus_requests"):
            errs.append(f"{sysname}: no S3 requests from Milvus recorded")
    for sysname in want_systems or []:
        if sysname not in s["systems"]:
            errs.append(f"{sysname}: no passes")
    for f in s.get("failures", []):
        errs.append(f"failed pass: {f}")
    for e in errs:
        print(f"seed-table check: {e}")
    print("seed-table check: " + ("FAIL" if errs else "OK"))
    return 1 if errs else 0


def summarize(d, meta):
    passes = load_passes(d)
    systems, failures = {}, []
    for r in passes:
        sysname = (r.get("params") or {}).get("system") or r.get("system") or r.get("backend")
        row = systems.setdefault(sysname, {"passes": [], "passes_ok": 0, "failed": []})
        if not r.get("pass_ok"):
            row["failed"].append(r["_file"])
            failures.append(f"{r['_file']}: {'; '.join(r.get('failures', []))[:400]}")
            continue
        row["passes_ok"] += 1
        fm = flat_metrics(r)
        row["passes"].append({"file": r["_file"], **{k: fm.get(k) for k, *_ in ROWS},
                              "cold_restart": fm.get("cold_restart"), "warm_load_s_each": fm.get("warm_load_s_each")})
        row.setdefault("requests_by_phase", []).append(fm.get("s3_requests_by_phase"))
        row.setdefault("storage", []).append(fm.get("storage"))
    for sysname, row in systems.items():
        med = {}
        for key, *_ in ROWS:
            vals = [p[key] for p in row["passes"] if p.get(key) is not None]
            med[key] = statistics.median(vals) if vals else None
        row["median"] = med
    return {"meta": meta, "systems": systems, "failures": failures}


def findings(s):
    """Sentences computed from the run: where the store is on the path and how much it weighs."""
    sy = s["systems"]
    s3 = [x for x in table_md(s)[1] if x != "local" and sy[x]["passes_ok"]]
    out = []
    quiet = sum(p.get("requests_search") or 0 for x in s3 for p in sy[x]["passes"])
    ops = {}
    for x in s3:
        for byp in sy[x].get("requests_by_phase") or []:
            for ph in QUERY_PHASES:
                for op, n in ((byp or {}).get(ph) or {}).items():
                    ops[f"{op} in {ph}"] = ops.get(f"{op} in {ph}", 0) + n
    nsearch = s["meta"]["searches"]
    out.append(
        f"**Where Milvus hides the store.** Once a collection is loaded, Milvus 2.3.5 serves from memory: "
        f"{quiet} S3 request(s){' (' + ', '.join(f'{k}: {n}' for k, n in sorted(ops.items())) + ')' if ops else ''} "
        f"during all passes' {nsearch:,} searches, {s['meta']['filter_queries']} filter "
        f"queries and searches returning the vector field ({', '.join(SYSTEM_LABEL.get(x, x) for x in s3)}; "
        f"the passes' JSON lists each such request's key under s3_requests_during_queries). "
        f"Search latency there is Milvus's, not the store's. The store is on the path of flush (PUT binlogs), "
        f"index build (GET binlogs, PUT index files) and every load: a warm load (release, load) fetches "
        f"the same objects again as a cold one.")
    parts = []
    for x in s3:
        m = sy[x]["median"]
        if m.get("cold_load_s") and m.get("cold_load_s3_ms") is not None:
            parts.append(f"{SYSTEM_LABEL.get(x, x)} {m['cold_load_s3_ms']:,.0f} ms of {m['cold_load_s']:.2f} s "
                         f"({m['cold_load_s3_ms'] / 10 / m['cold_load_s']:.1f} %)")
    loads = sorted(v for x in sy for p in sy[x]["passes"] for v in [p.get("cold_load_s")] + list(
        p.get("warm_load_s_each") or []) if v)
    if parts and loads:
        floor = sy.get("local", {}).get("median", {}).get("cold_load_s")
        out += ["", f"**How much of a load is the store.** Time inside S3 requests (request sent to response "
                f"head, summed) during the cold load, medians: {'; '.join(parts)}. Every load of every pass, "
                f"all systems, took {loads[0]:.2f}–{loads[-1]:.2f} s"
                + (f", and a cold load from local storage (no S3) {floor:.2f} s" if floor else "")
                + ": most of a load is Milvus's own coordination (its query coordinator checks every "
                f"`queryCoord.checkInterval` = 1,000 ms and pulls distributions every 500 ms; load times "
                f"cluster near whole seconds), so differences between stores under ~1 s are within one tick."]
    return out


def fmt(v, f):
    return "–" if v is None else f.format(v)


def seed_lines(rows):
    return [
        "The seed's own figures (Milvus **2.6.7** standalone, 1M × 768, HNSW M=16 efConstruction=200, "
        f"16 cores, NVMe; **other hardware, another Milvus, {1_000_000 / rows:.0f}× the rows**: compare shapes, "
        "not numbers):",
        "",
        "| seed's figure | MinIO | RustFS |",
        "|---|---|---|",
        "| insert | 2,845 rows/s | 4,472 rows/s |",
        "| index build | 562 s | 803 s |",
        "| cold load | 18.3 s | 22.7 s |",
        "| warm load | 0.027 s | 0.009 s |",
        "| search latency | 1.85 ms | 7.96 ms |",
        "| storage | 18.0 GB | 7.8 GB |",
    ]


def table_md(s):
    order = [x for x in ("bale", "seaweedfs", "local", "bale-mmap") if x in s["systems"]]
    order += [x for x in s["systems"] if x not in order]
    head = "| median over passes | " + " | ".join(
        f"{SYSTEM_LABEL.get(x, x)} ({s['systems'][x]['passes_ok']})" for x in order) + " |"
    lines = [head, "|---|" + "---|" * len(order)]
    for key, label, unit, f in ROWS:
        cells = []
        for x in order:
            v = s["systems"][x]["median"].get(key)
            if key in LOCAL_NA and x == "local":
                v = None
            cells.append(fmt(v, f))
        lines.append(f"| {label}{' (' + unit + ')' if unit and unit != '×' else ''} | " + " | ".join(cells) + " |")
    return lines, order


def requests_md(s, order):
    """Per phase and operation, from the first successful pass of each system (they repeat)."""
    out = []
    for x in order:
        if x == "local":
            continue
        rbp = (s["systems"][x].get("requests_by_phase") or [None])[0]
        if not rbp:
            continue
        out.append(f"- **{SYSTEM_LABEL.get(x, x)}**: " + "; ".join(
            f"{ph}: " + (", ".join(f"{op} {n}" for op, n in sorted(ops.items())) or "none")
            for ph, ops in rbp.items()))
    return out


def write_report(d, s, plot_path):
    meta = s["meta"]
    lines, order = table_md(s)
    md = [f"# Milvus, the seed's table: run {os.path.basename(d)}", "",
          f"`{meta['command']}` at commit `{meta['commit']}`, {meta['started']} – {meta['finished']} (UTC).", "",
          f"- Milvus **2.3.5** standalone (PyPI `milvus`, embedded etcd + rocksmq), pymilvus; "
          f"{meta['rows']:,} × {meta['dim']} float32 (embedding-like: a 32-d Gaussian through a fixed random "
          f"32 × {meta['dim']} projection plus noise, seed {meta['seed']}), one shard; "
          f"HNSW M=16 efConstruction=200, search ef={meta['ef']}, top 10, {meta['searches']:,} single-vector "
          f"searches, {meta['filter_queries']} filter queries.",
          f"- {meta['reps']} repetition(s); systems interleaved, the order rotated each repetition "
          f"({'; '.join(meta['orders'])}); each pass starts from empty data directories.",
          f"- machine: {meta['machine']}; load average at start / end: `{meta['load_start']}` / "
          f"`{meta['load_end']}`. **Shared with other engineers' Rust builds**: timings are noisy; compare "
          f"systems within this run only.",
          f"- servers: {meta['servers']}", ""]
    md += lines
    md += ["", "Numbers in parentheses: passes that succeeded. Failed passes: "
           + ("; ".join(s["failures"]) if s["failures"] else "none") + ".", ""]
    req = requests_md(s, order)
    if req:
        md += ["S3 requests Milvus sent, by step and operation (first pass of each system; counted at the "
               "relay between Milvus and the store):", ""] + req + [""]
    md += findings(s) + [""]
    md += [f"![seed table]({os.path.basename(plot_path)})", ""] + seed_lines(meta["rows"])
    with open(os.path.join(d, "RESULTS.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    return lines, req


def plot(d, s):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    _, order = table_md(s)
    panels = [("insert_rows_per_s", "insert rows/s"), ("index_s", "index build s"),
              ("cold_load_s", "cold load s"), ("warm_load_s", "warm load s"),
              ("search_p50_ms", "search p50 ms"), ("search_p99_ms", "search p99 ms"),
              ("filter_p50_ms", "filter query p50 ms"), ("disk_mb", "on disk MB")]
    fig, axes = plt.subplots(2, 4, figsize=(14, 6))
    colors = {"bale": "#1f77b4", "seaweedfs": "#ff7f0e", "local": "#7f7f7f", "bale-mmap": "#2ca02c"}
    for ax, (key, title) in zip(axes.flat, panels):
        xs = [x for x in order]
        meds = [s["systems"][x]["median"].get(key) or 0 for x in xs]
        ax.bar(range(len(xs)), meds, color=[colors.get(x, "#999") for x in xs])
        for i, x in enumerate(xs):  # every pass as a dot
            pts = [p[key] for p in s["systems"][x]["passes"] if p.get(key) is not None]
            ax.plot([i] * len(pts), pts, "k.", ms=4)
        ax.set_xticks(range(len(xs)), [SYSTEM_LABEL.get(x, x).split(" (")[0] for x in xs], fontsize=8)
        ax.set_title(title, fontsize=9)
    m = s["meta"]
    fig.suptitle(f"Milvus 2.3.5, {m['rows']:,} x {m['dim']}, HNSW M16 efC200 — median of passes (dots: each pass); "
                 f"commit {m['commit'][:9]}", fontsize=10)
    fig.tight_layout()
    path = os.path.join(d, "seed-table.png")
    fig.savefig(path, dpi=90)
    return path


def replace_section(text, start, end, new):
    """Replace text between the start marker and end marker (inclusive); append if absent."""
    if start in text and end in text:
        a = text.index(start)
        b = text.index(end) + len(end)
        return text[:a] + new + text[b:]
    return text.rstrip("\n") + "\n\n" + new + "\n"


def update_docs(root, d, s, lines, req):
    rel = os.path.relpath(d, os.path.join(root, "bench"))
    meta = s["meta"]
    start, end = "<!-- seed-table:start -->", "<!-- seed-table:end -->"
    sec = [start, "## Milvus, the seed's table", "",
           f"Generated by `{meta['command']}` at commit `{meta['commit'][:9]}`, run {os.path.basename(d)} "
           f"([RESULTS.md]({rel}/RESULTS.md), [summary.json]({rel}/summary.json), "
           f"[commands]({rel}/commands.txt)). Milvus **2.3.5** standalone (PyPI's embedded package: the newest "
           f"it ships; the seed ran 2.6.7), {meta['rows']:,} × {meta['dim']}, HNSW M=16 efConstruction=200, "
           f"medians of {meta['reps']} interleaved repetition(s); this 2-core machine was shared with other "
           f"engineers' builds.", ""] + lines + [""]
    sec += [f"![seed table]({rel}/seed-table.png)", ""]
    sec += findings(s) + [""]
    sec += ["S3 requests Milvus sent, by step (first pass of each system, counted at the relay):", ""]
    sec += req + [""]
    sec += ["Milvus settings that would put the store on the query path (lazy load, tiered storage, "
            "mmap of indexes, the chunk cache) and which of them 2.3.5 has: docs/milvus.md, "
            "\"The seed's table\".", ""]
    sec += seed_lines(meta["rows"]) + ["", end]
    p = os.path.join(root, "bench", "RESULTS.md")
    with open(p) as f:
        text = f.read()
    with open(p, "w") as f:
        f.write(replace_section(text, start, end, "\n".join(sec)))
    # README: a short row block in the performance section.
    med = {x: s["systems"][x]["median"] for x in s["systems"]}
    order = [x for x in ("bale", "seaweedfs", "local") if x in med]
    rows = [("insert rows/s", "insert_rows_per_s", "{:,.0f}"), ("index build", "index_s", "{:.1f} s"),
            ("cold load", "cold_load_s", "{:.2f} s"), ("warm load", "warm_load_s", "{:.3f} s"),
            ("search p50 / p99", None, None), ("on disk", "disk_mb", "{:.0f} MB")]
    rl = [start.replace("seed-table", "seed-table-readme"),
          f"**Milvus, the seed's table** (bench/RESULTS.md): `{meta['command']}` at `{meta['commit'][:9]}`, "
          f"Milvus 2.3.5, {meta['rows']:,} × {meta['dim']}, HNSW M=16 efC=200, medians of {meta['reps']} "
          f"interleaved repetition(s), shared 2-core machine:", "",
          "| Milvus 2.3.5 | " + " | ".join(SYSTEM_LABEL[x] for x in order) + " |",
          "|---|" + "---|" * len(order)]
    for label, key, f in rows:
        if key is None:
            cells = [f"{fmt(med[x].get('search_p50_ms'), '{:.2f}')} / {fmt(med[x].get('search_p99_ms'), '{:.2f}')} ms"
                     for x in order]
        else:
            cells = [fmt(med[x].get(key), f) for x in order]
        rl.append(f"| {label} | " + " | ".join(cells) + " |")
    rl += ["", end.replace("seed-table", "seed-table-readme")]
    p = os.path.join(root, "README.md")
    with open(p) as f:
        text = f.read()
    a, b = start.replace("seed-table", "seed-table-readme"), end.replace("seed-table", "seed-table-readme")
    if a in text:
        text = replace_section(text, a, b, "\n".join(rl))
    else:  # first time: at the end of the performance section's first table block
        anchor = "### Before and after the hardening"
        i = text.index(anchor) if anchor in text else len(text)
        text = text[:i] + "\n".join(rl) + "\n\n" + text[i:]
    with open(p, "w") as f:
        f.write(text)


def main():
    import argparse
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report")
    r.add_argument("dir")
    r.add_argument("--meta", required=True, help="JSON file with the run's metadata")
    r.add_argument("--docs", action="store_true", help="update bench/RESULTS.md and README.md too")
    r.add_argument("--no-plot", action="store_true")
    c = sub.add_parser("check")
    c.add_argument("summary")
    c.add_argument("--systems", default="")
    a = ap.parse_args()
    if a.cmd == "check":
        return check(a.summary, a.systems.split())
    with open(a.meta) as f:
        meta = json.load(f)
    s = summarize(a.dir, meta)
    plot_path = os.path.join(a.dir, "seed-table.png")
    if not a.no_plot:
        try:
            plot_path = plot(a.dir, s)
        except Exception as e:  # noqa: BLE001 - no matplotlib: the table still gets written
            print(f"seed-table: no plot ({e!r})")
    lines, req = write_report(a.dir, s, plot_path)
    with open(os.path.join(a.dir, "summary.json"), "w") as f:
        json.dump(s, f, indent=1)
    print("\n".join(lines))
    if a.docs:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        update_docs(root, a.dir, s, lines, req)
    return 0


if __name__ == "__main__":
    sys.exit(main())
