#!/usr/bin/env python3
"""Mirrored data directories (issue 14, ADR 19) against the real binary.

Two --data directories (redundancy mirror, the default for two): PUT mixed objects (4 KiB to
16 MiB, one multipart), then, restarting bale each time:

  1. remove dir 1: every object byte-identical (sha256), ranged reads too, PUTs refused with
     503 ServiceUnavailable; the same with dir 2 removed;
  2. an empty dir in the failed position: rebuilt at start, then writes work, and with the
     OTHER dir removed everything (old and new) is still served;
  3. the old dir 2 (from before the rebuild, stale) put back: not trusted, rebuilt, and the
     objects written while it was away are served from it alone;
  4. one copy's volume overwritten with random bytes while running: GETs return the right
     bytes (CRC failure -> other copy), the copy is marked failed (metrics), PUTs get 503; at
     the next start it is rebuilt and writes work again;
  5. SIGKILL during writes (--kills points): after each, every acknowledged object is
     byte-identical when bale starts from ONE copy alone (alternately each), and from both.

Usage: mirror_check.py [--kills N] [--objects N]. Exits 1 on any failure.
"""

import argparse
import hashlib
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "lib"))

import baleproc  # noqa: E402
import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
BUCKET = "mirror"
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, flush=True)
    return cond


def client(b):
    return boto3.client(
        "s3", endpoint_url=b.endpoint, aws_access_key_id=b.access_key,
        aws_secret_access_key=b.secret_key, region_name=b.region,
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60,
                      s3={"addressing_style": "path"}))


def body(key, size):
    rnd = random.Random(key)
    return rnd.randbytes(size)


def sha(b):
    return hashlib.sha256(b).hexdigest()


RUNNING = []


def start(dirs, extra=(), scrub_interval_s=0):
    for old in RUNNING:
        old.stop()
    RUNNING.clear()
    b = baleproc.Bale(data_dirs=dirs, cores=1,
                      extra_args=["--cache-mb", "0", "--scrub-interval-s", str(scrub_interval_s),
                                  "--metrics-public",
                                  "--compact-interval-s", "0", *extra])
    RUNNING.append(b)
    b.start(timeout_s=120)
    return b


