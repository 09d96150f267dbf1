"""The compat flow with rclone (Debian package), configured through environment variables."""

import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import *  # noqa: E402,F401,F403
import common as C  # noqa: E402

PART = 5 * MiB
# Metadata rclone adds itself: the file's mtime, and for multipart uploads its own md5.
RCLONE_META = {"mtime", "md5chksum"}


def env_for(secret):
    env = dict(os.environ)
    env.update({
        "RCLONE_CONFIG": os.path.join(C.WORKDIR, "rclone.conf"),
        "RCLONE_CONFIG_COMPAT_TYPE": "s3",
        "RCLONE_CONFIG_COMPAT_PROVIDER": "Other",
        "RCLONE_CONFIG_COMPAT_ACCESS_KEY_ID": C.ACCESS_KEY,
        "RCLONE_CONFIG_COMPAT_SECRET_ACCESS_KEY": secret,
        "RCLONE_CONFIG_COMPAT_ENDPOINT": C.ENDPOINT,
        "RCLONE_CONFIG_COMPAT_REGION": C.REGION,
        "RCLONE_CONFIG_COMPAT_FORCE_PATH_STYLE": "true",
    })
    return env


ENV = BAD_ENV = None


def rclone(*args, ok=True, env=None, binary=False):
    cmd = ["rclone", "--retries", "1", "--low-level-retries", "1", "--contimeout", "10s",
           "--timeout", f"{int(C.CALL_TIMEOUT)}s", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M",
           "--s3-copy-cutoff", "5M"] + list(args)
    try:
        p = subprocess.run(cmd, env=env or ENV, capture_output=True, timeout=C.CALL_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        raise Fail(f"`rclone {' '.join(args)}` timed out")
    err = p.stderr.decode(errors="replace")
    if ok and p.returncode != 0:
        raise Fail(f"`rclone {' '.join(args)}` exited {p.returncode}: {err.strip()[-500:]}")
    if not ok and p.returncode == 0:
        raise Fail(f"`rclone {' '.join(args)}` succeeded, want failure")
    return p.returncode, (p.stdout if binary else p.stdout.decode(errors="replace")), err


def headers():
    out = ["--header-upload", f"Content-Type: {CONTENT_TYPE}"]
    for k, v in META.items():
        out += ["--header-upload", f"X-Amz-Meta-{k}: {v}"]
    return out


def stat(path):
    _, out, _ = rclone("lsjson", "--stat", "-M", "--hash", f"compat:{path}")
    return json.loads(out)


def check_meta(st, what):
    m = norm_meta(st.get("Metadata") or {})
    mine = {k: v for k, v in m.items() if k in META}
    eq(mine, META, f"{what} user metadata")
    extra = set(m) - set(META) - RCLONE_META - {"content-type", "tier", "btime", "atime", "etag",
                                                "cache-control", "content-disposition", "content-encoding",
                                                "content-language"}
    check(not extra, f"{what}: unexpected metadata keys {sorted(extra)} in {m}")
    eq(m.get("content-type", st.get("MimeType")), CONTENT_TYPE, f"{what} content type")


def lsf(path, *flags):
    _, out, _ = rclone("lsf", *flags, f"compat:{path}")
    return sorted(ln for ln in out.splitlines() if ln)


def flow(f):
    global ENV, BAD_ENV
    ENV, BAD_ENV = env_for(C.SECRET_KEY), env_for(C.WRONG_SECRET)
    b = C.BUCKET
    big = big_data()
    w = C.WORKDIR

    f.step("create bucket (rclone mkdir)")
    rclone("mkdir", f"compat:{b}")
    _, out, _ = rclone("lsd", "compat:")
    check(b in out.split(), f"rclone lsd does not list {b}: {out!r}")

    f.step("put small objects with content type and metadata (rclone copyto --header-upload)")
    for i, (k, body) in enumerate(SMALL.items()):
        src = os.path.join(w, f"small-{i}")
        with open(src, "wb") as fh:
            fh.write(body)
        rclone("copyto", src, f"compat:{b}/{k}", *headers())

    f.step("put 20 MiB (multipart, 5 MiB chunks)")
    rclone("copyto", BIG_PATH, f"compat:{b}/{BIG_KEY}", *headers())

    f.step("list by prefix (recursive)")
    eq(lsf(f"{b}/docs/", "-R", "--files-only"), ["a.txt", "b.txt", "sub/c.txt"], "rclone lsf -R docs/")
    _, out, _ = rclone("lsjson", "-R", "--files-only", "--s3-list-chunk", "2", f"compat:{b}")
    items = json.loads(out)
    eq(sorted(o["Path"] for o in items), ALL_KEYS, "rclone lsjson -R all keys")
    sizes = {o["Path"]: o["Size"] for o in items}
    eq(sizes, dict({k: len(v) for k, v in SMALL.items()}, **{BIG_KEY: BIG_SIZE}), "rclone lsjson sizes")

    f.step("list by delimiter (non-recursive)")
    eq(lsf(b), sorted(ROOT_DELIM_KEYS + ROOT_DELIM_PREFIXES), "rclone lsf (delimiter /)")
    eq(lsf(f"{b}/docs/"), ["a.txt", "b.txt", "sub/"], "rclone lsf docs/ (delimiter /)")

    f.step("get whole (rclone cat; copyto with multi-thread ranged download)")
    for k, body in SMALL.items():
        _, data, _ = rclone("cat", f"compat:{b}/{k}", binary=True)
        bytes_eq(data, body, f"rclone cat {k}")
    _, data, _ = rclone("cat", f"compat:{b}/{BIG_KEY}", binary=True)
    bytes_eq(data, big, "rclone cat big")
    out = os.path.join(w, "dl", "big.bin")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    rclone("copyto", "--multi-thread-cutoff", "5M", "--multi-thread-streams", "4",
           f"compat:{b}/{BIG_KEY}", out)
    with open(out, "rb") as fh:
        bytes_eq(fh.read(), big, "rclone copyto download big (multi-thread)")
    shutil.rmtree(os.path.dirname(out))

    f.step("get ranged (rclone cat --offset --count)")
    for a, z in ranges_for(PART):
        _, data, _ = rclone("cat", "--offset", str(a), "--count", str(z - a + 1), f"compat:{b}/{BIG_KEY}",
                            binary=True)
        bytes_eq(data, big[a:z + 1], f"rclone cat bytes={a}-{z}")
    _, data, _ = rclone("cat", "--offset", "-100", f"compat:{b}/{BIG_KEY}", binary=True)
    bytes_eq(data, big[-100:], "rclone cat last 100 bytes")

    f.step("head (rclone lsjson --stat -M --hash)")
    for k, body in SMALL.items():
        st = stat(f"{b}/{k}")
        eq(st.get("Size"), len(body), f"{k} size")
        eq((st.get("Hashes") or {}).get("md5"), md5_hex(body), f"{k} md5 (from the ETag)")
        check_meta(st, k)
    st = stat(f"{b}/{BIG_KEY}")
    eq(st.get("Size"), BIG_SIZE, "big size")
    check_meta(st, "big")

    f.step("copy (server-side copyto; big one as multipart copy)")
    rclone("copyto", f"compat:{b}/{COPY_SRC}", f"compat:{b}/{COPY_DST}")
    st = stat(f"{b}/{COPY_DST}")
    eq((st.get("Hashes") or {}).get("md5"), md5_hex(SMALL[COPY_SRC]), "copy md5 (ETag)")
    check_meta(st, "copy")
    _, data, _ = rclone("cat", f"compat:{b}/{COPY_DST}", binary=True)
    bytes_eq(data, SMALL[COPY_SRC], "rclone cat copy")
    rclone("copyto", f"compat:{b}/{BIG_KEY}", f"compat:{b}/copies/big-copy.bin")
    _, data, _ = rclone("cat", f"compat:{b}/copies/big-copy.bin", binary=True)
    bytes_eq(data, big, "rclone cat big copy")

    f.step("rclone sync and check (md5 from ETags)")
    up_dir = os.path.join(w, "sync-up")
    os.makedirs(os.path.join(up_dir, "sub"), exist_ok=True)
    for name, body in {"one.txt": b"one\n", "sub/two.bin": big[:300000], "sub/three txt": b"3" * 4097}.items():
        with open(os.path.join(up_dir, name), "wb") as fh:
            fh.write(body)
    rclone("sync", up_dir, f"compat:{b}/sync")
    rclone("check", up_dir, f"compat:{b}/sync")
    rclone("purge", f"compat:{b}/sync")
    eq(lsf(b, "-R", "--files-only", "--include", "sync/**"), [], "rclone purge sync/")

    f.step("delete one (rclone deletefile)")
    rclone("deletefile", f"compat:{b}/{DELETE_ONE}")
    # (rclone takes a missing key for a directory in stat and cat: S3 has none. Ask the listing.)
    eq(lsf(f"{b}/docs/", "--files-only"), ["b.txt"], "rclone lsf docs/ after delete")

    f.step("delete many (rclone delete)")
    rclone("delete", f"compat:{b}/docs/")
    eq(lsf(b, "-R", "--files-only"), sorted(["copies/b-copy.txt", "copies/big-copy.bin", "other/d.txt", WEIRD_KEY, "other/empty.txt",
                                              "top.txt", BIG_KEY]), "keys after rclone delete docs/")
    rclone("delete", f"compat:{b}")
    eq(lsf(b, "-R", "--files-only"), [], "keys after rclone delete")

    f.step("delete bucket (rclone rmdir)")
    rclone("rmdir", f"compat:{b}")
    _, out, _ = rclone("lsd", "compat:")
    check(b not in out.split(), f"rclone lsd still lists {b}")

    f.step("wrong secret")
    _, _, err = rclone("lsd", "compat:", ok=False, env=BAD_ENV)
    check("SignatureDoesNotMatch" in err, f"rclone lsd with wrong secret: no SignatureDoesNotMatch in "
          f"{err.strip()[-300:]}")
    check(re.search(r"status code: 403", err), f"rclone lsd with wrong secret: no 403 in {err.strip()[-300:]}")


if __name__ == "__main__":
    sys.exit(Flow("rclone").run(flow))
