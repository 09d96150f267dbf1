#!/usr/bin/env python3
"""Nothing sleeps on a core (issue 11 item 5, ADR 10): run bale (--cores 1, compaction every
1 s at ratio 0.05) under `strace -f -Y -ttt` for the syscalls that can wait for the device
(fsync, fdatasync, fallocate, rename*, unlink*, ftruncate, sync_file_range) and fail if any of
them runs on a `bale-core-*` thread while the server serves.

Two runs on the same data directory:
  1. fresh directory: PUTs that roll the first volume and preallocate it several times,
     overwrites, DELETEs, a multipart upload (parts, complete, delete), then SIGTERM (close:
     checkpoint, seal of the active volume).
  2. restart: the volume sealed at the end of run 1 is mostly garbage, so compaction copies its
     live records into a new volume, commits, checkpoints (snapshot, rename, journal trim) and
     unlinks it; more PUT/DELETE traffic, a scrub is not needed; SIGTERM again.

The window checked in each run starts after the first 200 on /health (CreateBucket and
DeleteBucket, whose registry writes run on a short-lived thread, are inside it), and
ends at the process exit (the SIGTERM checkpoint and seal are included). Recovery inside
Shard::open, before /health answers, may stay synchronous (ADR 10); the script checks that
strace did see it (so an empty window is not an strace failure).
Usage: tests/soak/nosleep_check.py [--keep]   (BALE_BIN overrides the binary)"""
import glob, os, re, shutil, signal, subprocess, sys, tempfile, time, urllib.request
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import baleproc, boto3
from botocore.config import Config

SYSCALLS = "fsync,fdatasync,fallocate,rename,renameat,renameat2,unlink,unlinkat,ftruncate,sync_file_range"
LINE = re.compile(r"^(\d+)<([^>]*)>\s+(\d+\.\d+)\s+(\w+)\(")
keep = "--keep" in sys.argv
work = tempfile.mkdtemp(prefix="bale-nosleep-")
data = os.path.join(work, "data")
fails = []
t_begin = time.time()


def run(phase, traffic):
    port = baleproc.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    trace = os.path.join(work, f"strace-{phase}.txt")
    log = open(os.path.join(work, f"bale-{phase}.log"), "ab")
    args = ["strace", "-f", "-qq", "-Y", "-ttt", "-T", "-e", f"trace={SYSCALLS}", "-o", trace,
            baleproc.bale_bin(), "serve", "--listen", f"127.0.0.1:{port}",
            "--access-key", baleproc.ACCESS_KEY, "--secret-key", baleproc.SECRET_KEY,
            "--data", data, "--cores", "1",
            "--compact-interval-s", "1", "--compact-ratio", "0.05"]
    env = dict(os.environ, RUST_LOG="info")
    st = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    healthy_at = None
    deadline = time.time() + 30
    while time.time() < deadline and st.poll() is None:
        try:
            with urllib.request.urlopen(endpoint + "/health", timeout=1) as r:
                if r.status == 200:
                    healthy_at = time.time()
                    break
        except Exception:
            time.sleep(0.02)
    if healthy_at is None:
        st.kill(); st.wait()
        fails.append(f"run {phase}: bale did not become healthy")
        return
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=baleproc.ACCESS_KEY,
                      aws_secret_access_key=baleproc.SECRET_KEY, region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    window_from = healthy_at
    try:
        window_from = traffic(s3) or healthy_at
    except Exception as e:
        fails.append(f"run {phase}: traffic failed: {type(e).__name__}: {e}")
    # SIGTERM to bale itself (strace's child), then wait for strace to see it exit.
    kids = open(f"/proc/{st.pid}/task/{st.pid}/children").read().split()
    for k in kids:
        os.kill(int(k), signal.SIGTERM)
    try:
        st.wait(timeout=30)
    except subprocess.TimeoutExpired:
        st.kill(); st.wait()
        fails.append(f"run {phase}: bale did not stop within 30 s of SIGTERM")
    log.close()
    core_before, offending, seen = 0, [], 0
    for line in open(trace, errors="replace"):
        m = LINE.match(line)
        if not m:
            continue
        seen += 1
        tid, comm, ts, name = m.group(1), m.group(2), float(m.group(3)), m.group(4)
        if not comm.startswith("bale-core-"):
            continue
        if ts < window_from:
            core_before += 1
        else:
            offending.append(line.rstrip())
    print(f"run {phase}: {seen} traced calls, {core_before} on core threads before the window "
          f"(recovery/startup), {len(offending)} on core threads while serving")
    for l in offending[:40]:
        print("  OFFENDING:", l[:240])
    if len(offending) > 40:
        print(f"  ... {len(offending) - 40} more")
    if offending:
        fails.append(f"run {phase}: {len(offending)} blocking syscalls on a core thread while serving")
    if seen == 0:
        fails.append(f"run {phase}: strace saw no call at all (tracing broken?)")
    return open(os.path.join(work, f"bale-{phase}.log"), errors="replace").read()


