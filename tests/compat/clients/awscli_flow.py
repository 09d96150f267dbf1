"""The compat flow with the AWS CLI: both `aws s3` (high level, multipart) and `aws s3api`."""

import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import *  # noqa: E402,F401,F403
import common as C  # noqa: E402

PART = 8 * MiB
# `python -m awscli` from this venv: its `aws` script's #! names the interpreter of whichever
# checkout created the venv, which may be gone when the venv is shared (a symlink).
try:
    import awscli  # noqa: F401
    AWS = [sys.executable, "-m", "awscli"]
except ImportError:
    AWS = ["aws"]


def setup_env(secret):
    cfg = os.path.join(C.WORKDIR, "aws-config")
    with open(cfg, "w") as fh:
        fh.write(
            "[default]\n"
            f"region = {C.REGION}\n"
            "max_attempts = 1\n"
            "s3 =\n"
            "  addressing_style = path\n"
            "  multipart_threshold = 8MB\n"
            "  multipart_chunksize = 8MB\n"
            "  max_concurrent_requests = 4\n")
    env = dict(os.environ)
    env.update({
        "AWS_CONFIG_FILE": cfg,
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(C.WORKDIR, "no-credentials"),
        "AWS_ACCESS_KEY_ID": C.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": C.REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    })
    return env


ENV = None
BAD_ENV = None


def aws(*args, ok=True, env=None, timeout=None):
    cmd = AWS + ["--endpoint-url", C.ENDPOINT, "--cli-connect-timeout", "10",
           "--cli-read-timeout", str(int(C.CALL_TIMEOUT)), "--output", "json"] + list(args)
    try:
        p = subprocess.run(cmd, env=env or ENV, capture_output=True, timeout=timeout or C.CALL_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        raise Fail(f"`aws {' '.join(args)}` timed out")
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    if ok and p.returncode != 0:
        raise Fail(f"`aws {' '.join(args)}` exited {p.returncode}: {err.strip()[-500:]}")
    if not ok and p.returncode == 0:
        raise Fail(f"`aws {' '.join(args)}` succeeded, want failure")
    return p.returncode, out, err


def api(*args):
    _, out, _ = aws("s3api", *args)
    return json.loads(out) if out.strip() else {}


def keys_of(r):
    return [o["Key"] for o in r.get("Contents", [])]


def prefixes_of(r):
    return [p["Prefix"] for p in r.get("CommonPrefixes", [])]


def ls_name(line):
    """The key in an `aws s3 ls` line: `PRE name/` or `date time size name` (names may hold spaces)."""
    line = line.strip()
    if line.startswith("PRE "):
        return line[4:]
    return line.split(None, 3)[3]


def meta_arg():
    return ",".join(f"{k}={v}" for k, v in META.items())


def read(path):
    with open(path, "rb") as fh:
        return fh.read()


def flow(f):
    global ENV, BAD_ENV
    ENV = setup_env(C.SECRET_KEY)
    BAD_ENV = setup_env(C.WRONG_SECRET)
    b = C.BUCKET
    big = big_data()
    w = C.WORKDIR

    f.step("create bucket (aws s3 mb)")
    aws("s3", "mb", f"s3://{b}")
    api("head-bucket", "--bucket", b)

    f.step("put small objects with content type and metadata (s3api put-object, s3 cp)")
    for i, (k, body) in enumerate(SMALL.items()):
        src = os.path.join(w, f"small-{i}")
        with open(src, "wb") as fh:
            fh.write(body)
        if k.startswith("docs/"):
            r = api("put-object", "--bucket", b, "--key", k, "--body", src,
                    "--content-type", CONTENT_TYPE, "--metadata", meta_arg())
            eq(strip_etag(r.get("ETag")), md5_hex(body), f"put-object {k} ETag")
        else:
            aws("s3", "cp", src, f"s3://{b}/{k}", "--content-type", CONTENT_TYPE, "--metadata", meta_arg())

    f.step("put 20 MiB (aws s3 cp, multipart 8 MiB parts)")
    aws("s3", "cp", BIG_PATH, f"s3://{b}/{BIG_KEY}", "--content-type", CONTENT_TYPE, "--metadata", meta_arg())

    f.step("list by prefix")
    r = api("list-objects-v2", "--bucket", b, "--prefix", "docs/")
    eq(keys_of(r), PREFIX_DOCS, "list-objects-v2 --prefix docs/")
    eq({o["Key"]: o["Size"] for o in r["Contents"]}, {k: len(SMALL[k]) for k in PREFIX_DOCS}, "sizes")
    r = api("list-objects", "--bucket", b, "--prefix", "docs/")
    eq(keys_of(r), PREFIX_DOCS, "list-objects (V1) --prefix docs/")
    _, out, _ = aws("s3", "ls", f"s3://{b}/docs/", "--recursive")
    eq([ls_name(ln) for ln in out.splitlines() if ln.strip()], PREFIX_DOCS, "aws s3 ls --recursive docs/")
    eq(keys_of(api("list-objects-v2", "--bucket", b, "--page-size", "2")), ALL_KEYS,
       "list-objects-v2 all (pages of 2: continuation tokens)")

    f.step("list by delimiter")
    r = api("list-objects-v2", "--bucket", b, "--delimiter", "/")
    eq(keys_of(r), ROOT_DELIM_KEYS, "delimiter=/ keys")
    eq(prefixes_of(r), ROOT_DELIM_PREFIXES, "delimiter=/ prefixes")
    r = api("list-objects-v2", "--bucket", b, "--prefix", "docs/", "--delimiter", "/")
    eq(keys_of(r), DOCS_DELIM_KEYS, "prefix=docs/ delimiter=/ keys")
    eq(prefixes_of(r), DOCS_DELIM_PREFIXES, "prefix=docs/ delimiter=/ prefixes")
    _, out, _ = aws("s3", "ls", f"s3://{b}/")
    pres = sorted(ls_name(ln) for ln in out.splitlines() if ln.strip().startswith("PRE "))
    objs = sorted(ls_name(ln) for ln in out.splitlines() if ln.strip() and not ln.strip().startswith("PRE "))
    eq(pres, ROOT_DELIM_PREFIXES, "aws s3 ls prefixes")
    eq(objs, ROOT_DELIM_KEYS, "aws s3 ls objects")

    f.step("get whole (aws s3 cp: ranged parallel download; s3api get-object)")
    out = os.path.join(w, "big.out")
    aws("s3", "cp", f"s3://{b}/{BIG_KEY}", out)
    bytes_eq(read(out), big, "aws s3 cp download big")
    os.unlink(out)
    r = api("get-object", "--bucket", b, "--key", BIG_KEY, out)
    eq(r.get("ContentLength"), BIG_SIZE, "get-object ContentLength")
    bytes_eq(read(out), big, "s3api get-object big")
    for k in ("docs/b.txt", "top.txt"):  # each aws call costs a CLI start: keep it to two
        body = SMALL[k]
        r = api("get-object", "--bucket", b, "--key", k, out)
        bytes_eq(read(out), body, f"get-object {k}")
        eq(r.get("ContentType"), CONTENT_TYPE, f"get-object {k} ContentType")

    f.step("get ranged (s3api get-object --range)")
    for a, z in ranges_for(PART):
        r = api("get-object", "--bucket", b, "--key", BIG_KEY, "--range", f"bytes={a}-{z}", out)
        eq(r.get("ContentRange"), f"bytes {a}-{z}/{BIG_SIZE}", f"bytes={a}-{z} ContentRange")
        bytes_eq(read(out), big[a:z + 1], f"get-object bytes={a}-{z}")
    r = api("get-object", "--bucket", b, "--key", BIG_KEY, "--range", "bytes=-100", out)
    eq(r.get("ContentRange"), f"bytes {BIG_SIZE - 100}-{BIG_SIZE - 1}/{BIG_SIZE}", "bytes=-100 ContentRange")
    bytes_eq(read(out), big[-100:], "get-object bytes=-100")

    f.step("head")
    for k in ("docs/a.txt", "top.txt"):
        body = SMALL[k]
        h = api("head-object", "--bucket", b, "--key", k)
        eq(h.get("ContentLength"), len(body), f"head-object {k} size")
        eq(strip_etag(h.get("ETag")), md5_hex(body), f"head-object {k} ETag")
        eq(h.get("ContentType"), CONTENT_TYPE, f"head-object {k} ContentType")
        eq(h.get("Metadata"), META, f"head-object {k} Metadata")
    h = api("head-object", "--bucket", b, "--key", BIG_KEY)
    eq(h.get("ContentLength"), BIG_SIZE, "head-object big size")
    eq(strip_etag(h.get("ETag")), multipart_etag(big, PART), "head-object big ETag (md5 of part md5s)")
    eq(h.get("ContentType"), CONTENT_TYPE, "head-object big ContentType")
    eq(h.get("Metadata"), META, "head-object big Metadata")

    f.step("copy (s3api copy-object, aws s3 cp s3->s3 with multipart copy)")
    r = api("copy-object", "--bucket", b, "--key", COPY_DST, "--copy-source", f"{b}/{COPY_SRC}")
    eq(strip_etag(r.get("CopyObjectResult", {}).get("ETag")), md5_hex(SMALL[COPY_SRC]), "copy-object ETag")
    h = api("head-object", "--bucket", b, "--key", COPY_DST)
    eq(h.get("Metadata"), META, "copy metadata")
    eq(h.get("ContentType"), CONTENT_TYPE, "copy ContentType")
    api("get-object", "--bucket", b, "--key", COPY_DST, out)
    bytes_eq(read(out), SMALL[COPY_SRC], "get copy")
    aws("s3", "cp", f"s3://{b}/{BIG_KEY}", f"s3://{b}/copies/big-copy.bin")
    api("get-object", "--bucket", b, "--key", "copies/big-copy.bin", out)
    bytes_eq(read(out), big, "get big copy (UploadPartCopy)")

    f.step("aws s3 sync up and down")
    up_dir, down_dir = os.path.join(w, "sync-up"), os.path.join(w, "sync-down")
    os.makedirs(os.path.join(up_dir, "sub"))
    files = {"one.txt": b"one\n", "sub/two.bin": big[:300000], "sub/three txt": b"3" * 4097}
    hour_ago = time.time() - 3600
    for name, body in files.items():
        with open(os.path.join(up_dir, name), "wb") as fh:
            fh.write(body)
        # Older than the upload for sure: sync re-sends a file newer than its object, and
        # LastModified has whole-second precision.
        os.utime(os.path.join(up_dir, name), (hour_ago, hour_ago))
    aws("s3", "sync", up_dir, f"s3://{b}/sync/")
    aws("s3", "sync", f"s3://{b}/sync/", down_dir)
    for name, body in files.items():
        bytes_eq(read(os.path.join(down_dir, name)), body, f"synced back {name}")
    _, o, _ = aws("s3", "sync", up_dir, f"s3://{b}/sync/")
    eq(o.strip(), "", "second aws s3 sync uploads nothing")

    f.step("delete one (aws s3 rm)")
    aws("s3", "rm", f"s3://{b}/{DELETE_ONE}")
    _, _, err = aws("s3api", "head-object", "--bucket", b, "--key", DELETE_ONE, ok=False)
    check("(404)" in err, f"head-object after delete: want 404, got: {err.strip()[-300:]}")

    f.step("delete many (s3api delete-objects, aws s3 rm --recursive)")
    rest = keys_of(api("list-objects-v2", "--bucket", b))
    check(DELETE_ONE not in rest, f"{DELETE_ONE} still listed after delete")
    some = [k for k in rest if k.startswith(("docs/", "copies/", "sync/"))]
    r = api("delete-objects", "--bucket", b, "--delete",
            json.dumps({"Objects": [{"Key": k} for k in some], "Quiet": False}))
    eq(sorted(d["Key"] for d in r.get("Deleted", [])), sorted(some), "delete-objects Deleted")
    eq(r.get("Errors", []), [], "delete-objects Errors")
    aws("s3", "rm", f"s3://{b}/", "--recursive")
    eq(keys_of(api("list-objects-v2", "--bucket", b)), [], "list after deletes")

    f.step("delete bucket (aws s3 rb)")
    aws("s3", "rb", f"s3://{b}")
    _, _, err = aws("s3api", "head-bucket", "--bucket", b, ok=False)
    check("(404)" in err, f"head-bucket after rb: want 404, got: {err.strip()[-300:]}")

    f.step("wrong secret")
    _, _, err = aws("s3", "ls", "--debug", ok=False, env=BAD_ENV)
    check("SignatureDoesNotMatch" in err, f"aws s3 ls with wrong secret: no SignatureDoesNotMatch in: "
          f"{err.strip()[-300:]}")
    check(re.search(r'"GET / HTTP/1\.1" 403 ', err), "aws s3 ls with wrong secret: no HTTP 403 in the debug log")


if __name__ == "__main__":
    sys.exit(Flow("awscli").run(flow))
