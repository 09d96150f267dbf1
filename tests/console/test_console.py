"""The web console (issue 16): a real bale with --console-listen, driven by headless Chromium
(Debian's package, through Playwright's driver) the way a person uses it, plus the console
listener's refusals checked on the wire.

Screenshots go to $BALE_CONSOLE_SHOTS (default: a temp dir); `BALE_CONSOLE_SHOTS=docs/img`
refreshes the ones the README shows.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import boto3
import pytest
import requests
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "functional"))
from baleproc import Bale, bale_bin, free_port  # noqa: E402
from sigv4 import Signer, raw_exchange  # noqa: E402

CHROMIUM = os.environ.get("BALE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
UI_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def bale():
    port = free_port()
    b = Bale(cores=2, extra_args=["--console-listen", f"127.0.0.1:{port}"])
    b.console = f"http://127.0.0.1:{port}"
    b.console_host = f"127.0.0.1:{port}"
    b.start()
    try:
        yield b
    finally:
        b.cleanup()


def s3_client(b):
    return boto3.client(
        "s3", endpoint_url=b.endpoint, aws_access_key_id=b.access_key,
        aws_secret_access_key=b.secret_key, region_name=b.region,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1}))


def signed_via_console(b, method, path, query=()):
    """A request signed for the console's host, sent to /api/s3 on the console."""
    target, headers, _ = Signer(b.access_key, b.secret_key, b.region).sign_headers(
        method, b.console_host, path, query)
    headers.pop("Host")
    return requests.request(method, b.console + "/api/s3" + target, headers=headers, timeout=10)


# ---- the listener, on the wire ----