def traffic1(s3):
    t0 = time.time()
    s3.create_bucket(Bucket="nosleep")  # the registry write runs off the core too
    s3.create_bucket(Bucket="nosleep-gone")
    s3.delete_bucket(Bucket="nosleep-gone")
    blob = os.urandom(4 << 20)
    for i in range(40):  # 160 MiB: the first volume, preallocated in 64 MiB steps
        s3.put_object(Bucket="nosleep", Key=f"big{i:02d}", Body=blob[i:] + blob[:i])
    for i in range(40):  # overwrite most: the old records become garbage
        if i % 8:
            s3.put_object(Bucket="nosleep", Key=f"big{i:02d}", Body=b"x" * (1000 + i))
    for i in range(0, 40, 3):
        s3.delete_object(Bucket="nosleep", Key=f"big{i:02d}")
    mp = s3.create_multipart_upload(Bucket="nosleep", Key="multi")
    parts = []
    for n in range(1, 4):
        r = s3.upload_part(Bucket="nosleep", Key="multi", UploadId=mp["UploadId"], PartNumber=n,
                           Body=os.urandom((5 << 20) if n < 3 else 12345))
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket="nosleep", Key="multi", UploadId=mp["UploadId"],
                                 MultipartUpload={"Parts": parts})
    ab = s3.create_multipart_upload(Bucket="nosleep", Key="aborted")
    s3.upload_part(Bucket="nosleep", Key="aborted", UploadId=ab["UploadId"], PartNumber=1, Body=b"y" * 100)
    s3.abort_multipart_upload(Bucket="nosleep", Key="aborted", UploadId=ab["UploadId"])
    s3.delete_object(Bucket="nosleep", Key="multi")
    time.sleep(1.5)  # a compaction pass on the (unsealed) active volume: nothing to do
    return t0


def traffic2(s3):
    t0 = time.time()
    for i in range(30):
        s3.put_object(Bucket="nosleep", Key=f"small{i:02d}", Body=os.urandom(50_000))
        if i % 2:
            s3.delete_object(Bucket="nosleep", Key=f"small{i - 1:02d}")
    # Compaction of the sealed volume of run 1 (mostly garbage) runs every second.
    deadline = time.time() + 20
    while time.time() < deadline:
        log = "".join(open(p, errors="replace").read() for p in glob.glob(os.path.join(work, "bale-2.log")))
        if "volume compacted" in log:
            break
        time.sleep(0.5)
    for i in range(10):
        s3.put_object(Bucket="nosleep", Key=f"late{i}", Body=os.urandom(100_000))
    got = s3.get_object(Bucket="nosleep", Key="big01")["Body"].read()
    if len(got) != 1001:
        fails.append(f"run 2: big01 reads back {len(got)} bytes, expected 1001")
    return t0


log1 = run(1, traffic1) or ""
log2 = run(2, traffic2) or ""
plain = re.sub(r"\x1b\[[0-9;]*m", "", log1 + log2)
for what in ("checkpoint", "volume compacted"):
    if what not in plain:
        fails.append(f"the traffic did not exercise '{what}' (not in bale's log)")
elapsed = time.time() - t_begin
if keep or fails:
    print("kept:", work)
else:
    shutil.rmtree(work, ignore_errors=True)
for f in fails:
    print("FAIL:", f)
print(f"nosleep check: {'PASSED' if not fails else 'FAILED'} ({elapsed:.0f} s)")
sys.exit(0 if not fails else 1)
