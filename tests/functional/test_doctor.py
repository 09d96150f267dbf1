"""`bale doctor`: the report's lines and exit codes on this host, for good and bad data
directories, as root and as an unprivileged user (nobody)."""

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

import baleproc  # noqa: E402

LINE = re.compile(r"^(PASS|INFO|WARN|FAIL|SKIP)  ([^:]+): (.+)$")
STATUSES = ("PASS", "INFO", "WARN", "FAIL", "SKIP")


def doctor(*args, binary=None, pre=()):
    r = subprocess.run([*pre, binary or baleproc.bale_bin(), "doctor", *args],
                       capture_output=True, text=True, timeout=60)
    assert "panicked" not in r.stderr, r.stderr
    return r


def parse(out):
    """(header counts, [(status, check, detail, fix)]); every line is accounted for."""
    lines = out.splitlines()
    m = re.match(r"^bale doctor \S+: (\d+) FAIL, (\d+) WARN, (\d+) PASS, (\d+) INFO, (\d+) SKIP", lines[0])
    assert m, lines[0]
    counts = dict(zip(("FAIL", "WARN", "PASS", "INFO", "SKIP"), map(int, m.groups())))
    rows = []
    for ln in lines[1:]:
        if ln.startswith("      fix: "):
            assert rows, "a fix line before any check"
            rows[-1] = rows[-1][:3] + (ln[len("      fix: "):],)
            continue
        lm = LINE.match(ln)
        assert lm, f"unexpected report line: {ln!r}"
        rows.append((lm.group(1), lm.group(2), lm.group(3), None))
    for st in STATUSES:
        assert counts[st] == sum(1 for r in rows if r[0] == st), (st, out)
    return counts, rows


def check_exit(r, rows):
    has_fail = any(s == "FAIL" for s, *_ in rows)
    assert r.returncode == (1 if has_fail else 0), r.stdout + r.stderr


def row(rows, check):
    found = [x for x in rows if x[1] == check]
    assert len(found) == 1, (check, rows)
    return found[0]


def test_good_data_dir_passes_direct_io(tmp_path):
    d = tmp_path / "new" / "data"  # missing: created for the check, then removed
    r = doctor("--data", str(d))
    _, rows = parse(r.stdout)
    check_exit(r, rows)
    for name in ("kernel", "io_uring", "memlock", "open files", "clock sync", "THP", "somaxconn"):
        assert any(x[1] == name for x in rows), name
    assert row(rows, f"data dir {d}")[0] == "PASS"
    st, _, detail, _ = row(rows, f"O_DIRECT {d}")
    assert st == "PASS", detail
    assert re.search(r"smallest working O_DIRECT unit (512|4096) bytes", detail)
    assert row(rows, f"filesystem {d}")[0] in ("PASS", "WARN")
    assert re.match(r"\d+ MiB free of \d+ MiB", row(rows, f"free space {d}")[2])
    assert not any(s == "FAIL" and str(d) in c for s, c, *_ in rows)
    assert not (tmp_path / "new").exists(), "doctor left the directory it created behind"
    # Every WARN and FAIL says how to fix it.
    assert all(fix for s, _, _, fix in rows if s in ("WARN", "FAIL"))
    # One directory: no redundancy, said plainly.
    st, _, detail, _ = row(rows, "redundancy")
    assert st == "INFO" and detail.startswith("redundancy: none (one data directory)"), detail


def test_two_new_data_dirs_default_to_mirror(tmp_path):
    r = doctor("--data", str(tmp_path / "a"), "--data", str(tmp_path / "b"))
    _, rows = parse(r.stdout)
    st, _, detail, _ = row(rows, "redundancy")
    assert st == "PASS" and detail.startswith("redundancy: mirror (2 data directories"), detail


def test_a_set_made_without_redundancy_warns(tmp_path):
    import json
    for i, d in enumerate(("a", "b")):
        (tmp_path / d).mkdir()
        (tmp_path / d / "bale-layout.json").write_text(json.dumps(
            {"version": 1, "dir_index": i, "dir_count": 2, "shards_per_dir": 1}))
    r = doctor("--data", str(tmp_path / "a"), "--data", str(tmp_path / "b"))
    _, rows = parse(r.stdout)
    st, _, detail, fix = row(rows, "redundancy")
    assert st == "WARN" and "losing one disk loses the objects of its shards" in detail, detail
    assert fix


def test_existing_dir_is_left_as_found(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    r = doctor("--data", str(tmp_path))
    _, rows = parse(r.stdout)
    assert row(rows, f"data dir {tmp_path}")[2] == "exists"
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]


def test_uncreatable_data_dir_fails_with_exit_1(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("not a directory")
    bad = f / "data"
    r = doctor("--data", str(bad), "--data", str(tmp_path / "ok"))
    _, rows = parse(r.stdout)
    assert r.returncode == 1
    st, _, detail, fix = row(rows, f"data dir {bad}")
    assert st == "FAIL" and "cannot create it" in detail and fix
    # The good directory beside it is still checked.
    assert row(rows, f"O_DIRECT {tmp_path / 'ok'}")[0] == "PASS"


def test_no_data_dir_is_a_skip_not_a_failure():
    r = doctor()
    _, rows = parse(r.stdout)
    check_exit(r, rows)
    assert row(rows, "data dirs")[0] == "SKIP"


@pytest.fixture
def nobody_setup():
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run as nobody")
    # Somewhere nobody can reach: a copy of the binary and data directories under /tmp.
    root = tempfile.mkdtemp(prefix="bale-doctor-nobody-", dir="/tmp")
    os.chmod(root, 0o755)
    binary = os.path.join(root, "bale")
    shutil.copy(baleproc.bale_bin(), binary)
    os.chmod(binary, 0o755)
    writable = os.path.join(root, "writable")
    os.mkdir(writable)
    os.chmod(writable, 0o777)
    readonly = os.path.join(root, "readonly")
    os.mkdir(readonly)
    os.chmod(readonly, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    yield binary, writable, readonly
    shutil.rmtree(root, ignore_errors=True)


def test_unprivileged_run_says_what_it_could_not_read(nobody_setup):
    binary, writable, readonly = nobody_setup
    as_nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    r = doctor("--data", writable, "--data", readonly, binary=binary, pre=as_nobody)
    _, rows = parse(r.stdout)
    # A directory nobody may not write to: a FAIL that says so, exit 1, no crash.
    assert r.returncode == 1
    st, _, detail, fix = row(rows, f"O_DIRECT {readonly}")
    assert st == "FAIL" and "cannot create a file in it" in detail and "Permission denied" in detail
    assert row(rows, f"O_DIRECT {writable}")[0] == "PASS"
    # The same checks as root: whatever differs is a SKIP that says what it could not read.
    root_r = doctor("--data", writable, "--data", readonly, binary=binary)
    _, root_rows = parse(root_r.stdout)
    assert [x[1] for x in rows] == [x[1] for x in root_rows]
    for mine, roots in zip(rows, root_rows):
        if mine[0] != roots[0] and mine[1] != f"O_DIRECT {readonly}":
            assert mine[0] == "SKIP" and "could not read" in mine[2], (mine, roots)
    for s, _, detail, _ in rows:
        if s == "SKIP" and "could not read" in detail and "denied" in detail:
            assert "run as root" in detail