def test_page_is_served_self_contained_with_a_strict_policy(bale):
    r = requests.get(bale.console + "/", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert f'content="{bale.region}"' in r.text
    # Every asset the page names is served by bale itself: no CDN, nothing external.
    refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert refs and all(u.startswith("/") or u.startswith("data:") for u in refs), refs
    for u in refs:
        if u.startswith("/"):
            a = requests.get(bale.console + u, timeout=10)
            assert a.status_code == 200 and len(a.content) > 100, u
            assert "http://" not in a.text and "https://" not in a.text, u


def test_console_refuses_anything_but_the_page_and_signed_requests(bale):
    # Anonymous S3 request: refused by the console itself, connection closed, never forwarded.
    r = requests.get(bale.console + "/api/s3/", timeout=10)
    assert r.status_code == 403 and b"<Code>AccessDenied</Code>" in r.content
    assert r.headers["connection"] == "close"
    r = requests.put(bale.console + "/api/s3/anon-bucket", timeout=10)
    assert r.status_code == 403
    assert "anon-bucket" not in [x["Name"] for x in s3_client(bale).list_buckets()["Buckets"]]
    # Methods the page never uses, other paths.
    r = requests.post(bale.console + "/api/s3/b?delete", headers={"Authorization": "AWS4-HMAC-SHA256 x"},
                      data=b"<Delete/>", timeout=10)
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, PUT, DELETE"
    assert requests.post(bale.console + "/", data=b"x", timeout=10).status_code == 405
    for path in ("/favicon.ico", "/api/s3x/", "/metrics", "/health", "/api"):
        assert requests.get(bale.console + path, timeout=10).status_code == 404, path
    # A head larger than the console's bound: 431, not a buffered megabyte.
    resp, info = raw_exchange("127.0.0.1", int(bale.console_host.split(":")[1]),
                              b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 10)
    assert resp is not None and resp.status == 431, info
    # A forged signature is forwarded and refused by the S3 port with its own error.
    r = requests.get(bale.console + "/api/s3/", timeout=10, headers={
        "Authorization": f"AWS4-HMAC-SHA256 Credential={bale.access_key}/20260101/us-east-1/s3/aws4_request, "
                         "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        "x-amz-date": "20260101T000000Z"})
    assert r.status_code == 403 and b"<Code>" in r.content


def test_idle_connections_do_not_lock_out_the_console(bale):
    """More connections than the console holds (64), none sending a byte: the oldest that
    never sent a head make room, and a browser still gets the page at once."""
    import socket
    port = int(bale.console_host.split(":")[1])
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(80)]
    try:
        t0 = time.monotonic()
        r = requests.get(bale.console + "/", timeout=5)
        assert r.status_code == 200 and time.monotonic() - t0 < 2
        # The first idle ones were evicted: the server closed them.
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""
    finally:
        for s in idle:
            s.close()


def test_signed_requests_pass_through_unchanged(bale):
    s3 = s3_client(bale)
    s3.create_bucket(Bucket="wire")
    body = os.urandom(70_000)
    s3.put_object(Bucket="wire", Key="dir/a b+c.bin", Body=body)
    r = signed_via_console(bale, "GET", "/wire/dir/a b+c.bin")
    assert r.status_code == 200 and r.content == body
    assert r.headers["etag"] == '"%s"' % hashlib.md5(body).hexdigest()
    r = signed_via_console(bale, "GET", "/wire", [("list-type", "2"), ("prefix", "dir/")])
    assert r.status_code == 200 and b"<Key>dir/a b+c.bin</Key>" in r.content
    r = signed_via_console(bale, "GET", "/nosuchbucket")
    assert r.status_code == 404 and b"<Code>NoSuchBucket</Code>" in r.content


def test_large_upload_streams_through(bale):
    """A 24 MiB PUT through the console, as the page sends it (UNSIGNED-PAYLOAD), arrives
    byte-identical."""
    s3 = s3_client(bale)
    s3.create_bucket(Bucket="big")
    body = os.urandom(24 << 20)
    target, headers, _ = Signer(bale.access_key, bale.secret_key, bale.region).sign_headers(
        "PUT", bale.console_host, "/big/blob", payload_hash="UNSIGNED-PAYLOAD")
    headers.pop("Host")
    r = requests.put(bale.console + "/api/s3" + target, data=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.content
    assert r.headers["etag"] == '"%s"' % hashlib.md5(body).hexdigest()
    got = s3.get_object(Bucket="big", Key="blob")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()


def test_stops_cleanly_with_the_console_on():
    port = free_port()
    b = Bale(extra_args=["--console-listen", f"127.0.0.1:{port}"])
    b.start()
    try:
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        # bale installs its SIGTERM handler just after the banner (after /health answers).
        deadline = time.time() + 10
        while "secret key:" not in b.log_tail(20000) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert b.stop() == 0
        assert "console stopped" in b.log_tail(20000)
    finally:
        b.cleanup()


def test_console_address_must_differ_from_the_s3_address(tmp_path):
    port = free_port()
    p = subprocess.run([bale_bin(), "serve", "--listen", f"127.0.0.1:{port}", "--console-listen",
                        f"127.0.0.1:{port}", "--data", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "--console-listen" in p.stderr and "own port" in p.stderr, p.stderr


def test_console_is_off_by_default(bale):
    # The fixture's S3 port carries no console: its root is the S3 API (anonymous: refused).
    r = requests.get(bale.endpoint + "/", timeout=10)
    assert r.status_code == 403 and b"AccessDenied" in r.content


# ---- the page, in a real browser ----

@pytest.fixture(scope="module")
def browser_page():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} missing: tests/suites/22-console.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright
    profile = tempfile.mkdtemp(prefix="bale-chromium-")
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            accept_downloads=True, viewport={"width": 1360, "height": 820})
        page = ctx.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # (Chromium logs every non-2xx fetch as "Failed to load resource": expected here.)
        page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
                and errors.append(m.text))
        page.errors = errors
        try:
            yield page
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def shots_dir():
    d = os.environ.get("BALE_CONSOLE_SHOTS") or os.path.join(tempfile.gettempdir(), "bale-console-shots")
    os.makedirs(d, exist_ok=True)
    return d


def sign_in(page, access, secret):
    page.fill("#access-key", access)
    page.fill("#secret-key", secret)
    page.click("#signin-btn")


def number(page, sel):
    t = page.text_content(sel).strip()
    try:
        return float(t)
    except ValueError:
        return 0.0


def test_page_hashes_like_python(bale, browser_page):
    page = browser_page
    page.goto(bale.console + "/")
    for s in ["", "abc", "a" * 55, "a" * 56, "a" * 64, "ü" * 1000]:
        got = page.evaluate("s => BaleSig.hex(BaleSig.sha256(s))", s)
        assert got == hashlib.sha256(s.encode()).hexdigest(), s
    import hmac
    got = page.evaluate("() => BaleSig.hex(BaleSig.hmac('k'.repeat(100), 'what do ya want for nothing?'))")
    assert got == hmac.new(b"k" * 100, b"what do ya want for nothing?", hashlib.sha256).hexdigest()


SCRAPE_1 = """# HELP bale_requests_total Requests answered.
# TYPE bale_requests_total counter
bale_requests_total{op="GetObject",status="200"} 100
bale_requests_total{op="GetObject",status="404"} 10
bale_requests_total{op="PutObject",status="200"} 5
# TYPE bale_request_duration_seconds histogram
bale_request_duration_seconds_bucket{op="GetObject",le="0.001"} 50
bale_request_duration_seconds_bucket{op="GetObject",le="0.002"} 100
bale_request_duration_seconds_bucket{op="GetObject",le="+Inf"} 110
bale_request_duration_seconds_sum{op="GetObject"} 0.1
bale_request_duration_seconds_count{op="GetObject"} 110
"""
# Two seconds later: 200 more GETs (100 in (0, 1 ms], 98 in (1, 2 ms], 2 above), 10 PUTs, with
# no PUT histogram lines at all (a percentile it cannot know stays empty, not zero).
SCRAPE_2 = SCRAPE_1.replace("} 100\n", "} 290\n", 1).replace('status="404"} 10', 'status="404"} 20') \
    .replace('PutObject",status="200"} 5', 'PutObject",status="200"} 15') \
    .replace('le="0.001"} 50', 'le="0.001"} 150').replace('le="0.002"} 100', 'le="0.002"} 298') \
    .replace('le="+Inf"} 110', 'le="+Inf"} 310')


def test_metrics_math_in_the_page(bale, browser_page):
    """The panel's arithmetic on fixed scrapes: rate from counter deltas, percentiles
    interpolated inside the histogram bucket of the interval (Prometheus's rule)."""
    page = browser_page
    page.goto(bale.console + "/")
    d = page.evaluate("""([a, b]) => BaleMetrics.delta(
        BaleMetrics.snapshot(a, 1000), BaleMetrics.snapshot(b, 3000))""", [SCRAPE_1, SCRAPE_2])
    assert d["get"]["rate"] == pytest.approx(100.0)  # 200 requests in 2 s, every status
    assert d["get"]["p50"] == pytest.approx(1.0)  # rank 100 of 200: top of the first bucket
    assert d["get"]["p99"] == pytest.approx(2.0)  # rank 198: the top of (1, 2 ms]
    assert d["put"] == {"rate": pytest.approx(5.0), "p50": None, "p99": None}
    q = page.evaluate("() => BaleMetrics.quantile(0.25, [[0.001, 40], [0.004, 80], [Infinity, 80]])")
    assert q == pytest.approx(0.0005)
    assert page.evaluate("() => BaleMetrics.quantile(0.99, [[0.001, 0], [Infinity, 5]])") == 0.001
    assert page.evaluate("() => BaleMetrics.quantile(0.5, [[0.001, 0], [Infinity, 0]])") is None


def test_wrong_key_shows_the_s3_error_and_no_listing(bale, browser_page):
    page = browser_page
    page.goto(bale.console + "/")
    sign_in(page, bale.access_key, bale.secret_key + "-wrong")
    page.wait_for_selector("#signin-error:not([hidden])")
    assert "SignatureDoesNotMatch" in page.text_content("#signin-error")
    assert page.is_hidden("#app-view")
    sign_in(page, "nosuchaccesskey", bale.secret_key)
    page.wait_for_function("() => document.querySelector('#signin-error').textContent.includes('InvalidAccessKeyId')")
    assert page.is_hidden("#app-view")
    assert page.evaluate("() => sessionStorage.length") == 0


def test_sign_in_create_upload_download_delete(bale, browser_page, tmp_path):
    page = browser_page
    s3 = s3_client(bale)
    page.goto(bale.console + "/")
    sign_in(page, bale.access_key, bale.secret_key)
    page.wait_for_selector("#app-view:not([hidden])")
    assert page.text_content("#who") == bale.access_key

    bucket = "console-" + uuid.uuid4().hex[:8]
    page.fill("#new-bucket", bucket)
    page.click("#create-bucket-btn")
    page.wait_for_selector(f'tr[data-bucket="{bucket}"]')
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    # A folder made by another client shows as a prefix to navigate into.
    s3.put_object(Bucket=bucket, Key="logs/2026/day.txt", Body=b"hello from boto3\n")
    page.click(f'tr[data-bucket="{bucket}"] button')
    page.wait_for_selector('tr[data-prefix="logs/"]')

    data = os.urandom(300_000)
    src = tmp_path / "random.bin"
    src.write_bytes(data)
    page.set_input_files("#upload-file", str(src))
    page.click("#upload-btn")
    row = 'tr[data-key="random.bin"]'
    page.wait_for_selector(row)
    assert page.text_content(f"{row} td.name") == "random.bin"
    assert page.get_attribute(f"{row} td.size", "data-bytes") == "300000"
    assert page.text_content(f"{row} td.size") == "293.0 KiB"
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page.text_content(f"{row} td:nth-child(3)"))
    got = s3.get_object(Bucket=bucket, Key="random.bin")["Body"].read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    page.screenshot(path=os.path.join(shots_dir(), "console-objects.png"))

    with page.expect_download() as dl:
        page.click(f"{row} button.download")
    path = dl.value.path()
    assert dl.value.suggested_filename == "random.bin"
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == hashlib.sha256(data).hexdigest()

    # Prefix navigation and breadcrumbs.
    page.click('tr[data-prefix="logs/"] button')
    page.wait_for_selector('tr[data-prefix="logs/2026/"]')
    page.click('tr[data-prefix="logs/2026/"] button')
    page.wait_for_selector('tr[data-key="logs/2026/day.txt"]')
    assert page.get_attribute('tr[data-key="logs/2026/day.txt"] td.size', "data-bytes") == "17"
    assert [t.strip() for t in page.locator("#crumbs button").all_text_contents()] == \
        ["Buckets", bucket, "logs", "2026"]
    page.click(f'#crumbs button:text-is("{bucket}")')
    page.wait_for_selector(row)

    page.once("dialog", lambda d: d.accept())
    page.click(f"{row} button.delete")
    page.wait_for_selector(row, state="detached")
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="random.bin")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert page.is_hidden("#error")

    # A bucket that still holds objects is not deleted: the S3 error shows on the page.
    page.once("dialog", lambda d: d.accept())
    page.click("#delete-bucket-btn")
    page.wait_for_selector("#error:not([hidden])")
    assert "BucketNotEmpty" in page.text_content("#error")
    s3.delete_object(Bucket=bucket, Key="logs/2026/day.txt")
    page.once("dialog", lambda d: d.accept())
    page.click("#delete-bucket-btn")
    page.wait_for_selector("#bucket-pane:not([hidden])")
    page.wait_for_selector(f'tr[data-bucket="{bucket}"]', state="detached")
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert page.is_hidden("#error")
    assert not page.errors, page.errors


