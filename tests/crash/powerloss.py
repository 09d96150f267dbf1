#!/usr/bin/env python3
"""Power-loss shapes and corruption (issue 5), with bale stopped between the steps.

1. Torn tails: objects A are written and bale is stopped cleanly; objects B are written and bale
   is killed with SIGKILL. Then, in every file of the data dir that holds B's bytes (volume and
   journal: found by searching for B's unique markers and key names, so the test does not
   depend on file names), the part from somewhere after the first B byte to the end is
   truncated or zeroed. bale must start and serve; every A object reads back byte-identical;
   a B object is whole, 404 or 500 -- never other bytes; new writes work and survive a restart.
2. Bit rot: one byte flipped in the middle of a stored object's data (found by its marker):
   GET answers 500 InternalError, never the wrong bytes (a large object whose 200 header is
   already out may instead cut the connection); the other objects are untouched. A flip in a
   record's header region must not stop bale from starting.

Usage: powerloss.py [--rounds N] [--seed X]; exits 1 on any violation.
"""

import argparse
import http.client
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from torture import Conn, baleproc, fresh_port  # noqa: E402

KiB = 1024
MiB = 1024 * 1024
BUCKET = "powerloss"


def obj_bytes(tag, i, size):
    marker = f"@@{tag}-{i:04d}-{os.getpid()}@@".encode()
    return (marker + random.Random(f"{tag}/{i}").randbytes(size))[:size], marker


def get(server, key, rng=None):
    """(status, body, aborted): aborted when the body was cut short or the connection reset."""
    c = Conn(server, timeout=60)
    try:
        s = c.server
        import sigv4

        signer = sigv4.Signer(s.access_key, s.secret_key, s.region)
        hdrs = {"Range": rng} if rng else {}
        target, h, _ = signer.sign_headers("GET", f"127.0.0.1:{s.port}", f"/{BUCKET}/{key}", headers=hdrs)
        conn = c._conn()
        conn.request("GET", target, headers=h)
        r = conn.getresponse()
        try:
            body = r.read()
            return r.status, body, False
        except (http.client.IncompleteRead, ConnectionError) as e:
            partial = getattr(e, "partial", b"")
            return r.status, partial, True
    except (ConnectionError, http.client.RemoteDisconnected):
        return None, b"", True
    finally:
        c.close()


def put(server, key, data):
    c = Conn(server)
    try:
        status, _, body = c.request("PUT", f"/{BUCKET}/{key}", data, "unsigned")
    finally:
        c.close()
    if status != 200:
        raise AssertionError(f"PUT {key}: {status} {body[:300]!r}")


def data_files(d):
    out = []
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return sorted(out)


def find_first(path, needles):
    """(offset of the first needle or None, end of the non-zero content, file size): volumes may
    be preallocated, so damage is aimed at [first, used end], where the records are."""
    with open(path, "rb") as f:
        blob = f.read()
    hits = [blob.find(n) for n in needles]
    hits = [h for h in hits if h >= 0]
    return (min(hits) if hits else None), len(blob.rstrip(b"\0")), len(blob)


