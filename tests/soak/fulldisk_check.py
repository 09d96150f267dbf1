#!/usr/bin/env python3
"""Full disk at the S3 level (issue 5): bale's data directory on a small loop-mounted ext4
image. PUT 1 MiB objects until a PUT fails; then check: the failure is a clear S3 error (not a
hang, not a dropped connection), every object acknowledged before reads back byte-identical,
bale stays up, every DELETE succeeds on the full disk, the space comes back (PUTs work again),
a SIGTERM checkpoint on the full disk succeeds, and bale restarts on the full disk with every
object intact (ADR 5).
Needs root and loop devices; exits 77 (skip) otherwise.
Usage: tests/soak/fulldisk_check.py [--mb 160]   (BALE_BIN overrides the binary)"""
import argparse, hashlib, os, shutil, subprocess, sys, tempfile, time
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import baleproc, boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ap = argparse.ArgumentParser()
ap.add_argument("--mb", type=int, default=160)
args = ap.parse_args()
work = tempfile.mkdtemp(prefix="bale-fulldisk-")
img, mnt = os.path.join(work, "fs.img"), os.path.join(work, "mnt")
os.makedirs(mnt)
try:
    subprocess.run(["truncate", "-s", f"{args.mb}M", img], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", img, mnt], check=True, capture_output=True)
except Exception as e:
    print(f"skip: cannot mount a loop ext4 image here ({e})")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(77)

fails = []
t_start = time.time()
def df_line():
    return subprocess.run(["df", "-m", mnt], capture_output=True, text=True).stdout.splitlines()[-1]

def body(i, gen=0):
    seed = hashlib.sha256(f"{i}:{gen}".encode()).digest()
    return seed * (1 << 15)  # 1 MiB

b = baleproc.Bale(data_dirs=[os.path.join(mnt, "data")], cores=1,
                  extra_args=["--compact-interval-s", "2", "--compact-ratio", "0.3"], env={"RUST_LOG": "warn"})
try:
    b.start()
    s3 = boto3.client("s3", endpoint_url=b.endpoint, aws_access_key_id=b.access_key,
                      aws_secret_access_key=b.secret_key, region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, read_timeout=30))
    s3.create_bucket(Bucket="full")
    stored, err = [], None
    t0 = time.time()
    for i in range(args.mb * 2):
        try:
            s3.put_object(Bucket="full", Key=f"k{i:04d}", Body=body(i))
            stored.append(i)
        except ClientError as e:
            err = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"], e.response["Error"].get("Message"))
            break
        except Exception as e:
            err = ("no S3 answer", type(e).__name__, str(e)[:200])
            break
    df = df_line()
    print(f"filled: {len(stored)} x 1 MiB PUTs acknowledged in {time.time()-t0:.1f}s, then: {err}; df: {df}")
    if err is None:
        fails.append("the disk never filled")
    elif not isinstance(err[0], int) or err[0] < 400:
        fails.append(f"the failing PUT got no clear S3 error: {err}")
    bad = [i for i in stored if s3.get_object(Bucket="full", Key=f"k{i:04d}")["Body"].read() != body(i)]
    print(f"reads while full: {len(stored) - len(bad)}/{len(stored)} byte-identical")
    if bad:
        fails.append(f"{len(bad)} objects read back wrong while full")
    # a second PUT while full must fail the same way, not hang
    try:
        s3.put_object(Bucket="full", Key="again", Body=body(99999))
        print("second PUT while full: accepted")
    except ClientError as e:
        print(f"second PUT while full: {e.response['ResponseMetadata']['HTTPStatusCode']} {e.response['Error']['Code']}")
    # free space: delete 3 of every 4 objects; every DELETE must succeed on the full disk
    dels = [i for i in stored if i % 4 != 0]
    ok, errs = 0, {}
    t0 = time.time()
    for i in dels:
        try:
            s3.delete_object(Bucket="full", Key=f"k{i:04d}")
            ok += 1
        except ClientError as e:
            k = f"{e.response['ResponseMetadata']['HTTPStatusCode']} {e.response['Error']['Code']}"
            errs[k] = errs.get(k, 0) + 1
    print(f"DELETE while full: {ok}/{len(dels)} succeeded in {time.time()-t0:.1f}s, errors {errs}; df: {df_line()}")
    if ok < len(dels):
        fails.append(f"DELETE fails while the disk is full ({errs}): space cannot be freed through S3")
    # writes work again (dead records are punched out right away; compaction runs every 2 s)
    ok_after, last = 0, None
    t0 = time.time()
    deadline = t0 + 30
    while time.time() < deadline and ok_after == 0:
        try:
            s3.put_object(Bucket="full", Key="after", Body=body(424242))
            ok_after = 1
        except ClientError as e:
            last = e.response["Error"]["Code"]
            time.sleep(1)
    print(f"after deleting {len(dels)} objects: PUT works again: {bool(ok_after)} after {time.time()-t0:.1f}s "
          f"(last error {last}); df: {df_line()}")
    if not ok_after:
        fails.append("writes did not work again after deletes + compaction (30 s)")
    # fill again: how much of the freed space comes back
    more, more_err = [], None
    for j in range(args.mb * 2):
        try:
            s3.put_object(Bucket="full", Key=f"more{j:04d}", Body=body(500000 + j))
            more.append(j)
        except ClientError as e:
            more_err = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
            break
    print(f"refilled: {len(more)} more 1 MiB PUTs acknowledged (of {len(dels)} deleted), then {more_err}; df: {df_line()}")
    if len(more) < len(dels) // 2:
        fails.append(f"only {len(more)} MiB of the {len(dels)} MiB deleted could be written again")
    keep = [i for i in stored if i % 4 == 0]
    def check_all(when):
        bad = [i for i in keep if s3.get_object(Bucket="full", Key=f"k{i:04d}")["Body"].read() != body(i)]
        bad += [f"more{j}" for j in more if s3.get_object(Bucket="full", Key=f"more{j:04d}")["Body"].read() != body(500000 + j)]
        n = len(keep) + len(more)
        print(f"{when}: {n - len(bad)}/{n} objects byte-identical")
        if bad:
            fails.append(f"{len(bad)} objects wrong {when}")
    check_all("full again")
    # SIGTERM on the full disk: the checkpoint must fit in the reserve
    rc = b.stop()
    log = open(b.log_path, "rb").read().decode(errors="replace")
    ck_failed = log.count("checkpoint failed")
    print(f"SIGTERM on the full disk: exit {rc}, 'checkpoint failed' lines in the log: {ck_failed}")
    if rc != 0 or ck_failed:
        fails.append(f"shutdown on a full disk: exit {rc}, {ck_failed} failed checkpoints")
    # restart on the full disk: everything intact, deletes work
    b.start()
    check_all("after restart on the full disk")
    try:
        s3.delete_object(Bucket="full", Key=f"k{keep[0]:04d}")
        print("DELETE after restart on the full disk: ok")
    except ClientError as e:
        fails.append(f"DELETE after restart on the full disk: {e.response['Error']['Code']}")
    if b.proc.poll() is not None:
        fails.append("bale died")
except Exception as e:
    fails.append(f"{type(e).__name__}: {e}")
    print(b.log_tail())
finally:
    b.stop()
    subprocess.run(["umount", mnt])
    shutil.rmtree(work, ignore_errors=True)
print(f"full disk check: {time.time() - t_start:.0f}s")
print("full disk check:", "PASSED" if not fails else "FAILED: " + "; ".join(fails))
sys.exit(0 if not fails else 1)
