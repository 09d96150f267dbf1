"""Prometheus for real: the Debian `prometheus` binary scrapes a real bale every second (bearer
token, OpenMetrics negotiated as Prometheus does by default) while load runs; its HTTP API
must then answer the request counter exactly and a histogram_quantile over the latency
histogram. Skipped when no `prometheus` binary is installed (tests/suites/21-metrics.sh
installs it)."""

import json
import math
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest
import requests
import yaml

import baleproc
from conftest import TOKEN, s3_client

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (apt-get install prometheus)")


def query(base, q):
    r = requests.get(base + "/api/v1/query", params={"query": q}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(what, fn, timeout_s=30):
    deadline = time.time() + timeout_s
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MONITORING = os.path.join(ROOT, "scripts", "monitoring")


def shipped_config(tmp, bale_port):
    """scripts/monitoring/prometheus.yml as shipped, pointed at this bale and a token file here
    (and scraping every second so the test is short)."""
    with open(os.path.join(MONITORING, "prometheus.yml")) as f:
        cfg = yaml.safe_load(f)
    (job,) = cfg["scrape_configs"]
    assert job["job_name"] == "bale" and job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write(TOKEN)
    job["authorization"]["credentials_file"] = token_file
    job["static_configs"] = [{"targets": [f"127.0.0.1:{bale_port}"]}]
    cfg["global"]["scrape_interval"] = cfg["global"]["evaluation_interval"] = "1s"
    path = os.path.join(tmp, "prometheus.yml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


@pytest.fixture
def prometheus_for():
    procs = []

    def start(bale_port):
        tmp = tempfile.mkdtemp(prefix="bale-prom-")
        port = baleproc.free_port()
        cfg = shipped_config(tmp, bale_port)
        assert subprocess.run([shutil.which("promtool") or "promtool", "check", "config", cfg],
                              capture_output=True).returncode == 0
        log = open(os.path.join(tmp, "prometheus.log"), "wb")
        p = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/data",
                              f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                             stdout=log, stderr=subprocess.STDOUT)
        procs.append((p, tmp))
        base = f"http://127.0.0.1:{port}"

        def ready():
            try:
                return requests.get(base + "/-/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        wait_for("prometheus ready", ready)
        return base

    yield start
    for p, tmp in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def test_prometheus_scrapes_counters_and_quantiles(prometheus_for):
    with baleproc.running(cores=2, extra_args=["--metrics-token", TOKEN]) as b:
        prom = prometheus_for(b.port)
        wait_for("target up", lambda: [r for r in query(prom, 'up{job="bale"}') if r["value"][1] == "1"])
        s3 = s3_client(b)
        bucket = "p-" + uuid.uuid4().hex[:12]
        s3.create_bucket(Bucket=bucket)
        for i in range(10):
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=os.urandom(4096))
        gets = 0
        t_end = time.time() + 4  # several scrapes see the load
        while time.time() < t_end:
            s3.get_object(Bucket=bucket, Key=f"k{gets % 10}")["Body"].read()
            gets += 1

        def counted():
            r = query(prom, 'sum(bale_requests_total{op="GetObject",status="200"})')
            return r if r and float(r[0]["value"][1]) == gets else None
        wait_for(f"{gets} GetObject in Prometheus", counted)
        puts = query(prom, 'sum(bale_requests_total{op="PutObject",status="200"})')
        assert float(puts[0]["value"][1]) == 10
        # The histogram answers quantile queries: finite, positive, below the 10 s top bucket.
        for q in (0.5, 0.99):
            r = query(prom, f'histogram_quantile({q}, sum by (le) '
                            f'(rate(bale_request_duration_seconds_bucket{{op="GetObject"}}[30s])))')
            assert r, f"no result for p{q}"
            v = float(r[0]["value"][1])
            assert math.isfinite(v) and 0 < v < 10, v
        cnt = query(prom, 'sum(bale_request_duration_seconds_count{op="GetObject"})')
        assert float(cnt[0]["value"][1]) == gets
        # Engine series arrive too (per shard, both shards).
        shards = query(prom, "bale_shard_objects")
        assert sorted(r["metric"]["shard"] for r in shards) == ["0", "1"]
        assert sum(float(r["value"][1]) for r in shards) == 10
        fs = query(prom, "sum(bale_fsync_duration_seconds_count)")
        assert float(fs[0]["value"][1]) >= 1
        check_dashboard(prom)
        # promtool's linter accepts the text format as is (names, units, help, types).
        text = requests.get(f"http://127.0.0.1:{b.port}/metrics", timeout=5,
                            headers={"Authorization": f"Bearer {TOKEN}"}).text
        lint = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"], input=text,
                              capture_output=True, text=True)
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint


def check_dashboard(prom):
    """Every query of scripts/monitoring/grafana-bale.json is valid PromQL on this Prometheus,
    and the panels the issue names show data after the load."""
    with open(os.path.join(MONITORING, "grafana-bale.json")) as f:
        dash = json.load(f)
    titles = {p["title"]: p for p in dash["panels"]}
    for want in ("Requests per second by operation", "p50 latency by operation", "p99 latency by operation",
                 "Errors per second by S3 code", "Cache hit ratio", "In-flight requests and open connections",
                 "Journal fsync latency (p50, p99)", "Free space and reserve per shard"):
        assert want in titles, want
    must_have_data = {"Requests per second by operation", "p99 latency by operation",
                      "In-flight requests and open connections", "Journal fsync latency (p50, p99)",
                      "Free space and reserve per shard"}
    for p in dash["panels"]:
        assert p["targets"], p["title"]
        for t in p["targets"]:
            expr = t["expr"].replace("$__rate_interval", "30s")
            r = query(prom, expr)
            if p["title"] in must_have_data:
                assert r, f"panel {p['title']!r}: {expr} returned nothing"