def put_objects(s3, n, prefix):
    """PUTs n objects of mixed sizes plus one multipart; returns {key: sha256}."""
    sizes = [4 * KiB, 13 * KiB, 64 * KiB, 300 * KiB, 1 * MiB]
    want = {}
    for i in range(n):
        size = sizes[i % len(sizes)] + (i % 7) * 512
        if i % 97 == 5:
            size = 16 * MiB
        key = f"{prefix}/obj-{i:04d}"
        data = body(key, size)
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        want[key] = sha(data)
    key = f"{prefix}/multipart"
    parts = [body(key + str(p), 5 * MiB) for p in range(2)] + [body(key + "2", 1 * MiB)]
    up = s3.create_multipart_upload(Bucket=BUCKET, Key=key)
    etags = []
    for p, data in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up["UploadId"], PartNumber=p, Body=data)
        etags.append({"PartNumber": p, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": etags})
    want[key] = sha(b"".join(parts))
    return want


def verify(s3, want, what, ranged=True):
    bad = 0
    for key, h in want.items():
        try:
            got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except ClientError as e:
            bad += 1
            check(False, f"{what}: GET {key}: {e}")
            continue
        if sha(got) != h:
            bad += 1
            check(False, f"{what}: GET {key}: wrong bytes")
            continue
        if ranged and len(got) > 10:
            lo = len(got) // 3
            hi = min(len(got) - 1, lo + 70_000)
            r = s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={lo}-{hi}")["Body"].read()
            if r != got[lo:hi + 1]:
                bad += 1
                check(False, f"{what}: ranged GET {key}: wrong bytes")
    check(bad == 0, f"{what}: {bad} of {len(want)} objects wrong")
    print(f"{what}: {len(want)} objects byte-identical", flush=True)


def expect_503(s3, what):
    try:
        s3.put_object(Bucket=BUCKET, Key="refused", Body=b"x" * 5000)
        check(False, f"{what}: PUT was accepted while a copy is missing")
    except ClientError as e:
        code = e.response["Error"]["Code"]
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        check(code == "ServiceUnavailable" and status == 503,
              f"{what}: PUT refused with {status} {code}, want 503 ServiceUnavailable")


def log_has(b, pattern):
    with open(b.log_path, "rb") as f:
        return re.search(pattern, f.read().decode(errors="replace")) is not None


def metrics(b):
    with urllib.request.urlopen(b.endpoint + "/metrics", timeout=5) as r:
        return r.read().decode()


def scenarios(root, n_objects):
    a, b = os.path.join(root, "a"), os.path.join(root, "b")
    srv = start([a, b])
    check(log_has(srv, r"redundancy: mirror \(2 data directories"), "start line says mirror")
    s3 = client(srv)
    s3.create_bucket(Bucket=BUCKET)
    want = put_objects(s3, n_objects, "first")
    srv.stop()
    with open(os.path.join(a, "bale-layout.json")) as f:
        check('"redundancy": "mirror"' in f.read(), "layout file records the redundancy")

    # A different --redundancy for an existing set is refused.
    try:
        start([a, b], ["--redundancy", "none"]).stop()
        check(False, "changing the redundancy was accepted")
    except RuntimeError as e:
        check("initialised with redundancy mirror" in str(e), f"redundancy change refused clearly: {e}")

    # 1. Either directory removed: reads from the other, writes refused.
    for gone in (a, b):
        os.rename(gone, gone + ".away")
        srv = start([a, b])
        check(log_has(srv, r"DEGRADED"), f"{gone} removed: start line says degraded")
        s3 = client(srv)
        verify(s3, want, f"{os.path.basename(gone)} removed")
        expect_503(s3, f"{os.path.basename(gone)} removed")
        srv.stop()
        check(not os.path.exists(gone), "a missing directory is not recreated")
        os.rename(gone + ".away", gone)

    # 2. An empty directory in the failed position is rebuilt.
    os.rename(b, b + ".old")
    os.mkdir(b)
    t0 = time.time()
    srv = start([a, b], ["--rebuild-rate-mb", "0"])
    check(log_has(srv, r"rebuild done"), "rebuild logged")
    print(f"rebuilt and started in {time.time() - t0:.1f}s", flush=True)
    s3 = client(srv)
    more = put_objects(s3, 20, "second")
    srv.stop()
    os.rename(a, a + ".away")
    srv = start([a, b])
    verify(client(srv), {**want, **more}, "rebuilt copy alone")
    srv.stop()
    os.rename(a + ".away", a)

    # 3. The old dir 2 back: stale (lower generation), rebuilt, then serves the new objects.
    os.rename(b, b + ".new")
    os.rename(b + ".old", b)
    srv = start([a, b])
    check(log_has(srv, r"stale"), "stale copy detected")
    srv.stop()
    shutil.rmtree(b + ".new")
    os.rename(a, a + ".away")
    srv = start([a, b])
    verify(client(srv), {**want, **more}, "formerly stale copy alone", ranged=False)
    srv.stop()
    os.rename(a + ".away", a)

    # 4. One copy's volume overwritten with random bytes while running.
    srv = start([a, b])
    s3 = client(srv)
    vols = sorted(os.path.join(a, "shard-0000", f) for f in os.listdir(os.path.join(a, "shard-0000"))
                  if f.startswith("vol-"))
    for v in vols:
        size = os.path.getsize(v)
        with open(v, "r+b") as f:
            f.write(os.urandom(size))
            f.flush()
            os.fsync(f.fileno())
    verify(s3, {**want, **more}, "one copy overwritten", ranged=False)
    m = metrics(srv)
    fails = re.search(r"^bale_copy_failures_total (\d+)", m, re.M)
    check(fails and int(fails.group(1)) >= 1, "copy failure counted in /metrics")
    check(log_has(srv, r"marked failed"), "failed copy logged")
    # The shard whose copy failed refuses writes (keys hash to either shard: try several).
    refused = 0
    for i in range(20):
        try:
            s3.put_object(Bucket=BUCKET, Key=f"after-fail-{i}", Body=b"y" * 5000)
        except ClientError as e:
            refused += e.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    check(refused > 0, "writes to the shard with a failed copy are refused with 503")
    srv.stop()
    srv = start([a, b])
    check(log_has(srv, r"stale"), "failed copy rebuilt at the next start")
    s3 = client(srv)
    s3.put_object(Bucket=BUCKET, Key="after-rebuild", Body=b"z" * 5000)
    verify(s3, {**want, **more}, "after the failed copy's rebuild", ranged=False)
    srv.stop()


def kill_loop(root, kills):
    a, b = os.path.join(root, "k-a"), os.path.join(root, "k-b")
    acked = {}
    refusals = []
    lock = threading.Lock()
    rng = random.Random(14)
    srv = start([a, b])
    client(srv).create_bucket(Bucket=BUCKET)
    srv.stop()
    n = 0
    for k in range(kills):
        srv = start([a, b])
        s3 = client(srv)
        stop = threading.Event()

        def writer(t):
            nonlocal n
            c = client(srv)
            while not stop.is_set():
                with lock:
                    n += 1
                    key = f"k/{t}/{n}"
                size = rng.choice([3 * KiB, 20 * KiB, 200 * KiB, 1100 * KiB])
                data = body(key, size)
                try:
                    c.put_object(Bucket=BUCKET, Key=key, Body=data)
                except ClientError as e:
                    # An answered refusal while both copies are there is a bug (a kill only
                    # cuts connections).
                    with lock:
                        refusals.append(f"{key}: {e.response['ResponseMetadata']['HTTPStatusCode']} "
                                        f"{e.response['Error']['Code']}")
                    continue
                except Exception:
                    continue
                with lock:
                    acked[key] = sha(data)

        ts = [threading.Thread(target=writer, args=(t,)) for t in range(3)]
        for t in ts:
            t.start()
        time.sleep(rng.uniform(0.2, 0.8))
        srv.kill9()
        stop.set()
        for t in ts:
            t.join()
        # Every 10th kill point: start from one copy alone (alternately) and check all.
        if k % 10 == 9 or k == kills - 1:
            gone = a if (k // 10) % 2 == 0 else b
            os.rename(gone, gone + ".away")
            srv = start([a, b])
            verify(client(srv), dict(acked), f"kill {k + 1}: from {os.path.basename(b if gone == a else a)} alone",
                   ranged=False)
            srv.stop()
            os.rename(gone + ".away", gone)
        del s3
    srv = start([a, b])
    verify(client(srv), dict(acked), f"after {kills} kill points, both copies", ranged=False)
    srv.stop()
    check(not refusals, f"kill loop: {len(refusals)} PUTs answered with an error: {refusals[:5]}")
    print(f"kill loop: {kills} kill points, {len(acked)} acknowledged objects", flush=True)


def run(name, scenarios_fn, kill_loop_fn, default_kills):
    """The command line both disk checks share: `--only scenarios|kills`, counts, a temporary
    root removed at the end, servers stopped, exit 1 on any failed check."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=default_kills)
    ap.add_argument("--objects", type=int, default=200)
    ap.add_argument("--only", choices=["scenarios", "kills"])
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix=f"bale-{name}-")
    try:
        if args.only != "kills":
            scenarios_fn(root, args.objects)
        if args.only != "scenarios":
            kill_loop_fn(root, args.kills)
    finally:
        for b in RUNNING:
            b.stop()
        shutil.rmtree(root, ignore_errors=True)
    if FAILURES:
        print(f"{name} check: {len(FAILURES)} failure(s)")
        sys.exit(1)
    print(f"{name} check: passed")


def main():
    run("mirror", scenarios, kill_loop, default_kills=50)


if __name__ == "__main__":
    main()
