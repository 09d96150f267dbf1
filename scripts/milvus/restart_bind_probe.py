#!/usr/bin/env python3
"""Reproducer for FINDINGS.md item 1: right after `kill -9` of bale (and waitpid), its
SO_REUSEPORT listeners linger for a few milliseconds (the kernel tears the dead process's
io_uring rings down asynchronously), so a bale started at once on the same address exits with
"address already in use".

    BALE_BIN=target/release/bale python3 scripts/milvus/restart_bind_probe.py [runs]

Prints, per run, how many listeners `ss` still shows right after waitpid, how long until a
plain SO_REUSEADDR bind succeeds, and whether an immediate `bale serve` on the port started.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.environ.get("BALE_BIN") or os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "bale")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port, data):
    return subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data", data,
                             "--access-key", "probeaccess", "--secret-key", "probesecret"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def healthy(port, proc, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def run_once():
    port, data = free_port(), tempfile.mkdtemp(prefix="bale-probe-")
    p = serve(port, data)
    assert healthy(port, p), "bale did not start"
    p.kill()
    p.wait()
    ss = subprocess.run(["ss", "-tln", f"sport = :{port}"], capture_output=True, text=True).stdout
    lingering = max(0, len(ss.strip().splitlines()) - 1)
    p2 = serve(port, data)  # what a supervisor restarting at once does
    started = healthy(port, p2)
    err = "" if started else p2.stderr.read().decode(errors="replace").strip().splitlines()[-1:]
    if p2.poll() is None:
        p2.kill()
        p2.wait()
    return lingering, started, err


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    failed = 0
    for i in range(runs):
        lingering, started, err = run_once()
        failed += not started
        print(f"run {i + 1}: listeners left after waitpid: {lingering}; immediate restart "
              f"{'started' if started else 'FAILED: ' + ' '.join(err)}")
    print(f"{failed}/{runs} immediate restarts failed")


if __name__ == "__main__":
    main()
