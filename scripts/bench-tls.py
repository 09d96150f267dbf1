#!/usr/bin/env python3
"""What TLS costs on GETs: one bale serving plain HTTP and HTTPS (--tls-listen) from the same
objects, measured interleaved so that the machine's noise falls on both alike.

    scripts/bench-tls.py [--rounds 5] [--duration 5] [--conc 1,16] [--big-conc 4]

Makes a test CA and an ECDSA P-256 server certificate (openssl CLI), starts bale (`--cores 1`,
pinned to CPU 0), loads 5,000 x 4 KiB and 64 x 1 MiB objects, warms both listeners, then for
every round runs `bale-bench get` against plain and TLS back to back (the order alternates each
round): 4 KiB at each --conc, and 1 MiB at --big-conc. Clients are pinned to CPU 1 and keep
their connections (keep-alive: the handshake is paid once per client thread). Prints the median
over rounds of p50, p99, req/s and MiB/s, and TLS / plain; writes RESULTS.md, summary.json and
the exact commands to bench/results/tls-<time>-<commit>/. Needs target/release/bale and
bale-bench (BALE_BIN / BENCH_BIN override).
"""

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BALE = os.environ.get("BALE_BIN") or os.path.join(ROOT, "target/release/bale")
BENCH = os.environ.get("BENCH_BIN") or os.path.join(ROOT, "target/release/bale-bench")
AK, SK = "benchaccess", "benchsecret-tls"
KEYS = ("p50_us", "p99_us", "req_per_s")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(work):
    def ossl(*a):
        subprocess.run(["openssl", *a], cwd=work, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=bench CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    ossl("req", "-new", *ec, "-keyout", "key.pem", "-out", "srv.csr", "-subj", "/CN=localhost")
    with open(os.path.join(work, "srv.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "cert.pem", "-days", "1", "-extfile", "srv.ext")
    return [os.path.join(work, n) for n in ("ca.pem", "cert.pem", "key.pem")]


def start(work, cert, key):
    port, tport = free_port(), free_port()
    log = open(os.path.join(work, "bale.log"), "w")
    cmd = ["taskset", "-c", "0", BALE, "serve", "--listen", f"127.0.0.1:{port}", "--tls-listen",
           f"127.0.0.1:{tport}", "--tls-cert", cert, "--tls-key", key, "--data", os.path.join(work, "data"),
           "--cores", "1", "--access-key", AK, "--secret-key", SK]
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return p, {"plain": f"http://127.0.0.1:{port}", "tls": f"https://localhost:{tport}"}, cmd
        except Exception:
            time.sleep(0.05)
    p.kill()
    raise SystemExit(f"bale did not start: see {log.name}")


def bench(args, ca, commands):
    cmd = [BENCH, *args, "--ca-cert", ca, "--access-key", AK, "--secret-key", SK, "--json", "--pin-cores", "1"]
    commands.append(" ".join(cmd).replace(SK, "$SECRET"))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["reports"][0]


def main():
    o = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("--rounds", type=int, default=5)
    o.add_argument("--duration", type=int, default=5)
    o.add_argument("--conc", default="1,16")
    o.add_argument("--big-conc", type=int, default=4)
    a = o.parse_args()
    conc = [int(c) for c in a.conc.split(",")]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=9", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(ROOT, "bench/results", f"tls-{stamp}-{commit}")
    work = tempfile.mkdtemp(prefix="bale-tls-bench-")
    commands = []
    shapes = [("4k", c) for c in conc] + [("1m", a.big_conc)]
    res = {m: {f"{s}/c={c}": [] for s, c in shapes} for m in ("plain", "tls")}
    p = None
    try:
        ca, cert, key = make_cert(work)
        p, eps, serve_cmd = start(work, cert, key)
        commands.append(" ".join(serve_cmd).replace(SK, "$SECRET"))
        objs = {"4k": ["--prefix", "s4k/", "-n", "5000", "--size", "4k"],
                "1m": ["--prefix", "s1m/", "-n", "64", "--size", "1m"]}
        for s, o_args in objs.items():
            bench(["load", "--endpoint", eps["plain"], "--bucket", "tlsbench", *o_args, "-c", "8"], ca, commands)
        for m in ("plain", "tls"):
            bench(["get", "--endpoint", eps[m], "--bucket", "tlsbench", *objs["4k"], "-c", "16",
                   "--requests", "20000"], ca, commands)
        for r in range(a.rounds):
            order = ("plain", "tls") if r % 2 == 0 else ("tls", "plain")
            for s, c in shapes:
                for m in order:
                    rep = bench(["get", "--endpoint", eps[m], "--bucket", "tlsbench", *objs[s], "-c", str(c),
                                 "-d", f"{a.duration}s", "--seed", str(r + 1)], ca, commands)
                    res[m][f"{s}/c={c}"].append({k: rep[k] for k in KEYS})
                    print(f"round {r + 1} {s} c={c} {m}: p50 {rep['p50_us']:.1f} p99 {rep['p99_us']:.1f} "
                          f"{rep['req_per_s']:.0f} req/s", file=sys.stderr)
    finally:
        if p:
            p.terminate()
            p.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    summary = {"commit": commit, "started": stamp, "rounds": a.rounds, "duration_s": a.duration,
               "loadavg_end": open("/proc/loadavg").read().strip(), "runs": res}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out, "commands.txt"), "w") as f:
        f.write("\n".join(commands) + "\n")
    rows = ["| GET (warm, keep-alive) | plain p50 µs | TLS p50 µs | TLS ÷ plain | plain p99 µs | TLS p99 µs "
            "| TLS ÷ plain | plain req/s | TLS req/s | TLS ÷ plain | plain MiB/s | TLS MiB/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s, c in shapes:
        k = f"{s}/c={c}"
        md = {m: {q: statistics.median(x[q] for x in res[m][k]) for q in KEYS} for m in ("plain", "tls")}
        mib = (4 / 1024) if s == "4k" else 1.0
        pl, tl = md["plain"], md["tls"]
        rows.append(f"| {'4 KiB' if s == '4k' else '1 MiB'} c={c} | {pl['p50_us']:.1f} | {tl['p50_us']:.1f} | "
                    f"{tl['p50_us'] / pl['p50_us']:.2f}× | {pl['p99_us']:.0f} | {tl['p99_us']:.0f} | "
                    f"{tl['p99_us'] / pl['p99_us']:.2f}× | {pl['req_per_s']:.0f} | {tl['req_per_s']:.0f} | "
                    f"{tl['req_per_s'] / pl['req_per_s']:.2f}× | {pl['req_per_s'] * mib:.0f} | "
                    f"{tl['req_per_s'] * mib:.0f} |")
    table = "\n".join(rows)
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write(f"# TLS cost on GETs ({stamp}, commit {commit})\n\n"
                f"Command: `scripts/bench-tls.py --rounds {a.rounds} --duration {a.duration} --conc {a.conc} "
                f"--big-conc {a.big_conc}` (exact `bale-bench` lines in commands.txt). One bale, `--cores 1` "
                f"pinned to CPU 0, plain HTTP and HTTPS (rustls, ECDSA P-256, TLS 1.3) on two listeners over "
                f"the same objects; clients pinned to CPU 1, keep-alive. Medians over {a.rounds} interleaved "
                f"rounds of {a.duration} s (order alternating). The machine (2 vCPUs) was shared with other "
                f"engineers' builds: load average at the end {summary['loadavg_end']}.\n\n{table}\n")
    print(os.path.relpath(out, ROOT))
    print(table)


if __name__ == "__main__":
    main()
