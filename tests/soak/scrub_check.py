#!/usr/bin/env python3
"""Corruption check (issue 5): flip one byte in the data of 3 of 20 stored objects, restart bale
with a 2 s scrub interval, and check that GETs of the 3 answer 500 (never wrong bytes), the 17
others read back intact, and the scrubber reports exactly 3 corrupt objects (with their
locations in the log). Usage: tests/soak/scrub_check.py   (BALE_BIN overrides the binary)"""
import sys, os, time, struct, glob, re, tempfile
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'lib'))
import baleproc, boto3
from botocore.config import Config
import shutil
d = tempfile.mkdtemp(prefix="bale-scrub-")
b=baleproc.Bale(data_dirs=[d], cores=1, extra_args=["--scrub-interval-s","2"], env={"RUST_LOG":"info"}, keep_data=True)
b.start()
s3=boto3.client("s3",endpoint_url=b.endpoint,aws_access_key_id=b.access_key,aws_secret_access_key=b.secret_key,region_name="us-east-1",config=Config(s3={"addressing_style":"path"}, retries={"max_attempts": 1}))
s3.create_bucket(Bucket="scrub")
objs={}
for i in range(20):
    body=os.urandom(10000+i*1000); objs[f"o{i:02d}"]=body
    s3.put_object(Bucket="scrub",Key=f"o{i:02d}",Body=body)
b.stop()
vol=sorted(glob.glob(d+"/shard-*/vol-*.dat"))[0]
buf=bytearray(open(vol,'rb').read())
flipped=[]
# Records (io/FORMAT.md): packed at 8-byte offsets; record version 3 has no names (a 32-byte
# header, then the data), so a record is matched to its object by its data.
by_head={body[:64]:k for k,body in objs.items()}
for off in range(0,len(buf)-36,8):
    if buf[off:off+4]==b'BALR' and struct.unpack_from('<H',buf,off+4)[0]==3:
        key=by_head.get(bytes(buf[off+32:off+96]))
        if key in ("o03","o07","o15"):
            p=off+32+500; buf[p]^=0x5A; flipped.append((key,p))
open(vol,'wb').write(buf)
print("flipped", flipped)
b.start()
time.sleep(6)
got={}
for k in objs:
    try:
        r=s3.get_object(Bucket="scrub",Key=k)["Body"].read(); got[k]="ok" if r==objs[k] else "WRONG BYTES"
    except Exception as e: got[k]=type(e).__name__+":"+str(e)[:60]
print({k:v for k,v in got.items() if v!="ok"}, sum(v=="ok" for v in got.values()),"ok")
log=open(b.log_path,errors="replace").read()
lines = [re.sub(r'\x1b\[[0-9;]*m', '', l) for l in log.splitlines()]
scrub = [l for l in lines if "scrub found corrupt objects" in l]
located = sorted({m.group(1) for l in lines for m in [re.search(r"record at (\d+)", l)] if m})
for l in scrub[:3]:
    print(l[:300])
print("corrupt records located in the log at offsets:", located)
b.stop(); b.cleanup(); shutil.rmtree(d, ignore_errors=True)
bad = [k for k, v in got.items() if v == "WRONG BYTES"]
refused = sorted(k for k, v in got.items() if "InternalError" in v)
ok = (not bad and refused == sorted(k for k, _ in flipped)
      and sum(v == "ok" for v in got.values()) == len(objs) - len(flipped)
      and scrub and "corrupt=3" in scrub[0])
print("scrub check:", "PASSED" if ok else "FAILED")
sys.exit(0 if ok else 1)
