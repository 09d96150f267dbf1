#!/usr/bin/env python3
"""A/B of restart and LIST for issue 13 (mem): each binary loads its own N objects once (its
own bale-bench, same load as scripts/bench-scale.py), then, alternately per round: start (time
to /health after a SIGTERM stop: snapshot load), LIST p50 without and with delimiter, stop.
Usage: ab.py N ROUNDS BEFORE_BALE BEFORE_BENCH AFTER_BALE AFTER_BENCH"""
import importlib.util, json, os, shutil, signal, statistics, sys, tempfile

spec = importlib.util.spec_from_file_location("scale", os.path.join(os.path.dirname(__file__), "../../../scripts/bench-scale.py"))
scale = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scale)

n, rounds = int(sys.argv[1]), int(sys.argv[2])
bins = {"before": (sys.argv[3], sys.argv[4]), "after": (sys.argv[5], sys.argv[6])}
runs = {}
for name, (bale, bench) in bins.items():
    scale.BALE, scale.BENCH = bale, bench
    work = tempfile.mkdtemp(prefix=f"bale-ab-{name}-")
    b = scale.Bale(work)
    b.start()
    rep, meta, rc = b.bench("load", n, "1k", ["-c", "16"], [])
    assert rc == 0, rc
    b.stop(signal.SIGTERM)
    runs[name] = (b, bale, bench, {"restart_s": [], "list_ms": [], "list_delim_ms": []})
for r in range(rounds):
    for name, (b, bale, bench, res) in runs.items():
        scale.BALE, scale.BENCH = bale, bench
        res["restart_s"].append(b.start())
        for key, extra in (("list_ms", []), ("list_delim_ms", ["--delimiter"])):
            rep, _, rc = b.bench("list", n, "1k", ["-c", "1", "--requests", "200", *extra], [])
            res[key].append(rep.get("p50_us", 0) / 1000)
        b.stop(signal.SIGTERM)
out = {name: {k: {"runs": v, "median": statistics.median(v)} for k, v in res.items()} for name, (_, _, _, res) in runs.items()}
print(json.dumps(out, indent=1))
for b, _, _, _ in runs.values():
    shutil.rmtree(os.path.dirname(b.data), ignore_errors=True)
