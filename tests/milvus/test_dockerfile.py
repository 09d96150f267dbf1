"""Static checks of the Dockerfile and .dockerignore (no Docker engine here to build it).

Parses the instructions, checks the stages, the non-root user, HEALTHCHECK, volume and listen
address; applies .dockerignore to the work tree and checks that what the build needs is in
the context, and (when cargo is here) that `cargo metadata --locked` resolves in that context
just as `cargo build --locked` in the image will.
"""

import os
import re
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = os.path.join(ROOT, "Dockerfile")


def instructions():
    """[(INSTRUCTION, args)] with continuations joined and comments dropped."""
    out, cur = [], ""
    with open(DOCKERFILE, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not cur and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if cur and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            cur += line
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    assert not cur, "dangling continuation"
    return out


KNOWN = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
         "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def stages():
    args, st = {}, []
    for ins, rest in instructions():
        if ins == "ARG" and not st:
            k, _, v = rest.partition("=")
            args[k] = v
        elif ins == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            name = rest.split()[2] if len(rest.split()) >= 3 and rest.split()[1].upper() == "AS" else None
            st.append({"image": image, "name": name, "ins": []})
        else:
            st[-1]["ins"].append((ins, rest))
    return st


def test_syntax():
    ins = instructions()
    assert ins, "empty Dockerfile"
    for i, _ in ins:
        assert i in KNOWN, f"unknown instruction {i}"


def test_multi_stage_build_then_slim_runtime():
    st = stages()
    assert len(st) >= 2
    build, run = st[0], st[-1]
    assert build["image"].startswith("rust:1.95"), build["image"]
    assert build["name"] == "build"
    runs = " ".join(r for i, r in build["ins"] if i == "RUN")
    assert re.search(r"cargo build --release\b.*-p bale", runs), runs
    assert "--locked" in runs
    assert run["image"].startswith("debian:") and "slim" in run["image"], run["image"]
    # same Debian release on both sides, so glibc matches
    rel = lambda img: re.search(r"(bookworm|trixie|bullseye)", img).group(1)  # noqa: E731
    assert rel(build["image"]) == rel(run["image"])
    copies = [r for i, r in run["ins"] if i == "COPY"]
    assert any(c.startswith("--from=build") and "bale" in c for c in copies), copies
    assert not any(i == "RUN" and "cargo" in r for i, r in run["ins"])


def test_non_root_user():
    run = stages()[-1]["ins"]
    users = [r for i, r in run if i == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    created = " ".join(r for i, r in run if i == "RUN")
    assert re.search(rf"useradd\b.*\b{user}\b", created), "USER is not created in the image"
    # nothing runs as root after USER
    after = run[[i for i, _ in run].index("USER"):]
    assert not any(i == "RUN" for i, _ in after)


def test_healthcheck_volume_listen():
    run = stages()[-1]["ins"]
    env = " ".join(r for i, r in run if i == "ENV")
    m = re.search(r"BALE_LISTEN=([0-9.]+):(\d+)", env)
    assert m and m.group(1) == "0.0.0.0", env
    port = m.group(2)
    assert re.search(r"BALE_DATA=/data\b", env)
    hc = [r for i, r in run if i == "HEALTHCHECK"]
    assert hc and f"127.0.0.1:{port}/minio/health/live" in hc[0], hc
    assert "curl" in " ".join(r for i, r in run if i == "RUN"), "healthcheck needs curl installed"
    vols = " ".join(r for i, r in run if i == "VOLUME")
    assert "/data" in vols
    assert any(i == "EXPOSE" and port in r for i, r in run)
    ep = [r for i, r in run if i == "ENTRYPOINT"]
    assert ep and "bale" in ep[-1]
    cmd = [r for i, r in run if i == "CMD"]
    assert cmd and "serve" in cmd[-1]


def test_seccomp_note():
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = f.read()
    for s in ("seccomp=unconfined", "io_uring_setup", "io_uring_enter", "io_uring_register"):
        assert s in text, f"Dockerfile should say {s} (io_uring under Docker's seccomp profile)"


# ------------------------------------------------------------------ .dockerignore

def ignore_patterns():
    pats = []
    with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            p = line.lstrip("!").strip("/")
            rx = ""
            i = 0
            while i < len(p):
                if p.startswith("**/", i):
                    rx += "(?:.*/)?"
                    i += 3
                elif p.startswith("**", i):
                    rx += ".*"
                    i += 2
                elif p[i] == "*":
                    rx += "[^/]*"
                    i += 1
                elif p[i] == "?":
                    rx += "[^/]"
                    i += 1
                else:
                    rx += re.escape(p[i])
                    i += 1
            pats.append((neg, re.compile(rx + "$")))
    return pats


def ignored(rel, pats):
    """Docker's rule: the last matching pattern wins; a path is out if it or a parent is out."""
    parts = rel.split("/")
    for n in range(1, len(parts) + 1):
        sub = "/".join(parts[:n])
        out = False
        for neg, rx in pats:
            if rx.match(sub):
                out = not neg
        if out:
            return True
    return False


def workspace_members():
    with open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"members\s*=\s*\[([^\]]*)\]", text)
    return [x.strip().strip('"') for x in m.group(1).split(",") if x.strip()]


def tracked_files():
    r = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    return r.stdout.split()


def test_dockerignore_keeps_what_the_build_needs():
    pats = ignore_patterns()
    for rel in ("Cargo.toml", "Cargo.lock", "src/main.rs"):
        assert not ignored(rel, pats), f".dockerignore drops {rel}"
    for m in workspace_members():
        toml = "Cargo.toml" if m == "." else f"{m}/Cargo.toml"
        assert not ignored(toml, pats), f".dockerignore drops workspace member {m}"
        if m != ".":
            assert not ignored(f"{m}/src/lib.rs", pats) and not ignored(f"{m}/src/main.rs", pats)
    for rel in ("target/release/bale", ".git/HEAD", "tests/.venv-milvus/bin/python", "data/x"):
        assert ignored(rel, pats), f".dockerignore should drop {rel}"


def test_context_resolves_locked():
    """Copy the tracked files .dockerignore lets through and resolve the workspace there with
    --locked, as the image build does (needs cargo and its registry cache; skipped without)."""
    cargo = shutil.which("cargo")
    if not cargo:
        pytest.skip("no cargo")
    pats = ignore_patterns()
    files = [f for f in tracked_files() if not ignored(f, pats)]
    assert "Cargo.lock" in files
    with tempfile.TemporaryDirectory(prefix="bale-docker-ctx-") as ctx:
        for f in files:
            src = os.path.join(ROOT, f)
            if not os.path.isfile(src):
                continue
            dst = os.path.join(ctx, f)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)
        cmd = [cargo, "metadata", "--locked", "--format-version", "1",
               "--filter-platform", "x86_64-unknown-linux-gnu"]
        r = subprocess.run(cmd + ["--offline"], cwd=ctx, capture_output=True, text=True, timeout=300)
        if r.returncode != 0 and "--offline" in r.stderr:  # registry cache incomplete: go online
            r = subprocess.run(cmd, cwd=ctx, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert '"name":"bale"' in r.stdout.replace(" ", "")
