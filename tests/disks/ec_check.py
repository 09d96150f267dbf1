#!/usr/bin/env python3
"""Erasure-coded data directories (issue 14, ADR 19) against the real binary.

Six --data directories with --redundancy ec:4+2 (every shard's journal, snapshot and open
volumes on 3 of them). PUT mixed objects (4 KiB to 64 MiB, one multipart), then, restarting
bale each time:

  1. one dir removed, two adjacent dirs removed, two non-adjacent dirs removed: every object
     byte-identical (sha256), ranged reads too; PUTs to a shard that lost a copy get 503;
  2. one dir's volume files overwritten with random bytes: every object byte-identical;
  3. three dirs removed: the start is refused, clearly (nothing served);
  4. SIGKILL during writes (--kills points): every acknowledged object byte-identical after a
     restart with all dirs, and (every 5th point) with two dirs removed.

Usage: ec_check.py [--kills N] [--objects N]. Exits 1 on any failure.
"""

import os
import random
import re
import shutil
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mirror_check as mc  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

KiB = mc.KiB
MiB = mc.MiB
check = mc.check
# Small volumes so that several stripes form.
EC = ["--redundancy", "ec:4+2"]


def put_objects(s3, n, prefix):
    """PUTs n objects of mixed sizes (4 KiB - 64 MiB: one of 64 MiB per 997) plus one
    multipart; returns {key: sha}."""
    sizes = [4 * KiB, 13 * KiB, 64 * KiB, 300 * KiB, 1 * MiB]
    want = {}
    for i in range(n):
        size = sizes[i % len(sizes)] + (i % 7) * 512
        if i % 41 == 5:
            size = 8 * MiB
        if i % 997 == 7:
            size = 64 * MiB
        key = f"{prefix}/obj-{i:04d}"
        data = mc.body(key, size)
        s3.put_object(Bucket=mc.BUCKET, Key=key, Body=data)
        want[key] = mc.sha(data)
    key = f"{prefix}/multipart"
    parts = [mc.body(key + str(p), 5 * MiB) for p in range(2)] + [mc.body(key + "2", 1 * MiB)]
    up = s3.create_multipart_upload(Bucket=mc.BUCKET, Key=key)
    etags = []
    for p, data in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=mc.BUCKET, Key=key, UploadId=up["UploadId"], PartNumber=p,
                           Body=data)
        etags.append({"PartNumber": p, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=mc.BUCKET, Key=key, UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": etags})
    want[key] = mc.sha(b"".join(parts))
    return want


def some_refused(s3, what):
    """PUTs to 20 keys: at least one lands on a shard that lost a copy and gets 503
    ServiceUnavailable; no other error."""
    refused = 0
    for i in range(20):
        try:
            s3.put_object(Bucket=mc.BUCKET, Key=f"probe-{what}-{i}", Body=b"y" * 5000)
        except ClientError as e:
            code = e.response["Error"]["Code"]
            status = e.response["ResponseMetadata"]["HTTPStatusCode"]
            check(status == 503 and code == "ServiceUnavailable",
                  f"{what}: PUT refused with {status} {code}, want 503 ServiceUnavailable")
            refused += 1
    check(refused > 0, f"{what}: no PUT refused although shards lost a copy")


def stripe_metric(srv, name="bale_stripes"):
    m = re.search(rf"^{name} (\d+)", mc.metrics(srv), re.M)
    return int(m.group(1)) if m else 0


def wait_stripes(srv, at_least, timeout_s=60):
    """Waits until at least `at_least` stripes are encoded and the count is stable for 2 s."""
    deadline = time.time() + timeout_s
    last, since = -1, time.time()
    while time.time() < deadline:
        n = stripe_metric(srv)
        if n != last:
            last, since = n, time.time()
        elif n >= at_least and time.time() - since > 2:
            return n
        time.sleep(0.3)
    check(False, f"stripes: {last} encoded after {timeout_s}s, want >= {at_least}")
    return last


def count_files(dirs, prefix):
    n = 0
    for d in dirs:
        for root, _, files in os.walk(d):
            n += sum(1 for f in files if f.startswith(prefix))
    return n


def start(dirs, extra=(), volume_target_mb=2, scrub_interval_s=0):
    return mc.start(dirs, [*EC, "--volume-target-mb", str(volume_target_mb), *extra],
                    scrub_interval_s=scrub_interval_s)


def metric_sum(srv, name):
    """A per-shard counter summed over its `shard` labels."""
    return sum(int(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\d+)", mc.metrics(srv), re.M))


def parity_scrub(dirs, want, stripes):
    """One parity file damaged on disk: the scrub checks every stripe's parity against its
    members, counts and logs the damaged one; GETs (which never read parity) stay correct.
    The file is put back afterwards."""
    victim = None
    for d in dirs:
        for root_dir, _, files in os.walk(d):
            for f in sorted(files):
                if f.startswith("parity-") and victim is None:
                    victim = os.path.join(root_dir, f)
    check(victim is not None, "parity scrub: a parity file to damage")
    if victim is None:
        return
    with open(victim, "rb") as f:
        saved = f.read()
    with open(victim, "r+b") as f:
        f.seek(len(saved) // 2)
        f.write(bytes(b ^ 0x5A for b in saved[len(saved) // 2:len(saved) // 2 + 512]))
    # Unpaced (the default 16 MB/s takes minutes for the hundreds of stripes of a long run).
    srv = start(dirs, ["--scrub-rate-mb", "0"], scrub_interval_s=1)
    deadline = time.time() + 90
    while time.time() < deadline and metric_sum(srv, "bale_shard_scrub_stripes_checked_total") < stripes:
        time.sleep(0.5)
    checked = metric_sum(srv, "bale_shard_scrub_stripes_checked_total")
    bad = metric_sum(srv, "bale_shard_scrub_bad_stripes_total")
    check(checked >= stripes, f"parity scrub: {checked} stripes checked, want >= {stripes}")
    check(bad == 1, f"parity scrub: {bad} bad stripes counted, want 1")
    check(mc.log_has(srv, r"stripe parity does not match its members"), "parity scrub: the bad stripe is logged")
    mc.verify(mc.client(srv), want, "parity damaged", ranged=False)
    srv.stop()
    with open(victim, "wb") as f:
        f.write(saved)


def away(dirs, idx):
    for i in idx:
        os.rename(dirs[i], dirs[i] + ".away")


def back(dirs, idx):
    for i in idx:
        os.rename(dirs[i] + ".away", dirs[i])


def scenarios(root, n_objects):
    dirs = [os.path.join(root, f"d{i}") for i in range(6)]
    srv = start(dirs)
    check(mc.log_has(srv, r"redundancy: ec:4\+2 \(6 data directories"), "start line says ec:4+2")
    s3 = mc.client(srv)
    s3.create_bucket(Bucket=mc.BUCKET)
    t0 = time.time()
    want = put_objects(s3, n_objects, "first")
    total = sum(1 for _ in want)
    print(f"PUT {total} objects in {time.time() - t0:.1f}s", flush=True)
    stripes = wait_stripes(srv, 2)
    print(f"{stripes} stripes encoded", flush=True)
    srv.stop()
    parity = count_files(dirs, "parity-")
    check(parity == 2 * stripes, f"parity files on disk: {parity}, want {2 * stripes}")
    # A striped volume has one file (its member), not m+1 copies.
    check(count_files(dirs, "stripe-") == 3 * stripes, "a manifest per stripe in each of 3 copies")
    with open(os.path.join(dirs[0], "bale-layout.json")) as f:
        check('"redundancy": "ec:4+2"' in f.read(), "layout file records ec:4+2")
    parity_scrub(dirs, want, stripes)
    # Every shard on 3 dirs: shard 0 (home d0) in d0, d1, d2 and not in d3.
    check(all(os.path.isfile(os.path.join(dirs[i], "shard-0000", "index.snap")) for i in (0, 1, 2)),
          "shard 0 has copies in d0, d1, d2")

    # 1. Dirs removed (up to m = 2): everything readable, PUTs to degraded shards refused.
    for gone in ([1], [1, 2], [0, 3], [5, 0]):
        what = "dirs " + "+".join(f"d{i}" for i in gone) + " removed"
        away(dirs, gone)
        srv = start(dirs)
        check(mc.log_has(srv, r"DEGRADED"), f"{what}: start line says degraded")
        s3 = mc.client(srv)
        mc.verify(s3, want, what, ranged=len(gone) == 2)
        check(stripe_metric(srv, "bale_degraded_reads_total") > 0,
              f"{what}: reads were decoded from stripes (bale_degraded_reads_total)")
        some_refused(s3, what)
        srv.stop()
        check(not any(os.path.exists(dirs[i]) for i in gone), f"{what}: not recreated")
        back(dirs, gone)

    # 2. One dir's volumes overwritten with random bytes (before the start).
    victim = dirs[2]
    saved = os.path.join(root, "d2.saved")
    shutil.copytree(victim, saved)
    for sd in os.listdir(victim):
        p = os.path.join(victim, sd)
        if not os.path.isdir(p):
            continue
        for f in os.listdir(p):
            if f.startswith("vol-"):
                fp = os.path.join(p, f)
                with open(fp, "r+b") as fh:
                    fh.write(os.urandom(os.path.getsize(fp)))
    srv = start(dirs)
    mc.verify(mc.client(srv), want, "d2's volumes overwritten", ranged=True)
    check(stripe_metric(srv, "bale_degraded_reads_total") > 0,
          "overwritten members: reads decoded from stripes")
    srv.stop()
    shutil.rmtree(victim)
    os.rename(saved, victim)

    # 3. Three dirs removed: refused at start, nothing served.
    away(dirs, [0, 1, 2])
    try:
        start(dirs).stop()
        check(False, "three dirs removed: bale started")
    except RuntimeError as e:
        check("no good copy left" in str(e), f"three dirs removed: clear refusal ({e})")
    back(dirs, [0, 1, 2])
    srv = start(dirs)
    mc.verify(mc.client(srv), want, "all dirs back", ranged=False)
    srv.stop()

    # 4. An emptied dir is rebuilt (its shard copies at start, its stripe files while
    #    serving), then two OTHER dirs removed: everything is still served (partly from the
    #    rebuilt files).
    os.rename(dirs[3], dirs[3] + ".old")
    os.mkdir(dirs[3])
    srv = start(dirs, ["--rebuild-rate-mb", "0"])
    deadline = time.time() + 60
    while time.time() < deadline and (stripe_metric(srv, "bale_stripe_files_lost") > 0
                                      or not mc.log_has(srv, r"stripe rebuild pass done")):
        time.sleep(0.2)
    check(mc.log_has(srv, r"stripe file rebuilt"), "stripe files rebuilt into the emptied dir")
    check(mc.log_has(srv, r"stripe rebuild progress"), "stripe rebuild progress logged")
    check(stripe_metric(srv, "bale_stripe_files_lost") == 0, "no stripe file lost after the rebuild")
    check(count_files(dirs, "parity-") >= 2 * stripes, "parity files back after the rebuild")
    more = put_objects(mc.client(srv), 10, "second")
    srv.stop()
    shutil.rmtree(dirs[3] + ".old")
    for gone in ([4, 5], [1, 2]):
        away(dirs, gone)
        srv = start(dirs)
        mc.verify(mc.client(srv), {**want, **more}, f"rebuilt d3, d{gone[0]}+d{gone[1]} removed",
                  ranged=True)
        srv.stop()
        back(dirs, gone)
    return want


def kill_loop(root, kills):
    """SIGKILL under PUT load with 1 MiB volumes: stripes are encoded all the time, so kill
    points fall during writes and during encoding."""
    dirs = [os.path.join(root, f"k{i}") for i in range(6)]
    acked = {}
    errors = []
    lock = threading.Lock()
    rng = random.Random(1442)
    srv = start(dirs)
    mc.client(srv).create_bucket(Bucket=mc.BUCKET)
    srv.stop()
    n = 0
    for k in range(kills):
        srv = start(dirs, volume_target_mb=1)
        stop = threading.Event()

        def writer(t):
            nonlocal n
            c = mc.client(srv)
            while not stop.is_set():
                with lock:
                    n += 1
                    key = f"k/{t}/{n}"
                size = rng.choice([3 * KiB, 20 * KiB, 200 * KiB, 1100 * KiB])
                data = mc.body(key, size)
                try:
                    c.put_object(Bucket=mc.BUCKET, Key=key, Body=data)
                except ClientError as e:
                    with lock:
                        errors.append(f"{key}: {e.response['ResponseMetadata']['HTTPStatusCode']} "
                                      f"{e.response['Error']['Code']}")
                    continue
                except Exception:
                    continue
                with lock:
                    acked[key] = mc.sha(data)

        ts = [threading.Thread(target=writer, args=(t,)) for t in range(3)]
        for t in ts:
            t.start()
        time.sleep(rng.uniform(0.2, 0.9))
        srv.kill9()
        stop.set()
        for t in ts:
            t.join()
        if k % 5 == 4 or k == kills - 1:
            gone = [k % 6, (k + 3) % 6]
            away(dirs, gone)
            srv = start(dirs)
            mc.verify(mc.client(srv), dict(acked),
                      f"kill {k + 1}: d{gone[0]}+d{gone[1]} removed", ranged=False)
            srv.stop()
            back(dirs, gone)
    srv = start(dirs)
    mc.verify(mc.client(srv), dict(acked), f"after {kills} kill points, all dirs", ranged=False)
    check(stripe_metric(srv) > 0, "kill loop: stripes were encoded")
    srv.stop()
    check(not errors, f"kill loop: {len(errors)} PUTs answered with an error: {errors[:5]}")
    print(f"kill loop: {kills} kill points, {len(acked)} acknowledged objects", flush=True)


def main():
    mc.run("ec", scenarios, kill_loop, default_kills=20)


if __name__ == "__main__":
    main()
