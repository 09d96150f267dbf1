"""--index-memory-mb (ADR 29): a budget smaller than the index pages key blocks to index.spill;
every object still reads back, lists in order and survives kill -9; bad values are refused."""

import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import baleproc
from helpers import needs_own_bale
from test_process import client, first_line, run_bale

pytestmark = needs_own_bale


def spill_bytes(dirs):
    n = 0
    for d in dirs:
        for root, _, files in os.walk(d):
            if "index.spill" in files:
                n += os.path.getsize(os.path.join(root, "index.spill"))
    return n


def metrics(b):
    with urllib.request.urlopen(f"{b.endpoint}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("bale_index_"):
            name, v = line.rsplit(" ", 1)
            out[name] = float(v)
    return out


def key(i):
    # ~180-byte keys: 8,000 of them make ~1.8 MB of key blocks, past a 1 MiB budget.
    return f"collection/{i % 13:02d}/" + "s" * 140 + f"/segment-{(i * 7919) % 100000:06d}-{i}"


def test_budget_pages_the_index_and_serves_everything():
    n = 8000
    b = baleproc.Bale(cores=1, env={"BALE_INDEX_MEMORY_MB": "1"}, keep_data=True,
                      extra_args=["--metrics-public"])
    b.start()
    try:
        s3 = client(b)
        s3.create_bucket(Bucket="paged")
        body = {i: f"v{i}".encode() * 3 for i in range(n)}

        def put(i):
            s3.put_object(Bucket="paged", Key=key(i), Body=body[i])

        with ThreadPoolExecutor(8) as ex:
            list(ex.map(put, range(n)))
        assert spill_bytes(b.data_dirs) > 0, "a 1 MiB budget under ~1.8 MB of keys spills"
        want = sorted(key(i) for i in range(n))

        def list_all():
            keys, token = [], None
            while True:
                kw = {"Bucket": "paged", "MaxKeys": 1000}
                if token:
                    kw["ContinuationToken"] = token
                r = s3.list_objects_v2(**kw)
                keys += [o["Key"] for o in r.get("Contents", [])]
                if not r["IsTruncated"]:
                    return keys
                token = r["NextContinuationToken"]

        def check():
            assert list_all() == want
            for i in range(0, n, 7):
                assert s3.get_object(Bucket="paged", Key=key(i))["Body"].read() == body[i], i

        check()
        m = metrics(b)
        assert m["bale_index_spill_writes_total"] > 0 and m["bale_index_spill_reads_total"] > 0, m
        assert 0 < m["bale_index_resident_bytes"] <= 1 << 20, m
        assert m["bale_index_spill_errors_total"] == 0, m
        b.kill9()
        b.restart()
        s3 = client(b)
        check()
    finally:
        b.keep_data = False
        b.cleanup()


def test_bad_index_memory_mb(tmp_path):
    port = baleproc.free_port()
    base = ["serve", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "d"),
            "--access-key", "goodaccesskey", "--secret-key", "goodsecretkey"]
    rc, out, err = run_bale(base + ["--index-memory-mb", "99999999999"])
    assert rc != 0
    assert "--index-memory-mb" in first_line(out, err), err
    rc, out, err = run_bale(base + ["--index-memory-mb", "lots"])
    assert rc != 0 and "lots" in err
    # Less than 1 MiB per shard: refused with the least that works.
    rc, out, err = run_bale(base + ["--index-memory-mb", "1", "--cores", "2", "--shards-per-dir", "2"])
    assert rc != 0
    line = first_line(out, err)
    assert "--index-memory-mb 1 is too small for 2 shards" in line and "at least 2" in line, line
