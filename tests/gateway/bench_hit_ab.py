#!/usr/bin/env python3
"""A/B of the gateway's GET 4 KiB hit (fast path) between two bale binaries, alternately in one
run (ADR 15 "Capacity": the S3-FIFO access counter must not slow the hit). Both gateways run
with --cache-capacity-gb (the counter is bumped only then) in front of one SeaweedFS, each
warmed first so that every request is a hit; `bale-bench get` c=1 for --duration, --repeats
rounds, A then B in each round; prints medians of p50/p99/req/s and the B/A ratios.

  tests/.venv/bin/python tests/gateway/bench_hit_ab.py A_BIN B_BIN [--repeats 3] [--duration 4s]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import baleproc  # noqa: E402
from conftest import WEED_AK, WEED_SK, Gateway, Weed  # noqa: E402

BENCH = os.path.join(baleproc.ROOT, "target", "release", "bale-bench")


def bench(endpoint, ak, sk, args):
    r = subprocess.run([BENCH, "get", "--endpoint", endpoint, "--access-key", ak, "--secret-key", sk,
                        "--bucket", "abhit", "-n", "300", "--size", "4k", "--json", *args],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["reports"][-1]


def main():
    o = argparse.ArgumentParser()
    o.add_argument("a")
    o.add_argument("b")
    o.add_argument("--repeats", type=int, default=3)
    o.add_argument("--duration", default="4s")
    a = o.parse_args()
    weed = Weed().start()
    gws = {}
    try:
        subprocess.run([BENCH, "load", "--endpoint", weed.endpoint, "--access-key", WEED_AK,
                        "--secret-key", WEED_SK, "--bucket", "abhit", "-n", "300", "--size", "4k"],
                       capture_output=True, check=True)
        for name, binary in (("A", a.a), ("B", a.b)):
            os.environ["BALE_BIN"] = binary
            g = Gateway(weed.endpoint, ["--cache-capacity-gb", "1"], cores=1)
            g.args = (lambda g=g, binary=binary: [binary, *Gateway.args(g)[1:]])
            gws[name] = g.start()
            bench(g.endpoint, g.access_key, g.secret_key, ["--requests", "4000"])  # warm
        runs = {"A": [], "B": []}
        for _ in range(a.repeats):
            for name in ("A", "B"):
                g = gws[name]
                rep = bench(g.endpoint, g.access_key, g.secret_key, ["-d", a.duration, "--pin-cores", "1"])
                runs[name].append(rep)
        med = {}
        for name, reps in runs.items():
            def m(key):
                return statistics.median(r[key] for r in reps)
            med[name] = {k: m(k) for k in ("p50_us", "p99_us", "req_per_s") if k in reps[0]}
            print(name, med[name], [r.get("p50_us") for r in reps])
        for k in med["A"]:
            print(f"B/A {k}: {med['B'][k] / med['A'][k]:.3f}")
    finally:
        for g in gws.values():
            g.cleanup()
        weed.stop()


if __name__ == "__main__":
    main()
