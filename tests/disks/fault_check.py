#!/usr/bin/env python3
"""Disks that fill up, turn read-only or fail while serving (issue 14, ADR 19), against the
real binary, with one of six `ec:4+2` data directories on a loop-mounted ext4 file:

  1. full: the loop disk filled (all but 4 MiB) while serving: every PUT is answered 200 or
     507 XBaleStorageFull (at least one 507, never 500), every acknowledged object reads back
     byte-identical, also after a restart on the full disk; the filler removed, PUTs work again
     without a restart;
  2. read-only: the loop disk remounted read-only, bale restarted: it starts, every object is
     byte-identical (ranged too), PUTs to shards with a copy there get 503 ServiceUnavailable
     and the others 200; back read-write: the stale copies are rebuilt and everything reads;
  3. dies while serving: the loop file system shut down (EXT4_IOC_SHUTDOWN: every I/O on it
     fails with EIO) under concurrent PUT and GET load: no GET returns wrong bytes or an error,
     PUTs are answered 200 or 503 ServiceUnavailable (never 500), the failed copies are counted
     in /metrics; bale stops cleanly; the dead disk replaced by an empty directory is rebuilt
     at start, and with two OTHER directories removed every acknowledged object is still
     byte-identical.

Needs root (mount -o loop, the shutdown ioctl). Usage: fault_check.py [--objects N].
Exits 1 on any failure.
"""

import argparse
import fcntl
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ec_check as ec  # noqa: E402
import mirror_check as mc  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

KiB = mc.KiB
check = mc.check
# _IOR('X', 125, __u32): ext4's shutdown ioctl; flag 2 = EXT4_GOING_FLAGS_NOLOGFLUSH.
EXT4_IOC_SHUTDOWN = 0x8004587D
LOOP_DIR = 2
LOOP_SIZE = "400M"


