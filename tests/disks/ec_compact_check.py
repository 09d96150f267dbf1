#!/usr/bin/env python3
"""Compaction of stripes (issue 14, ADR 19 step 8) against the real binary.

Six --data directories and no --redundancy flag (the default for 6 is ec:4+2), 1 MiB volumes
so stripes form quickly:

  1. objects PUT, stripes encoded; then 3 of every 4 deleted or overwritten; compaction on
     (--compact-interval-s 1): stripes are compacted (fewer stripes, "stripe compacted" in
     the log), the bytes on disk fall, every remaining object is byte-identical (sha256,
     ranged reads too), parity and manifest files match the stripes left; then two dirs
     removed: still identical;
  2. SIGKILL loop (--kills points) while stripes are being compacted under PUT and DELETE
     load: every acknowledged object byte-identical after each restart (every 5th with two
     dirs removed), every acknowledged delete still 404.

Usage: ec_compact_check.py [--kills N] [--objects N]. Exits 1 on any failure.
"""

import os
import random
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import baleproc  # noqa: E402
import ec_check as ec  # noqa: E402
import mirror_check as mc  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

KiB = mc.KiB
MiB = mc.MiB
check = mc.check


def start(dirs, compact=False, extra=()):
    """bale on `dirs` with 1 MiB volumes, compaction every second (`compact`) or off."""
    for old in mc.RUNNING:
        old.stop()
    mc.RUNNING.clear()
    b = baleproc.Bale(data_dirs=dirs, cores=1, extra_args=[
        "--cache-mb", "0", "--scrub-interval-s", "0", "--metrics-public",
        "--volume-target-mb", "1",
        "--compact-interval-s", "1" if compact else "0", "--compact-ratio", "0.5", *extra])
    mc.RUNNING.append(b)
    b.start(timeout_s=120)
    return b


def disk_bytes(dirs):
    """Bytes allocated on disk by every file of the set."""
    n = 0
    for d in dirs:
        for root, _, files in os.walk(d):
            for f in files:
                try:
                    n += os.stat(os.path.join(root, f)).st_blocks * 512
                except FileNotFoundError:
                    pass
    return n


def log_count(b, pattern):
    with open(b.log_path, "rb") as f:
        return len(re.findall(pattern, f.read().decode(errors="replace")))


