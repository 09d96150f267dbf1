#!/usr/bin/env bash
# Milvus end to end through bale gateways (issue 15, docs/gateway.md "Milvus"): a real Milvus
# 2.3.5 (embedded, tests/.venv-milvus) whose S3 is a bale gateway in front of SeaweedFS
# (`weed server -s3`, the tests' helper in tests/gateway/conftest.py).
#
#   phase A  Milvus on gateway A: create, insert, flush, HNSW index, load, 20 searches
#            (scripts/milvus/e2e.py's `migrate-a` inner mode)
#   check    every segment/index object Milvus wrote is on SeaweedFS itself (listed directly,
#            sizes equal); gateway A is stopped
#   phase B  Milvus restarted on gateway B, started empty (cold): it must find, load and search
#            the collection with the same answers, insert, drop, and see GC empty the bucket
#            (`migrate-b`); B's /metrics must show that it filled the load from SeaweedFS
#
# Usage: scripts/milvus-e2e-gateway.sh [--rows N] [--timeout S] [--gc-wait S] [--keep]
# Env:   WEED_BIN (default tests/.venv-gateway/bin/weed, then bench/out/venv/bin/weed),
#        BALE_BIN. Needs root (unshare --net), as scripts/milvus-e2e.sh.
# Prints the report and PASS or FAIL; exits non-zero on failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/tests/.venv-milvus"

[ "$(uname -m)" = x86_64 ] || { echo "milvus-e2e-gateway: SKIP: the milvus 2.3.5 wheel is Linux x86_64 only"; exit 0; }
if ! unshare --net --pid --fork --kill-child --mount-proc true 2>/dev/null; then
  echo "milvus-e2e-gateway: FAIL: cannot create network/PID namespaces here (needs root or CAP_SYS_ADMIN)" >&2
  exit 1
fi
bash scripts/milvus/setup-venv.sh >/dev/null
if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
  cargo build --release -p bale
fi
if [ -z "${WEED_BIN:-}" ]; then
  for w in tests/.venv-gateway/bin/weed bench/out/venv/bin/weed; do
    [ -x "$w" ] && { export WEED_BIN="$PWD/$w"; break; }
  done
fi