def sh(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def answer(e):
    return f"{e.response['ResponseMetadata']['HTTPStatusCode']} {e.response['Error']['Code']}"


def put_some(s3, prefix, n, size, acked):
    """PUTs n objects; returns {answer: count}; acknowledged ones go into `acked`."""
    codes = {}
    for i in range(n):
        key = f"{prefix}/{i:03d}"
        data = mc.body(key, size)
        try:
            s3.put_object(Bucket=mc.BUCKET, Key=key, Body=data)
            acked[key] = mc.sha(data)
            code = "200"
        except ClientError as e:
            code = answer(e)
        codes[code] = codes.get(code, 0) + 1
    return codes


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def full(dirs, want):
    loop = dirs[LOOP_DIR]
    srv = ec.start(dirs)
    s3 = mc.client(srv)
    filler = os.path.join(loop, "filler")
    with open(filler, "wb") as f:
        left = free_bytes(loop) - 4 * mc.MiB
        while left > 0:
            n = min(left, 8 * mc.MiB)
            f.write(b"\0" * n)
            left -= n
        f.flush()
        os.fsync(f.fileno())
    codes = put_some(s3, "full", 40, 300 * KiB, want)
    print(f"full disk: PUT answers {codes}", flush=True)
    check(set(codes) <= {"200", "507 XBaleStorageFull"}, f"full disk: PUTs answered {codes}")
    check(codes.get("507 XBaleStorageFull", 0) > 0, "full disk: some PUTs refused with 507")
    check(codes.get("200", 0) > 0, "full disk: PUTs to shards without a copy there still work")
    mc.verify(s3, want, "full disk", ranged=False)
    srv.stop()
    srv = ec.start(dirs)
    s3 = mc.client(srv)
    mc.verify(s3, want, "restarted on the full disk", ranged=False)
    os.remove(filler)
    codes = put_some(s3, "freed", 20, 300 * KiB, want)
    check(codes == {"200": 20}, f"filler removed: PUTs answered {codes}, want all 200")
    srv.stop()


def read_only(dirs, want):
    loop = dirs[LOOP_DIR]
    sh("mount", "-o", "remount,ro", loop)
    try:
        srv = ec.start(dirs)
        check(mc.log_has(srv, r"DEGRADED"), "read-only dir: start line says degraded")
        s3 = mc.client(srv)
        mc.verify(s3, want, "read-only dir", ranged=True)
        codes = put_some(s3, "ro", 20, 5000, want)
        print(f"read-only dir: PUT answers {codes}", flush=True)
        check(set(codes) <= {"200", "503 ServiceUnavailable"}, f"read-only dir: PUTs answered {codes}")
        check(codes.get("503 ServiceUnavailable", 0) > 0,
              "read-only dir: PUTs to shards with a copy there refused with 503")
        srv.stop()
    finally:
        sh("mount", "-o", "remount,rw", loop)
    srv = ec.start(dirs)
    s3 = mc.client(srv)
    codes = put_some(s3, "rw-again", 10, 5000, want)
    check(codes == {"200": 10}, f"read-write again: PUTs answered {codes}, want all 200")
    mc.verify(s3, want, "read-write again", ranged=False)
    srv.stop()


def dies(dirs, want, root):
    loop = dirs[LOOP_DIR]
    srv = ec.start(dirs)
    keys = list(want)
    wrong = []
    put_codes = {}
    lock = threading.Lock()
    stop = threading.Event()

    def reader(seed):
        c = mc.client(srv)
        rng = random.Random(seed)
        while not stop.is_set():
            key = rng.choice(keys)
            try:
                got = c.get_object(Bucket=mc.BUCKET, Key=key)["Body"].read()
                if mc.sha(got) != want[key]:
                    with lock:
                        wrong.append(f"{key}: wrong bytes")
            except Exception as e:  # noqa: BLE001 - every failure of a GET is a finding here
                with lock:
                    wrong.append(f"{key}: {e}")

    def writer(t):
        c = mc.client(srv)
        i = 0
        while not stop.is_set():
            i += 1
            key = f"dies/{t}/{i}"
            data = mc.body(key, random.Random(key).choice([3 * KiB, 40 * KiB, 400 * KiB]))
            try:
                c.put_object(Bucket=mc.BUCKET, Key=key, Body=data)
                code = "200"
                with lock:
                    want[key] = mc.sha(data)
            except ClientError as e:
                code = answer(e)
            except Exception as e:  # noqa: BLE001
                code = f"no answer: {type(e).__name__}"
            with lock:
                put_codes[code] = put_codes.get(code, 0) + 1

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(2)]
    threads += [threading.Thread(target=writer, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    fd = os.open(loop, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", 2))
    finally:
        os.close(fd)
    time.sleep(3.0)
    stop.set()
    for t in threads:
        t.join()
    print(f"disk died while serving: PUT answers {put_codes}", flush=True)
    check(not wrong, f"disk died: {len(wrong)} GETs failed or wrong: {wrong[:5]}")
    check(set(put_codes) <= {"200", "503 ServiceUnavailable"},
          f"disk died: PUTs answered {put_codes}, want only 200 or 503")
    check(put_codes.get("503 ServiceUnavailable", 0) > 0, "disk died: writes to its shards refused")
    failures = ec.metric_sum(srv, "bale_copy_failures_total")
    check(failures > 0, f"disk died: copies marked failed in /metrics ({failures})")
    check(mc.log_has(srv, r"marked failed"), "disk died: the failed copy is logged")
    mc.verify(mc.client(srv), want, "disk died, still serving", ranged=False)
    code = srv.stop()
    check(code == 0, f"disk died: bale stopped with exit code {code}")
    # The dead disk is replaced by an empty directory (the mount point, unmounted).
    sh("umount", "-l", loop)
    srv = ec.start(dirs, ["--rebuild-rate-mb", "0"])
    mc.verify(mc.client(srv), want, "dead disk replaced and rebuilt", ranged=False)
    # Stripe files are rebuilt in the background while serving: wait for them.
    deadline = time.time() + 120
    while time.time() < deadline and ec.stripe_metric(srv, "bale_stripe_files_lost") > 0:
        time.sleep(0.5)
    check(ec.stripe_metric(srv, "bale_stripe_files_lost") == 0, "dead disk replaced: stripe files rebuilt")
    srv.stop()
    for gone in ([4, 5], [0, 1]):
        ec.away(dirs, gone)
        srv = ec.start(dirs)
        mc.verify(mc.client(srv), want, f"rebuilt d{LOOP_DIR}, d{gone[0]}+d{gone[1]} removed",
                  ranged=False)
        srv.stop()
        ec.back(dirs, gone)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=60)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bale-fault-")
    dirs = [os.path.join(root, f"d{i}") for i in range(6)]
    img = os.path.join(root, "loop.img")
    loop = dirs[LOOP_DIR]
    os.makedirs(loop)
    try:
        sh("truncate", "-s", LOOP_SIZE, img)
        sh("mkfs.ext4", "-q", "-F", img)
        sh("mount", "-o", "loop", img, loop)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        shutil.rmtree(root, ignore_errors=True)
        print(f"fault check: SKIPPED, a loop-mounted ext4 is not available here ({e})")
        return
    try:
        srv = ec.start(dirs)
        s3 = mc.client(srv)
        s3.create_bucket(Bucket=mc.BUCKET)
        want = ec.put_objects(s3, args.objects, "first")
        ec.wait_stripes(srv, 1)
        srv.stop()
        check(os.listdir(loop) and any(f.startswith("shard-") for f in os.listdir(loop)),
              "the loop disk holds shard copies")
        full(dirs, want)
        read_only(dirs, want)
        dies(dirs, want, root)
    finally:
        for b in mc.RUNNING:
            b.stop()
        subprocess.run(["umount", "-l", loop], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    if mc.FAILURES:
        print(f"fault check: {len(mc.FAILURES)} failure(s)")
        sys.exit(1)
    print("fault check: passed")


if __name__ == "__main__":
    main()
