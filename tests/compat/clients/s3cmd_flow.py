"""The compat flow with s3cmd (Debian package), path-style, SigV4."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import *  # noqa: E402,F401,F403
import common as C  # noqa: E402

PART = 5 * MiB
S3CMD_META = {"s3cmd-attrs"}  # s3cmd stores its own md5 there


def write_cfg(name, secret):
    path = os.path.join(C.WORKDIR, name)
    with open(path, "w") as fh:
        fh.write(
            "[default]\n"
            f"access_key = {C.ACCESS_KEY}\n"
            f"secret_key = {secret}\n"
            f"host_base = {C.HOSTPORT}\n"
            f"host_bucket = {C.HOSTPORT}\n"
            "use_https = False\n"
            "signature_v2 = False\n"
            f"bucket_location = {C.REGION}\n"
            f"socket_timeout = {int(C.CALL_TIMEOUT)}\n"
            "multipart_chunk_size_mb = 5\n"
            "preserve_attrs = False\n"
            "guess_mime_type = False\n"
            "progress_meter = False\n"
            "max_retries = 1\n")
    return path


CFG = BAD_CFG = None


def s3cmd(*args, ok=True, cfg=None):
    cmd = ["s3cmd", "-c", cfg or CFG] + list(args)
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=C.CALL_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        raise Fail(f"`s3cmd {' '.join(args)}` timed out")
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    if ok and p.returncode != 0:
        raise Fail(f"`s3cmd {' '.join(args)}` exited {p.returncode}: {(err or out).strip()[-500:]}")
    if not ok and p.returncode == 0:
        raise Fail(f"`s3cmd {' '.join(args)}` succeeded, want failure")
    return p.returncode, out, err


def put_args():
    out = ["--mime-type=" + CONTENT_TYPE, "--no-guess-mime-type", "--no-preserve"]
    for k, v in META.items():
        out.append(f"--add-header=x-amz-meta-{k}:{v}")
    return out


def ls(url, *flags):
    """(keys, prefixes) from `s3cmd ls`, relative to the bucket."""
    _, out, _ = s3cmd("ls", *flags, url)
    keys, dirs = [], []
    for ln in out.splitlines():
        if "s3://" not in ln:
            continue
        url_part = ln[ln.index("s3://"):]  # keys may hold spaces: take all after the URL start
        name = url_part.split("/", 3)[3]
        (dirs if ln.split()[0] == "DIR" else keys).append(name)
    return sorted(keys), sorted(dirs)


def info(url):
    _, out, _ = s3cmd("info", url)
    fields, meta = {}, {}
    for ln in out.splitlines():
        m = re.match(r"\s+([^:]+):\s*(.*)$", ln)
        if not m:
            continue
        k, v = m.group(1).strip(), m.group(2).strip()
        if k.lower().startswith("x-amz-meta-"):
            meta[k.lower()[len("x-amz-meta-"):]] = v
        else:
            fields[k] = v
    return fields, meta


def check_head(url, size, what, md5=None):
    fields, meta = info(url)
    eq(fields.get("File size"), str(size), f"{what} size")
    eq(fields.get("MIME type"), CONTENT_TYPE, f"{what} MIME type")
    if md5:
        eq(fields.get("MD5 sum"), md5, f"{what} MD5 sum (ETag)")
    eq({k: v for k, v in meta.items() if k not in S3CMD_META}, META, f"{what} metadata")


def read(path):
    with open(path, "rb") as fh:
        return fh.read()


def flow(f):
    global CFG, BAD_CFG
    CFG, BAD_CFG = write_cfg("s3cfg", C.SECRET_KEY), write_cfg("s3cfg-bad", C.WRONG_SECRET)
    b = C.BUCKET
    u = f"s3://{b}"
    big = big_data()
    w = C.WORKDIR
    out = os.path.join(w, "out.bin")

    f.step("create bucket (s3cmd mb)")
    s3cmd("mb", u)
    _, lsout, _ = s3cmd("ls")
    check(u in lsout, f"s3cmd ls does not list {u}")

    f.step("put small objects with content type and metadata")
    for i, (k, body) in enumerate(SMALL.items()):
        src = os.path.join(w, f"small-{i}")
        with open(src, "wb") as fh:
            fh.write(body)
        s3cmd("put", *put_args(), src, f"{u}/{k}")

    f.step("put 20 MiB (multipart, 5 MiB chunks)")
    s3cmd("put", "--multipart-chunk-size-mb=5", *put_args(), BIG_PATH, f"{u}/{BIG_KEY}")
    # s3cmd shows its own md5 (s3cmd-attrs) in place of a multipart ETag: read the ETag the
    # server sent from the debug log of a HEAD.
    _, o, e = s3cmd("-d", "info", f"{u}/{BIG_KEY}")
    etags = re.findall(r"'etag': '\"?([^'\"]*)\"?'", o + e)
    eq(etags[:1], [multipart_etag(big, PART)], "s3cmd HEAD big ETag (4 parts of 5 MiB)")

    f.step("list by prefix (recursive)")
    eq(ls(f"{u}/docs/", "--recursive"), (PREFIX_DOCS, []), "s3cmd ls --recursive docs/")
    eq(ls(u, "--recursive")[0], ALL_KEYS, "s3cmd ls --recursive all")

    f.step("list by delimiter")
    eq(ls(u + "/"), (ROOT_DELIM_KEYS, ROOT_DELIM_PREFIXES), "s3cmd ls (delimiter /)")
    eq(ls(f"{u}/docs/"), (DOCS_DELIM_KEYS, DOCS_DELIM_PREFIXES), "s3cmd ls docs/ (delimiter /)")

    f.step("get whole")
    for k, body in SMALL.items():
        s3cmd("get", "--force", f"{u}/{k}", out)
        bytes_eq(read(out), body, f"s3cmd get {k}")
    s3cmd("get", "--force", f"{u}/{BIG_KEY}", out)
    bytes_eq(read(out), big, "s3cmd get big")

    f.step("get ranged (s3cmd get --continue sends Range: bytes=N-)")
    for start in (PART - 100, 2 * PART + 1, BIG_SIZE - 100):
        with open(out, "wb") as fh:
            fh.write(big[:start])
        s3cmd("get", "--continue", f"{u}/{BIG_KEY}", out)
        bytes_eq(read(out), big, f"s3cmd get --continue from {start} (bytes={start}-)")

    f.step("head (s3cmd info)")
    for k, body in SMALL.items():
        check_head(f"{u}/{k}", len(body), k, md5=md5_hex(body))
    check_head(f"{u}/{BIG_KEY}", BIG_SIZE, "big")

    f.step("copy (s3cmd cp)")
    s3cmd("cp", f"{u}/{COPY_SRC}", f"{u}/{COPY_DST}")
    check_head(f"{u}/{COPY_DST}", len(SMALL[COPY_SRC]), "copy", md5=md5_hex(SMALL[COPY_SRC]))
    s3cmd("get", "--force", f"{u}/{COPY_DST}", out)
    bytes_eq(read(out), SMALL[COPY_SRC], "s3cmd get copy")
    s3cmd("cp", f"{u}/{BIG_KEY}", f"{u}/copies/big-copy.bin")
    s3cmd("get", "--force", f"{u}/copies/big-copy.bin", out)
    bytes_eq(read(out), big, "s3cmd get big copy")

    f.step("delete one (s3cmd del)")
    s3cmd("del", f"{u}/{DELETE_ONE}")
    rc, o, e = s3cmd("info", f"{u}/{DELETE_ONE}", ok=False)
    check("404" in (o + e), f"s3cmd info after delete: want 404, got {(o + e).strip()[-300:]}")

    f.step("delete many (s3cmd del --recursive: multi-object delete)")
    s3cmd("del", "--recursive", f"{u}/docs/")
    eq(ls(u, "--recursive")[0], sorted(["copies/b-copy.txt", "copies/big-copy.bin", "other/d.txt", WEIRD_KEY, "other/empty.txt", "top.txt",
                                        BIG_KEY]), "keys after del --recursive docs/")
    s3cmd("del", "--recursive", "--force", u)
    eq(ls(u, "--recursive")[0], [], "keys after del --recursive")

    f.step("delete bucket (s3cmd rb)")
    s3cmd("rb", u)
    _, lsout, _ = s3cmd("ls")
    check(u not in lsout.split(), f"s3cmd ls still lists {u}")

    f.step("wrong secret")
    rc, o, e = s3cmd("ls", ok=False, cfg=BAD_CFG)
    check(re.search(r"403 \(SignatureDoesNotMatch\)", o + e), f"s3cmd ls with wrong secret: want "
          f"403 (SignatureDoesNotMatch), got {(o + e).strip()[-300:]}")


if __name__ == "__main__":
    sys.exit(Flow("s3cmd").run(flow))