PIDFILE="$(mktemp /tmp/milvus-e2e-gw-pids.XXXXXX)"
export MILVUS_E2E_PIDFILE="$PIDFILE"
child=""
cleanup() {
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$child" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$child" 2>/dev/null || true
  fi
  if [ -s "$PIDFILE" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    done < "$PIDFILE"
  fi
  rm -f "$PIDFILE"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$VENV/bin/python" -u - "$@" <<'PY' &
import argparse, json, os, shutil, signal, sys, tempfile, time, traceback, urllib.request
ROOT = os.getcwd()
sys.path.insert(0, os.path.join(ROOT, "scripts", "milvus"))
sys.path.insert(0, os.path.join(ROOT, "tests", "gateway"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import e2e  # noqa: E402  (scripts/milvus/e2e.py: the inner Milvus phases, relays, report)
from e2e import BUCKET, NS_S3_PORT, PREFIXES, ROOT_PATH, log  # noqa: E402

o = argparse.ArgumentParser()
o.add_argument("--rows", type=int, default=3000)
o.add_argument("--timeout", type=float, default=float(os.environ.get("MILVUS_E2E_TIMEOUT", 540)))
o.add_argument("--gc-wait", type=int, default=90)
o.add_argument("--keep", action="store_true")
args = o.parse_args()
args.gc_interval, args.gc_drop_tolerance, args.gc_missing_tolerance = 2, 2, 30


def weed_objects(weed):
    c = weed.client()
    out = []
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=ROOT_PATH + "/"):
        out += [(o["Key"], o["Size"]) for o in page.get("Contents", [])]
    return sorted(out)


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            m[k] = float(v)
    return m


def main():
    from conftest import WEED_AK, WEED_SK, Weed
    t_start = time.time()
    deadline = t_start + args.timeout
    signal.signal(signal.SIGTERM, e2e._on_term)
    signal.signal(signal.SIGINT, e2e._on_term)
    workdir = tempfile.mkdtemp(prefix="bale-milvus-gw-")
    log(f"workdir {workdir}")
    result = {"failures": [], "metrics": {}, "steps": [],
              "title": "through bale gateways in front of SeaweedFS (A writes, B cold loads)"}
    fails = result["failures"]
    ok = False
    weed = Weed()
    os.environ.update(BALE_UPSTREAM="", BALE_UPSTREAM_ACCESS_KEY=WEED_AK, BALE_UPSTREAM_SECRET_KEY=WEED_SK,
                      BALE_METRICS_PUBLIC="true")
    a = e2e.BaleBackend(workdir, name="gateway-a", subdir="gw-a-data")
    b = e2e.BaleBackend(workdir, name="gateway-b", subdir="gw-b-data")
    state = os.path.join(workdir, "state.json")
    rec_b = e2e.S3Recorder()
    try:
        t = time.perf_counter()
        weed.start()
        e2e.record_pid(weed.proc.pid)
        result["steps"].append(("SeaweedFS start", round(time.perf_counter() - t, 2)))
        os.environ["BALE_UPSTREAM"] = weed.endpoint
        for g in (a, b):
            g.start()
            e2e.record_pid(g.pid())
            log(f"{g.name} on 127.0.0.1:{g.port}, upstream {weed.endpoint}")
        bindir = e2e.milvus_bin_dir()
        home = os.path.join(workdir, "milvus")
        sock_a, sock_b = os.path.join(workdir, "s3-a.sock"), os.path.join(workdir, "s3-b.sock")
        e2e.start_relay(("unix", sock_a), ["tcp", "127.0.0.1", a.port])
        e2e.start_relay(("unix", sock_b), ["tcp", "127.0.0.1", b.port], rec_b)

        def phase(mode, sock, port, g):
            e2e.render_milvus_config(home, g.access_key, g.secret_key, args.gc_interval, args.gc_drop_tolerance,
                                     args.gc_missing_tolerance, {"minio.port": port})
            cmd = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
                   sys.executable, e2e.__file__, "inner", "--mode", mode, "--home", home, "--bin", bindir,
                   "--sock", sock, "--result", os.path.join(workdir, f"result-{mode}.json"),
                   "--access-key", g.access_key, "--secret-key", g.secret_key, "--rows", str(args.rows),
                   "--searches", "20", "--gc-wait", str(args.gc_wait), "--s3-port", str(port),
                   "--state", state, "--stop-wait", "10" if mode == "migrate-a" else "60"]
            t = time.perf_counter()
            rc = e2e.run_inner(cmd, deadline)
            result["steps"].append((f"Milvus {mode} on {g.name}", round(time.perf_counter() - t, 2)))
            path = os.path.join(workdir, f"result-{mode}.json")
            r = json.load(open(path)) if os.path.exists(path) else {"failures": [f"{mode}: no result"]}
            fails.extend(r.get("failures", []))
            result["metrics"].update({f"{mode} {k}": v for k, v in r.get("metrics", {}).items()})
            return rc == 0 and r.get("ok")

        log("phase A: Milvus writes its collection through gateway A")
        if phase("migrate-a", sock_a, NS_S3_PORT, a):
            with open(state) as f:
                seen_by_milvus = sorted(tuple(x) for x in json.load(f)["objects"])
            on_weed = weed_objects(weed)
            kinds = {p: sum(1 for k, _ in on_weed if k.startswith(f"{ROOT_PATH}/{p}")) for p in PREFIXES}
            result["metrics"]["objects on SeaweedFS (direct)"] = kinds
            if on_weed != seen_by_milvus:
                fails.append(f"SeaweedFS holds {len(on_weed)} objects, the gateway listed {len(seen_by_milvus)}")
            for p in ("insert_log/", "index_files/"):
                if not kinds[p]:
                    fails.append(f"no {p} objects on SeaweedFS after phase A")
            e2e.forget_pid(a.pid())
            a.stop()  # from here on only SeaweedFS and the cold gateway B
            before = scrape(b.port)
            log("phase B: Milvus restarted on gateway B (cold); gateway A is stopped")
            if phase("migrate-b", sock_b, NS_S3_PORT + 1, b) and not fails:
                after = scrape(b.port)
                filled = after.get("bale_gateway_fill_bytes_total", 0) - before.get("bale_gateway_fill_bytes_total", 0)
                result["metrics"]["gateway B fill_bytes (cold load)"] = int(filled)
                result["metrics"]["gateway B hits"] = int(after.get("bale_gateway_hits_total", 0))
                result["metrics"]["gateway B upstream GET 2xx"] = int(
                    after.get('bale_gateway_upstream_requests_total{op="GET",outcome="2xx"}', 0))
                if filled <= 0:
                    fails.append("gateway B filled nothing from SeaweedFS during the cold load")
                ok = not fails
        traffic = rec_b.summary()
        result["s3"] = traffic
        if traffic["unexpected_count"]:
            ok = False
            for r in traffic["unexpected"][:5]:
                fails.append(f"gateway B answered {r['client']} {r['method']} {r['target']} ({r['op']}) "
                             f"with {r['status']}: {r.get('body', '')[:300]}")
    except e2e.Terminated as e:
        fails.append(f"interrupted by {e}")
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        fails.append(f"outer: {e!r}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for g in (a, b):
            try:
                g.stop()
            except Exception:  # noqa: BLE001
                pass
            e2e.forget_pid(g.pid())
        if weed.proc:
            e2e.forget_pid(weed.proc.pid)
        weed.stop()
    ok = ok and not fails
    e2e.report(result, b, ok, workdir, time.time() - t_start)
    if ok and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"kept {workdir}")
    return 0 if ok else 1


sys.exit(main())
PY
child=$!
set +e
wait "$child"
rc=$?
set -e
child=""
exit "$rc"
