"""scripts/milvus/seedtable.py without Milvus: the report's medians, the smoke check's verdicts
(a failed pass or a missing figure must fail it), the seeded data and the brute-force reference,
and e2e.py's milvus.yaml rendering for the local backend and for keys the template lacks.
The real runs are scripts/seed-table.sh (--smoke in tests/suites/50-milvus.sh)."""

import json
import os
import sys

import numpy as np
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts", "milvus"))
import e2e  # noqa: E402
import seedtable  # noqa: E402


def a_pass(system, ok=True, **over):
    m = {"insert_rows_per_s": 1000.0, "flush_s": 2.0, "index_s": 30.0, "first_load_s": 5.0, "cold_load_s": 5.0,
         "warm_load_s": 5.0, "warm_load_s_each": [5.0, 5.0, 5.0], "search_p50_ms": 3.0, "search_p99_ms": 20.0,
         "recall_at_10": 0.93, "filter_p50_ms": 3.0, "filter_p99_ms": 10.0, "outvec_p50_ms": 5.0,
         "storage": {"stored_bytes": 100_000_000, "disk_allocated_bytes": 110_000_000, "disk_over_stored": 1.1},
         "s3_requests_total": {} if system == "local" else {"GetObject": 10, "PutObject": 5},
         "s3_requests_by_phase": {"search": {}, "query_filter": {}, "search_output_vec": {}},
         "s3_time_by_phase": {} if system == "local" else {"cold_load": {"requests_ms_sum": 80.0}}}
    m.update(over)
    return {"pass_ok": ok, "backend": system, "params": {"system": system}, "metrics": m,
            "failures": [] if ok else ["boom"]}


def write_run(tmp_path, passes):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i, p in enumerate(passes):
        (raw / f"rep{i}-{p['params']['system']}.json").write_text(json.dumps(p))
    meta = {"command": "scripts/seed-table.sh --smoke", "commit": "0" * 40, "started": "s", "finished": "f",
            "machine": "m", "load_start": "1", "load_end": "2", "servers": "x", "rows": 3000, "dim": 128,
            "ef": 64, "seed": 1, "searches": 200, "filter_queries": 20, "reps": 1, "orders": ["rep 1: bale local"]}
    s = seedtable.summarize(str(tmp_path), meta)
    seedtable.write_report(str(tmp_path), s, str(tmp_path / "seed-table.png"))
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(s))
    return s, str(path)


def test_medians_and_check_pass(tmp_path):
    s, path = write_run(tmp_path, [a_pass("bale", index_s=10.0), a_pass("bale", index_s=30.0),
                                   a_pass("bale", index_s=20.0), a_pass("local")])
    assert s["systems"]["bale"]["median"]["index_s"] == 20.0
    assert s["systems"]["bale"]["median"]["milvus_requests"] == 15
    assert s["systems"]["bale"]["median"]["cold_load_s3_ms"] == 80.0
    assert seedtable.check(path, ["bale", "local"]) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| index build (HNSW M=16, efC=200) (s) | 20.0 |" in text
    assert "How much of a load is the store" in text


def test_check_fails_on_failed_pass_missing_figure_or_system(tmp_path):
    _, path = write_run(tmp_path, [a_pass("bale", ok=False), a_pass("local")])
    assert seedtable.check(path, ["bale", "local"]) == 1
    d2 = tmp_path / "b"
    d2.mkdir()
    p = a_pass("bale")
    del p["metrics"]["cold_load_s"]
    _, path = write_run(d2, [p, a_pass("local")])
    assert seedtable.check(path, ["bale", "local"]) == 1
    d3 = tmp_path / "c"
    d3.mkdir()
    _, path = write_run(d3, [a_pass("local")])
    assert seedtable.check(path, ["bale", "local"]) == 1
    d4 = tmp_path / "d"
    d4.mkdir()
    _, path = write_run(d4, [a_pass("bale", s3_requests_total={}), a_pass("local")])
    assert seedtable.check(path, ["bale", "local"]) == 1  # an S3 system with no requests recorded


def test_data_is_seeded_and_brute_force_is_exact():
    a, qa = seedtable.make_data(7, 500, 20, 64, 8)
    b, qb = seedtable.make_data(7, 500, 20, 64, 8)
    assert a.dtype == np.float32 and a.shape == (500, 64) and qa.shape == (20, 64)
    assert np.array_equal(a, b) and np.array_equal(qa, qb)
    top = seedtable.brute_force_topk(a, qa, 10)
    d = ((qa[:, None, :].astype(np.float64) - a[None, :, :]) ** 2).sum(-1)
    assert np.array_equal(top, np.argsort(d, axis=1)[:, :10])


def test_render_local_storage_and_added_key(tmp_path):
    cfg = e2e.render_milvus_config(str(tmp_path), "a", "s", 3600, 2, 30, storage_type="local",
                                   extra_keys={"queryNode.mmapDirPath": "/tmp/mm"})
    y = yaml.safe_load(open(cfg))
    assert y["common"]["storageType"] == "local"
    assert y["localStorage"]["path"] == os.path.join(str(tmp_path), "local-store")
    assert y["queryNode"]["mmapDirPath"] == "/tmp/mm"
    assert y["queryNode"]["cache"]["readAheadPolicy"]  # the rest of the section is intact
