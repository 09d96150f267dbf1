#!/usr/bin/env python3
"""RSS per open, unauthenticated connection: N clients each send half a request head and wait.

    python3 scripts/probe-conn-memory.py [--bin target/release/bale] [--conns 1000]

Starts bale on a free 127.0.0.1 port (its own data directory, removed after), opens --conns
connections that each send `GET /bkt/x HTTP/1.1\\r\\nHost: x\\r\\n` and nothing more, and prints
the server's RSS before and after, per connection. A slowloris client holds exactly this until
`--header-timeout-s`; the number bounds what `--max-connections-per-core` such clients can pin.
"""
import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def hold(port, conns, pid):
    writers = []
    for _ in range(conns):
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /bkt/x HTTP/1.1\r\nHost: x\r\n")
        writers.append(w)
    await asyncio.sleep(2)
    after = rss_kib(pid)
    for w in writers:
        w.close()
    return after


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/bale"))
    ap.add_argument("--conns", type=int, default=1000)
    a = ap.parse_args()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    work = tempfile.mkdtemp(prefix="bale-connmem.")
    srv = subprocess.Popen(
        [a.bin, "serve", "--listen", f"127.0.0.1:{port}", "--data", f"{work}/data", "--cores", "2",
         "--access-key", "connmem", "--secret-key", "connmemsecret"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1)
        before = rss_kib(srv.pid)
        after = asyncio.run(hold(port, a.conns, srv.pid))
        per = (after - before) * 1024 / a.conns
        print(f"{a.conns} partial heads: rss {before} -> {after} KiB, {per:.0f} B per connection")
    finally:
        srv.terminate()
        srv.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