def put_many(s3, n, prefix):
    sizes = [4 * KiB, 40 * KiB, 200 * KiB, 700 * KiB]
    want = {}
    for i in range(n):
        key = f"{prefix}/obj-{i:04d}"
        data = mc.body(key, sizes[(i // 4) % len(sizes)] + (i % 5) * 700)
        s3.put_object(Bucket=mc.BUCKET, Key=key, Body=data)
        want[key] = mc.sha(data)
    return want


def gone_404(s3, keys, what):
    bad = 0
    for k in keys:
        try:
            s3.head_object(Bucket=mc.BUCKET, Key=k)
            bad += 1
        except ClientError as e:
            if e.response["ResponseMetadata"]["HTTPStatusCode"] != 404:
                bad += 1
    check(bad == 0, f"{what}: {bad} of {len(keys)} deleted objects answer other than 404")


def scenarios(root, n_objects):
    dirs = [os.path.join(root, f"d{i}") for i in range(6)]
    srv = start(dirs)
    check(mc.log_has(srv, r"redundancy: ec:4\+2 \(6 data directories"),
          "6 dirs without --redundancy: the start line says ec:4+2")
    check(mc.log_has(srv, r"the default for that count"), "the default is said at start")
    s3 = mc.client(srv)
    s3.create_bucket(Bucket=mc.BUCKET)
    t0 = time.time()
    want = put_many(s3, n_objects, "c")
    stripes = ec.wait_stripes(srv, 3)
    print(f"PUT {len(want)} objects, {stripes} stripes in {time.time() - t0:.1f}s", flush=True)
    # 3 of every 4 objects deleted or overwritten (the new bytes land in the open volume).
    deleted = []
    for i, key in enumerate(sorted(want)):
        if i % 4 == 1:
            data = mc.body(key + "v2", 3 * KiB + i)
            s3.put_object(Bucket=mc.BUCKET, Key=key, Body=data)
            want[key] = mc.sha(data)
        elif i % 4 != 0:
            s3.delete_object(Bucket=mc.BUCKET, Key=key)
            deleted.append(key)
    for k in deleted:
        del want[k]
    srv.stop()
    with open(os.path.join(dirs[0], "bale-layout.json")) as f:
        check('"redundancy": "ec:4+2"' in f.read(), "layout file records the default ec:4+2")
    before = disk_bytes(dirs)
    parity_before = ec.count_files(dirs, "parity-")
    srv = start(dirs, compact=True)
    deadline = time.time() + 60
    while time.time() < deadline and ec.stripe_metric(srv) >= stripes:
        time.sleep(0.5)
    time.sleep(3)  # let the pass in progress finish
    left = ec.stripe_metric(srv)
    check(left < stripes, f"stripes compacted: {stripes} -> {left}")
    check(mc.log_has(srv, r"stripe compacted"), "stripe compaction logged")
    mc.verify(mc.client(srv), want, "after stripe compaction", ranged=True)
    gone_404(mc.client(srv), deleted, "after stripe compaction")
    srv.stop()
    after = disk_bytes(dirs)
    print(f"disk bytes {before} -> {after} ({after / before:.2f}x), stripes {stripes} -> {left}, "
          f"parity files {parity_before} -> {ec.count_files(dirs, 'parity-')}", flush=True)
    check(after < before * 0.7, f"disk bytes fell: {before} -> {after}")
    check(ec.count_files(dirs, "parity-") == 2 * left, "parity files: 2 per stripe left")
    check(ec.count_files(dirs, "stripe-") == 3 * left, "manifests: 3 per stripe left")
    for gone in ([1, 4], [0, 2]):
        ec.away(dirs, gone)
        srv = start(dirs)
        mc.verify(mc.client(srv), want, f"compacted, d{gone[0]}+d{gone[1]} removed", ranged=True)
        srv.stop()
        ec.back(dirs, gone)
    return want


def kill_loop(root, kills):
    """SIGKILL while stripes are compacted: writers PUT 200-700 KiB objects (stripes keep
    forming) and delete most of what they wrote (stripes keep dying)."""
    dirs = [os.path.join(root, f"k{i}") for i in range(6)]
    acked = {}
    deleted = set()
    lock = threading.Lock()
    rng = random.Random(1443)
    srv = start(dirs)
    s3 = mc.client(srv)
    s3.create_bucket(Bucket=mc.BUCKET)
    # Stripes to compact from the first kill point on: the writers delete these below.
    for t in range(2):
        for key, h in put_many(s3, 60, f"k/{t}").items():
            acked[key] = h
    ec.wait_stripes(srv, 3)
    srv.stop()
    n = 0
    compacted = 0
    errors = []
    for k in range(kills):
        srv = start(dirs, compact=True)
        stop = threading.Event()

        def writer(t):
            nonlocal n
            c = mc.client(srv)
            r = random.Random(t * 1000 + k)
            while not stop.is_set():
                with lock:
                    n += 1
                    key = f"k/{t}/{n}"
                    victims = [x for x in acked if x.startswith(f"k/{t}/")]
                data = mc.body(key, r.choice([30 * KiB, 200 * KiB, 700 * KiB]))
                try:
                    c.put_object(Bucket=mc.BUCKET, Key=key, Body=data)
                    with lock:
                        acked[key] = mc.sha(data)
                    for v in r.sample(victims, min(len(victims) // 8, 3)):
                        with lock:
                            acked.pop(v, None)  # uncertain until the DELETE is acknowledged
                        c.delete_object(Bucket=mc.BUCKET, Key=v)
                        with lock:
                            deleted.add(v)
                except ClientError as e:
                    with lock:
                        errors.append(f"{e.response['ResponseMetadata']['HTTPStatusCode']} "
                                      f"{e.response['Error']['Code']}")
                except Exception:
                    continue

        ts = [threading.Thread(target=writer, args=(t,)) for t in range(2)]
        for t in ts:
            t.start()
        time.sleep(rng.uniform(1.0, 2.5))
        srv.kill9()
        stop.set()
        for t in ts:
            t.join()
        compacted += log_count(srv, r"stripe compacted")
        if k % 5 == 4 or k == kills - 1:
            gone = [k % 6, (k + 2) % 6]
            ec.away(dirs, gone)
            srv = start(dirs)
            mc.verify(mc.client(srv), dict(acked),
                      f"kill {k + 1}: d{gone[0]}+d{gone[1]} removed", ranged=False)
            srv.stop()
            ec.back(dirs, gone)
    srv = start(dirs)
    mc.verify(mc.client(srv), dict(acked), f"after {kills} kill points, all dirs", ranged=False)
    gone_404(mc.client(srv), sorted(deleted), f"after {kills} kill points")
    srv.stop()
    check(compacted > 0, "kill loop: stripes were compacted between the kill points")
    check(not errors, f"kill loop: {len(errors)} requests answered with an error: {errors[:5]}")
    print(f"kill loop: {kills} kill points, {len(acked)} acknowledged objects, "
          f"{len(deleted)} deletes, {compacted} stripe compactions logged", flush=True)


def main():
    mc.run("ec-compact", scenarios, kill_loop, default_kills=15)


if __name__ == "__main__":
    main()