class Run:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.violations = []
        self.notes = []

    def fail(self, msg):
        self.violations.append(msg)
        print("  VIOLATION: " + msg, flush=True)

    def new_bale(self):
        tmp = tempfile.mkdtemp(prefix="bale-powerloss-")
        b = baleproc.Bale(data_dirs=[os.path.join(tmp, "data")], keep_data=True)
        b._tmp = tmp
        return b

    # ------------------------------------------------------------------ torn tails
    def torn_tail(self, mode, round_no):
        b = self.new_bale()
        try:
            fresh_port(b)
            b.start()
            c = Conn(b)
            assert c.request("PUT", f"/{BUCKET}")[0] == 200
            c.close()
            sizes_a = [0, 1, 100, 4095, 4096, 5000, 70 * KiB, 300 * KiB, MiB + 3, 3 * MiB]
            A = {}
            for i in range(30):
                data, _ = obj_bytes("A", i, sizes_a[i % len(sizes_a)])
                put(b, f"plA-{i:03d}", data)
                A[f"plA-{i:03d}"] = data
            if b.stop() != 0:
                self.fail(f"{mode}#{round_no}: SIGTERM exit code {b.proc.returncode}")
            fresh_port(b)
            b.start()
            B, needles = {}, []
            for i in range(20):
                data, marker = obj_bytes("B", i, [10, 3000, 9000, 200 * KiB, 2 * MiB][i % 5])
                key = f"plB-{i:03d}"
                put(b, key, data)
                B[key] = data
                needles += [marker[:12], key.encode()]
            b.kill9()
            damaged = []
            for path in data_files(b.data_dirs[0]):
                first, used, size = find_first(path, needles)
                if first is None:
                    continue
                cut = self.rng.randint(first, max(first, used))
                name = os.path.relpath(path, b.data_dirs[0])
                with open(path, "r+b") as f:
                    if mode == "truncate":
                        f.truncate(cut)
                        damaged.append(f"{name}: truncated {size} -> {cut} (data ended at {used})")
                    else:
                        n = min(size - cut, self.rng.choice([512, 4096, 65536, used - cut + 1]))
                        f.seek(cut)
                        f.write(b"\0" * n)
                        damaged.append(f"{name}: zeroed {n} B at {cut} (data ended at {used})")
            if not damaged:
                self.fail(f"{mode}#{round_no}: B's bytes were found in no file of the data dir")
            print(f"  {mode}#{round_no}: " + "; ".join(damaged), flush=True)
            try:
                fresh_port(b)
                b.start(timeout_s=60)
            except Exception as e:  # noqa: BLE001
                self.fail(f"{mode}#{round_no}: bale does not start after {damaged}: {e}")
                return
            self.check_after_damage(b, A, B, f"{mode}#{round_no}")
            # new writes must work and survive
            C = {}
            for i in range(10):
                data, _ = obj_bytes("C", i, [7, 5000, 100 * KiB, MiB][i % 4])
                try:
                    put(b, f"plC-{i:03d}", data)
                    C[f"plC-{i:03d}"] = data
                except Exception as e:  # noqa: BLE001
                    self.fail(f"{mode}#{round_no}: PUT after recovery failed: {e}")
                    break
            b.kill9()
            fresh_port(b)
            b.start(timeout_s=60)
            self.check_after_damage(b, {**A, **C}, B, f"{mode}#{round_no} after new writes + kill")
            if b.stop() != 0:
                self.fail(f"{mode}#{round_no}: SIGTERM exit code {b.proc.returncode}")
        finally:
            self.cleanup(b)

    def check_after_damage(self, b, must, maybe, label):
        for key, data in must.items():
            st, body, aborted = get(b, key)
            if st != 200 or aborted or body != data:
                self.fail(f"{label}: {key} ({len(data)} B, acknowledged before the damage) -> "
                          f"status {st}, {len(body)} B, aborted={aborted}, equal={body == data}")
        lost = 0
        for key, data in maybe.items():
            st, body, aborted = get(b, key)
            if st == 200 and not aborted and body == data:
                continue
            if st == 404 or st == 500 or (st == 200 and aborted):
                lost += 1
                continue
            self.fail(f"{label}: {key} -> status {st}, {len(body)} B (expected {len(data)}), "
                      f"aborted={aborted}: neither the object nor a clean error")
        self.notes.append(f"{label}: {lost}/{len(maybe)} damaged objects gone or refused, rest intact")

    # ------------------------------------------------------------------ bit rot
    def bit_rot(self):
        b = self.new_bale()
        try:
            fresh_port(b)
            b.start()
            c = Conn(b)
            assert c.request("PUT", f"/{BUCKET}")[0] == 200
            c.close()
            objs, markers = {}, {}
            for name, size in [("small", 100 * KiB), ("tiny", 3000), ("big", 3 * MiB), ("head", 50 * KiB),
                               ("n1", 5000), ("n2", 1 * MiB), ("n3", 0)]:
                data, marker = obj_bytes(name, 0, size)
                put(b, name, data)
                objs[name], markers[name] = data, marker
            if b.stop() != 0:
                self.fail(f"bitrot: SIGTERM exit code {b.proc.returncode}")
            where = {}
            for path in data_files(b.data_dirs[0]):
                with open(path, "rb") as f:
                    blob = f.read()
                for name in ("small", "tiny", "big", "head"):
                    i = blob.find(markers[name])
                    if i >= 0 and name not in where:
                        where[name] = (path, i)
            for name, off_in_obj in [("small", 50_000), ("tiny", 1500), ("big", 3 * MiB // 2)]:
                if name not in where:
                    self.fail(f"bitrot: could not find {name}'s bytes in the data dir")
                    continue
                path, off = where[name]
                with open(path, "r+b") as f:
                    f.seek(off + off_in_obj)
                    byte = f.read(1)
                    f.seek(off + off_in_obj)
                    f.write(bytes([byte[0] ^ 0x5A]))
            if "head" in where:
                path, off = where["head"]
                # inside the record, before the data: header / name region
                with open(path, "r+b") as f:
                    pos = max(0, off - len(BUCKET) - len("head") - 20)
                    f.seek(pos)
                    byte = f.read(1)
                    f.seek(pos)
                    f.write(bytes([byte[0] ^ 0xFF]))
            try:
                fresh_port(b)
                b.start(timeout_s=60)
            except Exception as e:  # noqa: BLE001
                self.fail(f"bitrot: bale does not start with flipped bytes: {e}")
                return
            for name in ("small", "tiny"):
                st, body, aborted = get(b, name)
                if st != 500:
                    self.fail(f"bitrot: GET {name} with a flipped byte -> status {st}, {len(body)} B, "
                              f"equal={body == objs[name]} (expected 500 InternalError)")
                elif b"<Code>InternalError</Code>" not in body:
                    self.fail(f"bitrot: GET {name} -> 500 without <Code>InternalError</Code>: {body[:200]!r}")
            st, body, aborted = get(b, "small", "bytes=49000-51000")
            if not (st == 500 or (st == 206 and aborted)):
                self.fail(f"bitrot: ranged GET over the flipped byte -> {st}, {len(body)} B, aborted={aborted}")
            st, body, aborted = get(b, "small", "bytes=0-99")
            if st == 206 and not aborted and body != objs["small"][:100]:
                self.fail("bitrot: ranged GET far from the flip returned wrong bytes")
            st, body, aborted = get(b, "big")
            if st == 200 and not aborted:
                self.fail(f"bitrot: GET big (flipped byte in the middle) -> complete 200 of {len(body)} B, "
                          f"equal={body == objs['big']}: wrong bytes delivered as good")
            elif st not in (500, 200, None):
                self.fail(f"bitrot: GET big -> {st}")
            st, body, aborted = get(b, "big", f"bytes={3 * MiB // 2 - 10}-{3 * MiB // 2 + 10}")
            if not (st == 500 or aborted):
                self.fail(f"bitrot: ranged GET of big over the flip -> {st}, {body[:40]!r}")
            st, body, aborted = get(b, "head")
            if st == 200 and not aborted and body != objs["head"]:
                self.fail("bitrot: header-flipped object returned wrong bytes")
            if st not in (200, 404, 500):
                self.fail(f"bitrot: header-flipped object -> {st}")
            for name in ("n1", "n2", "n3"):
                st, body, aborted = get(b, name)
                if st != 200 or body != objs[name]:
                    self.fail(f"bitrot: untouched neighbour {name} -> {st}, equal={body == objs[name]}")
            put(b, "after", b"still writable")
            if get(b, "after")[1] != b"still writable":
                self.fail("bitrot: PUT/GET after corruption failed")
            if b.stop() != 0:
                self.fail(f"bitrot: SIGTERM exit code {b.proc.returncode}")
            self.notes.append("bitrot: flipped bytes in 3 objects' data and 1 header checked")
        finally:
            self.cleanup(b)

    # ------------------------------------------------------------------ metadata rot
    def snapshot_rot(self):
        """A flipped byte in the middle of the index snapshot (io/FORMAT.md: `index.snap`).
        Acceptable: bale refuses to start with a clear message, or it starts and every
        acknowledged object is still there (rebuilt from the journal/volumes). Not acceptable:
        it starts and objects are silently missing or wrong."""
        b = self.new_bale()
        try:
            fresh_port(b)
            b.start()
            c = Conn(b)
            assert c.request("PUT", f"/{BUCKET}")[0] == 200
            c.close()
            objs = {}
            for i in range(40):
                data, _ = obj_bytes("S", i, [10, 5000, 70 * KiB, 300 * KiB][i % 4])
                put(b, f"snap-{i:03d}", data)
                objs[f"snap-{i:03d}"] = data
            if b.stop() != 0:
                self.fail(f"snapshot rot: SIGTERM exit code {b.proc.returncode}")
            snaps = [p for p in data_files(b.data_dirs[0]) if p.endswith(".snap")]
            if not snaps:
                self.notes.append("snapshot rot: no *.snap file found (skipped)")
                return
            for path in snaps:
                size = os.path.getsize(path)
                if size < 64:
                    continue
                with open(path, "r+b") as f:
                    f.seek(size // 2)
                    x = f.read(1)
                    f.seek(size // 2)
                    f.write(bytes([x[0] ^ 0x5A]))
            fresh_port(b)
            try:
                b.start(timeout_s=60)
            except RuntimeError as e:
                msg = str(e)
                self.notes.append(f"snapshot rot: bale refused to start: {msg[-200:]!r}")
                return
            missing = []
            for key, data in objs.items():
                st, body, aborted = get(b, key)
                if st == 200 and not aborted and body == data:
                    continue
                if st == 200 and not aborted:
                    self.fail(f"snapshot rot: {key} returned wrong bytes")
                missing.append(f"{key}:{st}")
            if missing:
                self.fail(f"snapshot rot: bale started after a flipped byte in {len(snaps)} index snapshot(s) "
                          f"and {len(missing)}/{len(objs)} acknowledged objects are gone ({missing[:4]}...): "
                          f"silent loss; expected a rebuild from the volumes or a refusal to start")
            else:
                self.notes.append("snapshot rot: all objects recovered")
            b.stop()
        finally:
            self.cleanup(b)

    def journal_rot(self):
        """A flipped byte in the middle of the journal (bale killed, so the journal holds the
        index entries of the last writes). A torn tail can only be at the end; a bad frame
        followed by good ones is rot. Acceptable: refuse to start with a clear message, or start
        and lose at most the object(s) of the damaged frame. Not acceptable: dropping every
        acknowledged write after it, or wrong bytes."""
        b = self.new_bale()
        b.cores = 1
        try:
            fresh_port(b)
            b.start()
            c = Conn(b)
            assert c.request("PUT", f"/{BUCKET}")[0] == 200
            c.close()
            objs = {}
            for i in range(40):
                data, _ = obj_bytes("J", i, [10, 5000, 70 * KiB][i % 3])
                put(b, f"jr-{i:03d}", data)
                objs[f"jr-{i:03d}"] = data
            b.kill9()
            journals = [p for p in data_files(b.data_dirs[0]) if os.path.basename(p).startswith("journal")]
            flipped = 0
            for path in journals:
                size = os.path.getsize(path)
                if size < 256:
                    continue
                with open(path, "r+b") as f:
                    f.seek(size // 2)
                    x = f.read(1)
                    f.seek(size // 2)
                    f.write(bytes([x[0] ^ 0x5A]))
                flipped += 1
            if not flipped:
                self.notes.append("journal rot: no journal with entries found (skipped)")
                return
            fresh_port(b)
            try:
                b.start(timeout_s=60)
            except RuntimeError as e:
                self.notes.append(f"journal rot: bale refused to start: {str(e)[-200:]!r}")
                return
            missing = []
            for key, data in objs.items():
                st, body, aborted = get(b, key)
                if st == 200 and not aborted and body == data:
                    continue
                if st == 200 and not aborted:
                    self.fail(f"journal rot: {key} returned wrong bytes")
                missing.append(f"{key}:{st}")
            if len(missing) > 2:
                self.fail(f"journal rot: one flipped byte mid-journal lost {len(missing)}/{len(objs)} acknowledged "
                          f"objects ({missing[:3]}...{missing[-1:]}): a bad frame followed by good frames was "
                          f"treated as a torn tail")
            else:
                self.notes.append(f"journal rot: {len(missing)} object(s) lost with the damaged frame, rest intact")
            b.stop()
        finally:
            self.cleanup(b)

    def cleanup(self, b):
        log = b.log_tail(4000)
        b.kill9()
        if "panicked" in log:
            self.fail("bale log shows a panic:\n" + log)
        shutil.rmtree(b._tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds of each torn-tail shape")
    p.add_argument("--seed", default=str(int(time.time())))
    a = p.parse_args()
    print(f"powerloss: seed {a.seed}", flush=True)
    r = Run(a.seed)
    t0 = time.time()
    for i in range(a.rounds):
        for mode in ("truncate", "zero"):
            try:
                r.torn_tail(mode, i)
            except Exception as e:  # noqa: BLE001
                r.fail(f"{mode}#{i}: {e!r}")
    try:
        r.bit_rot()
    except Exception as e:  # noqa: BLE001
        r.fail(f"bitrot: {e!r}")
    try:
        r.snapshot_rot()
    except Exception as e:  # noqa: BLE001
        r.fail(f"snapshot rot: {e!r}")
    try:
        r.journal_rot()
    except Exception as e:  # noqa: BLE001
        r.fail(f"journal rot: {e!r}")
    for n in r.notes:
        print("  " + n)
    print(f"powerloss: {2 * a.rounds} torn-tail rounds + bit rot + snapshot rot + journal rot in {time.time() - t0:.0f}s, "
          f"{len(r.violations)} violations", flush=True)
    sys.exit(1 if r.violations else 0)


if __name__ == "__main__":
    main()