def test_live_chart_moves_under_load(bale, browser_page):
    probe = signed_via_console(bale, "GET", "/metrics")
    if probe.status_code == 404 and b"<Code>NoSuchBucket</Code>" in probe.content:
        pytest.skip("this build has no GET /metrics (the S3 API took it for a bucket)")
    assert probe.status_code == 200 and b"bale_requests_total" in probe.content, probe.content[:300]
    s3 = s3_client(bale)
    s3.create_bucket(Bucket="load")
    keys = [f"obj-{i:02}.bin" for i in range(12)]
    for k in keys:
        s3.put_object(Bucket="load", Key=k, Body=os.urandom(4096))

    page = browser_page
    page.goto(bale.console + "/")
    if page.is_visible("#signin-view"):
        sign_in(page, bale.access_key, bale.secret_key)
    page.click('tr[data-bucket="load"] button')
    page.wait_for_selector(f'tr[data-key="{keys[-1]}"]')
    page.wait_for_function("() => document.querySelector('#m-state').textContent.startsWith('live')",
                           timeout=UI_TIMEOUT_MS)
    before = page.evaluate("() => document.getElementById('latency-chart').toDataURL()")

    stop = threading.Event()

    def load():
        i = 0
        while not stop.is_set():
            k = keys[i % len(keys)]
            s3.put_object(Bucket="load", Key=k, Body=os.urandom(4096))
            for _ in range(2):  # twice as many GETs, so the two lines part on the chart
                s3.get_object(Bucket="load", Key=k)["Body"].read()
            i += 1

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        page.wait_for_function(
            "() => ['m-get-rate','m-get-p50','m-get-p99','m-put-rate','m-put-p50','m-put-p99']"
            ".every(id => parseFloat(document.getElementById(id).textContent) > 0)",
            timeout=UI_TIMEOUT_MS)
        time.sleep(6)  # a few more points on the chart for the screenshot
        page.screenshot(path=os.path.join(shots_dir(), "console-live.png"))
    finally:
        stop.set()
        t.join(10)
    after = page.evaluate("() => document.getElementById('latency-chart').toDataURL()")
    assert after != before
    for sel in ("#m-get-rate", "#m-put-rate", "#m-get-p50", "#m-put-p99"):
        assert number(page, sel) > 0, sel
    assert not page.is_visible("#m-state.bad")
    assert not page.errors, page.errors
