#!/usr/bin/env python3
"""Look for request stalls in bale under a Milvus-like small-object mix (FINDINGS.md item 2).

Several boto3 clients, each on its own keep-alive connection, run what Milvus's datanode and
GC do at this scale: PUT small binlogs, list with a prefix (recursive and with a delimiter),
GET, DELETE. Every request slower than --stall-ms is printed with its start time; at the end a
latency summary per operation. Uses tests/lib/baleproc.py to start bale (BALE_BIN overrides).

    tests/.venv-milvus/bin/python scripts/milvus/stall_probe.py --seconds 60 --clients 6
"""
import argparse
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--stall-ms", type=float, default=500)
    ap.add_argument("--cores", type=int, default=None)
    ap.add_argument("--endpoint", help="use a running server instead (with --access-key/--secret-key)")
    ap.add_argument("--access-key")
    ap.add_argument("--secret-key")
    a = ap.parse_args()

    import boto3
    from botocore.config import Config
    import baleproc

    server = None
    if a.endpoint:
        endpoint, ak, sk = a.endpoint, a.access_key, a.secret_key
    else:
        server = baleproc.Bale(cores=a.cores).start()
        endpoint, ak, sk = server.endpoint, server.access_key, server.secret_key
    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, max_pool_connections=2)

    def client():
        return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
                            region_name="us-east-1", config=cfg)

    c0 = client()
    c0.create_bucket(Bucket="stall")
    t0 = time.perf_counter()
    lat, stalls, errors = {}, [], []
    lock = threading.Lock()
    body = os.urandom(48 * 1024)

    def timed(op, fn):
        s = time.perf_counter()
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(f"{op}: {e!r}"[:200])
            return
        ms = (time.perf_counter() - s) * 1000
        with lock:
            lat.setdefault(op, []).append(ms)
            if ms > a.stall_ms:
                stalls.append((round(s - t0, 2), op, round(ms, 1)))

    def worker(i):
        c = client()
        n = 0
        while time.perf_counter() - t0 < a.seconds:
            key = f"files/insert_log/{i}/{n}"
            timed("PutObject", lambda: c.put_object(Bucket="stall", Key=key, Body=body))
            timed("ListObjectsV2", lambda: c.list_objects_v2(Bucket="stall", Prefix="files/"))
            timed("ListObjectsV2/delim", lambda: c.list_objects_v2(Bucket="stall", Prefix="files/", Delimiter="/"))
            timed("GetObject", lambda: c.get_object(Bucket="stall", Key=key)["Body"].read())
            if n >= 3:
                old = f"files/insert_log/{i}/{n - 3}"
                timed("DeleteObject", lambda: c.delete_object(Bucket="stall", Key=old))
            n += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(a.clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if server:
        server.cleanup()
    for op, v in sorted(lat.items()):
        print(f"{op:22s} n={len(v):<6d} p50 {pct(v, 50):7.2f} ms  p99 {pct(v, 99):8.2f} ms  max {max(v):8.2f} ms")
    print(f"requests over {a.stall_ms} ms: {len(stalls)}")
    for s in stalls[:30]:
        print(f"  at {s[0]:7.2f}s {s[1]:22s} {s[2]} ms")
    print(f"errors: {len(errors)} {errors[:5]}")


if __name__ == "__main__":
    main()
