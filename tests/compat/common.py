"""Shared spec and helpers for the client compatibility flows.

Every client runs the same flow (see README.md) against one endpoint with its own bucket.
A flow script gets its settings from the environment (set by run.py):

  COMPAT_ENDPOINT   http://127.0.0.1:PORT
  COMPAT_ACCESS_KEY, COMPAT_SECRET_KEY, COMPAT_REGION
  COMPAT_BUCKET     a bucket name unique to this client run
  COMPAT_BIG        path of the 20 MiB data file (same bytes for every client)
  COMPAT_WORKDIR    a scratch directory for this client
  COMPAT_CALL_TIMEOUT  seconds one client call may take

and prints exactly one last line: `PASS <client>` or `FAIL <client>: <reason>`.
"""

import hashlib
import os
import sys
import time
import traceback

ENDPOINT = os.environ.get("COMPAT_ENDPOINT", "http://127.0.0.1:9000")
ACCESS_KEY = os.environ.get("COMPAT_ACCESS_KEY", "")
SECRET_KEY = os.environ.get("COMPAT_SECRET_KEY", "")
REGION = os.environ.get("COMPAT_REGION", "us-east-1")
BUCKET = os.environ.get("COMPAT_BUCKET", "compat")
BIG_PATH = os.environ.get("COMPAT_BIG", "")
WORKDIR = os.environ.get("COMPAT_WORKDIR", "/tmp")
CALL_TIMEOUT = float(os.environ.get("COMPAT_CALL_TIMEOUT", "60"))
WRONG_SECRET = SECRET_KEY + "-wrong"

HOSTPORT = ENDPOINT.split("://", 1)[1].rstrip("/")

MiB = 1024 * 1024
BIG_SIZE = 20 * MiB
BIG_KEY = "big/blob.bin"

CONTENT_TYPE = "application/x-bale-compat"
META = {"color": "blue", "owner": "compat-suite"}

WEIRD_KEY = "other/a b+c&d=e;\u00fc%41.txt"

# key -> body. Bodies differ so a mixed-up key shows as wrong bytes.
SMALL = {
    "docs/a.txt": b"alpha object body\n",
    "docs/b.txt": b"bravo " * 100,
    "docs/sub/c.txt": bytes(range(256)) * 4,
    "other/d.txt": b"delta",
    # Space, +, &, =, ;, non-ASCII and a literal %41: each client must encode it (SigV4
    # canonical URI, query strings, XML listings) and the server must not decode it twice.
    WEIRD_KEY: b"weird key body",
    # Zero bytes: the Rust SDK sends an aws-chunked body that is only the final chunk + trailer.
    "other/empty.txt": b"",
    "top.txt": b"top-level object with a longer body " * 30,
}
ALL_KEYS = sorted(list(SMALL) + [BIG_KEY])

# Expected listings.
PREFIX_DOCS = ["docs/a.txt", "docs/b.txt", "docs/sub/c.txt"]           # prefix=docs/
ROOT_DELIM_KEYS = ["top.txt"]                                           # delimiter=/
ROOT_DELIM_PREFIXES = ["big/", "docs/", "other/"]
DOCS_DELIM_KEYS = ["docs/a.txt", "docs/b.txt"]                          # prefix=docs/ delimiter=/
DOCS_DELIM_PREFIXES = ["docs/sub/"]

COPY_SRC = "docs/b.txt"
COPY_DST = "copies/b-copy.txt"
DELETE_ONE = "docs/a.txt"


def big_data():
    with open(BIG_PATH, "rb") as f:
        data = f.read()
    if len(data) != BIG_SIZE:
        raise RuntimeError(f"{BIG_PATH} has {len(data)} bytes, want {BIG_SIZE}")
    return data


def make_big(path):
    """Deterministic 20 MiB of incompressible bytes."""
    out = bytearray()
    block = hashlib.sha256(b"bale-compat").digest()
    seed = 0
    while len(out) < BIG_SIZE:
        h = hashlib.shake_256(block + seed.to_bytes(8, "little")).digest(1 << 20)
        out += h
        seed += 1
    with open(path, "wb") as f:
        f.write(bytes(out[:BIG_SIZE]))


def md5_hex(b):
    return hashlib.md5(b).hexdigest()


def multipart_etag(data, part_size):
    """S3's ETag for an object uploaded in parts of part_size (last may be short)."""
    digests = b""
    n = 0
    for off in range(0, len(data), part_size):
        digests += hashlib.md5(data[off:off + part_size]).digest()
        n += 1
    return f"{hashlib.md5(digests).hexdigest()}-{n}"


def ranges_for(part_size, size=BIG_SIZE):
    """(first, last) inclusive byte ranges: across part boundaries, spanning several parts,
    inside one part, and the last 100 bytes (returned separately as suffix)."""
    p = part_size
    rs = [
        (p - 100, p + 99),              # across the first boundary
        (p - 1, p),                     # the two bytes either side of it
        (p - 7, 2 * p + 13),            # spans a whole part
        (12345, 67890),                 # inside the first part
    ]
    if 2 * p < size:
        rs.append((2 * p - 4096, 2 * p + 4095))
    return [(a, min(b, size - 1)) for a, b in rs]


def strip_etag(e):
    return (e or "").strip().strip('"')


def norm_meta(m):
    """Lower-case keys, drop an x-amz-meta- prefix if a client leaves it on."""
    out = {}
    for k, v in (m or {}).items():
        k = k.lower()
        if k.startswith("x-amz-meta-"):
            k = k[len("x-amz-meta-"):]
        out[k] = v
    return out


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def eq(got, want, what):
    if got != want:
        g, w = repr(got), repr(want)
        if len(g) > 300:
            g = g[:300] + "..."
        if len(w) > 300:
            w = w[:300] + "..."
        raise Fail(f"{what}: got {g}, want {w}")


def bytes_eq(got, want, what):
    if got != want:
        if len(got) != len(want):
            raise Fail(f"{what}: got {len(got)} bytes, want {len(want)}")
        i = next(i for i in range(len(got)) if got[i] != want[i])
        raise Fail(f"{what}: {len(got)} bytes but they differ first at offset {i}")


class Flow:
    """Runs named steps; the first failing step ends the flow with a FAIL line."""

    def __init__(self, client):
        self.client = client
        self.step_name = "setup"
        self.t0 = time.time()

    def step(self, name):
        self.step_name = name
        print(f"[{self.client}] {time.time() - self.t0:6.2f}s {name}", flush=True)

    def run(self, fn):
        try:
            fn(self)
        except Fail as e:
            print(f"FAIL {self.client}: {self.step_name}: {e}", flush=True)
            return 1
        except Exception as e:  # a client error is a failure too; keep its reason
            traceback.print_exc(file=sys.stdout)
            msg = f"{type(e).__name__}: {e}".replace("\n", " ")
            print(f"FAIL {self.client}: {self.step_name}: {msg[:800]}", flush=True)
            return 1
        print(f"PASS {self.client}", flush=True)
        return 0
