#!/usr/bin/env python3
"""Rebuild of lost stripe files WHILE SERVING (issue 14, ADR 19) against the real binary.

Six --data directories with --redundancy ec:4+2 and 2 MiB volumes: PUT mixed objects, wait
for the stripes, stop, then:

  1. d3 emptied (a new empty disk in its position), bale started with a low
     --rebuild-rate-mb: /health answers and every object is served byte-identical (sha256)
     while bale_stripe_files_lost > 0; the gauge then falls to 0, the rebuild is counted
     (bale_rebuild_files_total) and its progress logged;
  2. two OTHER dirs removed (d4+d5, then d0+d1): everything still identical, so the files
     rebuilt into d3 are right;
  3. d1 emptied, bale SIGKILLed while its rebuild runs (a temporary file on disk), restarted:
     the rebuild is redone and completes, no temporary file is left, everything identical,
     also with two other dirs (d2+d4) removed;
  4. d5 emptied and `bale disk replace` run (server stopped): exit 0, stripe files rebuilt,
     nothing lost at the next start, everything identical.

Usage: rebuild_check.py [--objects N]. Exits 1 on any failure.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ec_check as ec  # noqa: E402
import mirror_check as mc  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import baleproc  # noqa: E402

check = mc.check


def health(srv):
    with urllib.request.urlopen(srv.endpoint + "/health", timeout=5) as r:
        return r.status


def lost(srv):
    return ec.stripe_metric(srv, "bale_stripe_files_lost")


def wait_rebuilt(srv, what, timeout_s=90):
    deadline = time.time() + timeout_s
    while time.time() < deadline and lost(srv) > 0:
        time.sleep(0.2)
    check(lost(srv) == 0, f"{what}: {lost(srv)} stripe files still lost after {timeout_s}s")


def tmp_files(dirs):
    return [os.path.join(r, f) for d in dirs for r, _, fs in os.walk(d) for f in fs
            if f.endswith(".ec-tmp")]


def empty(dirs, i):
    shutil.rmtree(dirs[i])
    os.mkdir(dirs[i])


def two_others_removed(dirs, want, gone, what):
    ec.away(dirs, gone)
    srv = ec.start(dirs)
    mc.verify(mc.client(srv), want, f"{what}, d{gone[0]}+d{gone[1]} removed", ranged=True)
    srv.stop()
    ec.back(dirs, gone)


def scenarios(root, n_objects):
    dirs = [os.path.join(root, f"d{i}") for i in range(6)]
    srv = ec.start(dirs)
    s3 = mc.client(srv)
    s3.create_bucket(Bucket=mc.BUCKET)
    want = ec.put_objects(s3, n_objects, "a")
    stripes = ec.wait_stripes(srv, 2)
    print(f"{len(want)} objects, {stripes} stripes", flush=True)
    srv.stop()

    # 1. d3 emptied: served while its stripe files are rebuilt in the background.
    empty(dirs, 3)
    t0 = time.time()
    srv = ec.start(dirs, ["--rebuild-rate-mb", "2"])
    print(f"started in {time.time() - t0:.1f}s with d3 empty", flush=True)
    check(health(srv) == 200, "d3 empty: /health answers while the rebuild runs")
    first = lost(srv)
    check(first > 0, f"d3 empty: stripe files lost at start ({first}), the rebuild runs after")
    mc.verify(mc.client(srv), want, "d3 empty, during the rebuild", ranged=False)
    during = lost(srv)
    check(during > 0, f"d3 empty: GETs all served while files were still lost ({during} left)")
    check(ec.stripe_metric(srv, "bale_rebuild_pending_files") > 0 or during == 0,
          "d3 empty: rebuild queue in /metrics")
    wait_rebuilt(srv, "d3 empty")
    check(ec.stripe_metric(srv, "bale_rebuild_files_total") >= first,
          "d3 empty: every lost file counted rebuilt")
    check(ec.stripe_metric(srv, "bale_rebuild_failures_total") == 0, "d3 empty: no rebuild failed")
    check(mc.log_has(srv, r"stripe rebuild progress"), "d3 empty: progress logged")
    check(mc.log_has(srv, r"percent=.*eta_s="), "d3 empty: progress has percent and ETA")
    mc.verify(mc.client(srv), want, "d3 rebuilt", ranged=False)
    srv.stop()
    check(not tmp_files(dirs), "d3 rebuilt: no temporary file left")

    # 2. The rebuilt files are right: two other dirs removed.
    two_others_removed(dirs, want, [4, 5], "d3 rebuilt")
    two_others_removed(dirs, want, [0, 1], "d3 rebuilt")

    # 3. SIGKILL during the rebuild of an emptied d1, then restart: redone and completed.
    empty(dirs, 1)
    srv = ec.start(dirs, ["--rebuild-rate-mb", "1"])
    deadline = time.time() + 30
    while time.time() < deadline and not tmp_files([dirs[1]]):
        time.sleep(0.05)
    left = lost(srv)
    check(tmp_files([dirs[1]]) and left > 0,
          f"kill: a rebuild was under way ({left} files lost, temporary file on disk)")
    srv.kill9()
    srv = ec.start(dirs)
    wait_rebuilt(srv, "after the kill")
    mc.verify(mc.client(srv), want, "after a kill during the rebuild", ranged=False)
    srv.stop()
    check(not tmp_files(dirs), "after the kill: no temporary file left")
    two_others_removed(dirs, want, [2, 4], "d1 rebuilt after a kill")

    # 4. `bale disk replace` (server stopped) rebuilds the stripe files of an emptied d5 and
    #    exits: the next start has nothing lost.
    empty(dirs, 5)
    args = [baleproc.bale_bin(), "disk", "replace", *[x for d in dirs for x in ("--data", d)],
            *ec.EC, "--rebuild-rate-mb", "0"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, f"disk replace: exit {p.returncode}: {p.stderr[-800:]}")
    check("stripe files rebuilt" in p.stderr, "disk replace: stripe files rebuilt and said so")
    srv = ec.start(dirs)
    check(lost(srv) == 0, f"disk replace: {lost(srv)} stripe files lost at the next start")
    mc.verify(mc.client(srv), want, "after disk replace", ranged=False)
    srv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=100)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bale-rebuild-")
    t0 = time.time()
    try:
        scenarios(root, args.objects)
    finally:
        for b in mc.RUNNING:
            b.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"rebuild check: {time.time() - t0:.0f}s", flush=True)
    if mc.FAILURES:
        print(f"rebuild check: {len(mc.FAILURES)} failure(s)")
        sys.exit(1)
    print("rebuild check: passed")


if __name__ == "__main__":
    main()
