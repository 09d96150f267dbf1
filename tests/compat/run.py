#!/usr/bin/env python3
"""Client compatibility suite: the same S3 flow with each real client against one server.

Usage:
  run.py                      start bale (tests/lib/baleproc.py) and run every client
  run.py boto3 rclone         only these clients
  run.py --endpoint http://127.0.0.1:PORT --access-key K --secret-key S
                              run against a server that is already running (a peer)
  run.py --gateway [clients]  start SeaweedFS (tests/lib/weedproc.py) and a bale gateway in
                              front of it (`bale serve --upstream ...`), run through the gateway
  run.py --seaweedfs [clients]
                              start SeaweedFS and run against it directly (the upstream's own
                              answers, to tell its limits from the gateway's)

Clients: rust-sdk, boto3, awscli, minio, rclone, s3cmd. Each runs in its own process with a
wall-clock limit (COMPAT_CLIENT_TIMEOUT, default 180 s) and its own bucket, prints
`PASS <client>` or `FAIL <client>: <reason>`; the suite ends with `N passed, N failed` and
exits 1 if any failed.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import common  # noqa: E402

RUST_BIN = os.environ.get(
    "COMPAT_RUST_BIN", os.path.join(ROOT, "tests", "rust-sdk", "target", "release", "bale-compat-rust-sdk"))

CLIENTS = ["rust-sdk", "boto3", "awscli", "minio", "rclone", "s3cmd"]


def command_for(client):
    py = sys.executable
    if client == "rust-sdk":
        return [RUST_BIN]
    return [py, os.path.join(HERE, "clients", client.replace("-", "_") + "_flow.py")]


def run_client(client, env, timeout_s, log_dir):
    cmd = command_for(client)
    if client == "rust-sdk" and not os.path.exists(RUST_BIN):
        return False, f"FAIL {client}: binary {RUST_BIN} missing (build tests/rust-sdk)", ""
    t0 = time.time()
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout_s, stdin=subprocess.DEVNULL)
        out = p.stdout.decode(errors="replace")
        rc = p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        last_step = [ln for ln in out.splitlines() if ln.startswith(f"[{client}]")]
        where = last_step[-1] if last_step else "before the first step"
        return False, f"FAIL {client}: timed out after {timeout_s}s (last step: {where})", out
    finally:
        dt = time.time() - t0
    with open(os.path.join(log_dir, f"{client}.log"), "w") as f:
        f.write(out)
    lines = [ln for ln in out.splitlines() if ln.startswith(("PASS ", "FAIL "))]
    verdict = lines[-1] if lines else None
    if verdict == f"PASS {client}" and rc == 0:
        return True, f"PASS {client} ({dt:.1f}s)", out
    if verdict is None or verdict.startswith("PASS"):
        tail = " | ".join(out.strip().splitlines()[-5:])
        verdict = f"FAIL {client}: exit {rc} without a FAIL line; output tail: {tail[-600:]}"
    return False, verdict, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("clients", nargs="*", default=CLIENTS)
    ap.add_argument("--endpoint")
    ap.add_argument("--access-key")
    ap.add_argument("--secret-key")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--cores", type=int, default=2, help="bale --cores (2: requests cross shards)")
    ap.add_argument("--client-timeout", type=int, default=int(os.environ.get("COMPAT_CLIENT_TIMEOUT", "180")))
    ap.add_argument("--keep-logs", action="store_true")
    ap.add_argument("--gateway", action="store_true",
                    help="start SeaweedFS and a bale gateway in front of it; run through the gateway")
    ap.add_argument("--seaweedfs", action="store_true", help="start SeaweedFS and run against it directly")
    ap.add_argument("--gateway-arg", action="append", default=[],
                    help="extra `bale serve` argument for --gateway (repeat), e.g. --gateway-arg=--revalidate=ttl:1000")
    a = ap.parse_args()
    if sum(map(bool, (a.endpoint, a.gateway, a.seaweedfs))) > 1:
        ap.error("give at most one of --endpoint, --gateway, --seaweedfs")
    for c in a.clients:
        if c not in CLIENTS:
            ap.error(f"unknown client {c}; have {', '.join(CLIENTS)}")

    work = tempfile.mkdtemp(prefix="bale-compat-")
    big = os.path.join(work, "big.bin")
    common.make_big(big)
    server = None
    weed = None
    peer = os.environ.get("COMPAT_PEER", "")
    if a.endpoint:
        endpoint, ak, sk = a.endpoint, a.access_key, a.secret_key
    else:
        import baleproc
        if a.gateway or a.seaweedfs:
            import weedproc
            weed = weedproc.Weed()
            try:
                weed.start()
            except Exception:
                weed.cleanup()
                raise
            print(f"compat: SeaweedFS {weed.endpoint} (log {weed.log_path})", flush=True)
            # Through a gateway the upstream's limits show too (COMPAT_PEER skips the checks
            # SeaweedFS itself fails); COMPAT_GATEWAY tells the flows a gateway answers.
            peer = "seaweedfs"
        if a.seaweedfs:
            endpoint, ak, sk = weed.endpoint, weed.access_key, weed.secret_key
        else:
            extra = []
            if a.gateway:
                extra = ["--upstream", weed.endpoint, "--upstream-access-key", weed.access_key,
                         "--upstream-secret-key", weed.secret_key, *a.gateway_arg]
            server = baleproc.Bale(cores=a.cores, extra_args=extra)
            try:
                server.start()
            except Exception:
                if weed is not None:
                    weed.cleanup()
                raise
            endpoint, ak, sk = server.endpoint, server.access_key, server.secret_key
    print(f"compat: endpoint {endpoint}, logs in {work}", flush=True)

    passed, failed = [], []
    run_id = f"{int(time.time()) % 100000:05d}"
    try:
        for c in a.clients:
            cwork = os.path.join(work, c)
            os.makedirs(cwork, exist_ok=True)
            env = dict(os.environ)
            # Plain http to loopback: a CA bundle from the host only confuses clients (rclone's
            # AWS SDK refuses to start with AWS_CA_BUNDLE set and a custom transport).
            env.pop("AWS_CA_BUNDLE", None)
            env.update({
                "COMPAT_ENDPOINT": endpoint,
                "COMPAT_ACCESS_KEY": ak,
                "COMPAT_SECRET_KEY": sk,
                "COMPAT_REGION": a.region,
                "COMPAT_BUCKET": f"compat-{c}-{run_id}",
                "COMPAT_BIG": big,
                "COMPAT_WORKDIR": cwork,
                "COMPAT_CALL_TIMEOUT": "60",
                "HOME": cwork,  # no stray ~/.aws, ~/.s3cfg or rclone.conf
                "PYTHONUNBUFFERED": "1",
            })
            if peer:
                env["COMPAT_PEER"] = peer
            if a.gateway:
                env["COMPAT_GATEWAY"] = "1"
            # The CLIs start a process per call: give them longer on a loaded machine.
            limit = a.client_timeout * (2 if c in ("awscli", "s3cmd") else 1)
            ok, line, out = run_client(c, env, limit, work)
            if server is not None and server.proc.poll() is not None:
                line = (line if not ok else f"FAIL {c}") + f" [bale exited with {server.proc.returncode}]"
                ok = False
            print(line, flush=True)
            if not ok:
                steps = [ln for ln in out.splitlines() if not ln.startswith(("PASS ", "FAIL "))]
                for ln in steps[-15:]:
                    print(f"    | {ln}", flush=True)
            (passed if ok else failed).append(c)
            if server is not None and server.proc.poll() is not None:
                print("compat: bale died; its log tail:\n" + server.log_tail(), flush=True)
                server.start()
                endpoint = server.endpoint
    finally:
        if server is not None:
            if failed:
                print("compat: bale log tail:\n" + server.log_tail(3000), flush=True)
            server.cleanup()
        if weed is not None:
            if failed:
                print("compat: SeaweedFS log tail:\n" + weed.log_tail(2000), flush=True)
            weed.cleanup()
        if not a.keep_logs and not failed:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(f"compat: failed: {', '.join(failed)}")
    print(f"{len(passed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
