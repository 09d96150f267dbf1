"""Static checks of scripts/milvus/docker-compose.yml (no Docker engine here to run it).

The file is validated against the Compose Specification's JSON schema (tests/milvus/
compose-spec.json: schema/compose-spec.json of the compose-spec/compose-spec repository at
commit 170098b, Apache-2.0, what `docker compose config` checks against). What bale reads is
taken from its source (src/config.rs, src/http.rs) and, when the binary is
built, from `bale serve --help`; what Milvus reads is taken from the milvus package's own
config template. The same file is also run for real, minus Docker, by
`scripts/milvus-e2e.sh --compose scripts/milvus/docker-compose.yml` (tests/suites/50-milvus.sh).
"""

import os
import re
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPOSE = os.path.join(ROOT, "scripts", "milvus", "docker-compose.yml")
sys.path.insert(0, os.path.join(ROOT, "scripts", "milvus"))
import e2e  # noqa: E402  (interpolate, compose_env)


@pytest.fixture(scope="module")
def compose():
    with open(COMPOSE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def bale_reads():
    """Environment variables and flags `bale serve` reads, from src/config.rs."""
    with open(os.path.join(ROOT, "src", "config.rs"), encoding="utf-8") as f:
        src = f.read()
    env = set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', src))
    env |= set(re.findall(r'std::env::var\("([A-Z0-9_]+)"\)', src))
    flags = set()
    for m in re.finditer(r"#\[arg\(([^\]]*)\)\]\s*pub\s+(\w+)\s*:", src):
        attrs, field = m.group(1), m.group(2)
        if "long" not in attrs:
            continue
        named = re.search(r'long\s*=\s*"([a-z0-9-]+)"', attrs)
        flags.add("--" + (named.group(1) if named else field.replace("_", "-")))
    return env, flags


def health_paths():
    with open(os.path.join(ROOT, "src", "http.rs"), encoding="utf-8") as f:
        src = f.read()
    m = re.search(r"fn is_health\(.*?\{(.*?)\n\}", src, re.S)
    assert m, "is_health() not found in src/http.rs"
    return set(re.findall(r'"(/[^"]*)"', m.group(1)))


def milvus_config_keys():
    """Every dotted key of the milvus package's config template, in Milvus's env-source form
    (lowercased, '_', '.', '/' dropped): an environment variable works iff it formats to one."""
    milvus = pytest.importorskip("milvus")
    tpl = os.path.join(os.path.dirname(milvus.__file__), "data", "config.yaml.template")
    with open(tpl, encoding="utf-8") as f:
        text = re.sub(r"\{\{(.*?)\}\}", "x", f.read())
    keys = set()

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            keys.add(prefix)

    walk(yaml.safe_load(text), "")
    return {fmt(k): k for k in keys}


def fmt(key):
    return re.sub(r"[_./]", "", key.lower())


def test_compose_schema(compose):
    jsonschema = pytest.importorskip("jsonschema")
    import json
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "compose-spec.json")) as f:
        schema = json.load(f)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:10])


def test_services(compose):
    services = compose["services"]
    assert set(services) >= {"etcd", "bale", "standalone"}
    assert "minio" not in services, "bale takes MinIO's place"
    assert "minio" in services["bale"]["networks"]["default"]["aliases"], \
        "bale should answer to `minio` too, for milvus.yaml files that name it"
    assert services["standalone"]["image"].startswith("milvusdb/milvus:")


def test_bale_environment_is_what_bale_reads(compose):
    env_read, _ = bale_reads()
    assert {"BALE_LISTEN", "BALE_DATA", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} <= env_read, env_read
    env = compose["services"]["bale"]["environment"]
    unknown = set(env) - env_read
    assert not unknown, f"bale does not read {unknown} (it reads {sorted(env_read)})"
    assert {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} <= set(env)


def test_bale_command_and_flags(compose):
    _, flags = bale_reads()
    assert {"--listen", "--data"} <= flags, flags
    cmd = compose["services"]["bale"].get("command", ["serve"])
    assert cmd[0] == "serve"
    for a in cmd[1:]:
        if a.startswith("--"):
            assert a.split("=")[0] in flags, f"bale has no flag {a}"


def test_listen_port_matches_ports_healthcheck_and_milvus(compose):
    bale = compose["services"]["bale"]
    host, _, port = bale["environment"]["BALE_LISTEN"].rpartition(":")
    assert host == "0.0.0.0", "inside a container bale must listen on all interfaces"
    published = [str(p).split(":")[-1] for p in bale["ports"]]
    assert port in published, f"BALE_LISTEN port {port} not in ports {bale['ports']}"
    test = " ".join(bale["healthcheck"]["test"])
    assert f":{port}/minio/health/live" in test, test
    assert "/minio/health/live" in health_paths()
    addr = compose["services"]["standalone"]["environment"]["MINIO_ADDRESS"]
    mhost, _, mport = addr.rpartition(":")
    assert mhost in ["bale"] + bale["networks"]["default"]["aliases"], addr
    assert mport == port, f"Milvus dials {addr}, bale listens on {port}"


def test_a_volume_per_data_directory(compose):
    bale = compose["services"]["bale"]
    dirs = bale["environment"]["BALE_DATA"].split(",")
    mounts = {}
    for v in bale["volumes"]:
        src, dst = e2e.interpolate(v, {}).split(":")[:2]
        mounts[dst] = src
    assert set(dirs) <= set(mounts), f"data dirs {dirs} without a volume (volumes: {mounts})"
    assert len({mounts[d] for d in dirs}) == len(dirs), "two data directories share a volume"
    assert len(dirs) == len(set(dirs))


def test_keys_agree(compose):
    for env in ({}, {"MINIO_ROOT_USER": "someuser", "MINIO_ROOT_PASSWORD": "some-secret-key"}):
        b = e2e.compose_env(compose, "bale", env)
        m = e2e.compose_env(compose, "standalone", env)
        assert m["MINIO_ACCESS_KEY_ID"] == b["MINIO_ROOT_USER"]
        assert m["MINIO_SECRET_ACCESS_KEY"] == b["MINIO_ROOT_PASSWORD"]
        assert len(b["MINIO_ROOT_PASSWORD"]) >= 8, "bale wants a secret key of 8+ characters"
    assert e2e.compose_env(compose, "bale", {"MINIO_ROOT_USER": "u1"})["MINIO_ROOT_USER"] == "u1"


def test_milvus_variables_are_milvus_settings(compose):
    keys = milvus_config_keys()
    env = compose["services"]["standalone"]["environment"]
    for name in env:
        assert fmt(name) in keys, f"Milvus has no setting that {name} maps to"
    assert keys[fmt("MINIO_ADDRESS")] == "minio.address"
    assert keys[fmt("MINIO_ACCESS_KEY_ID")] == "minio.accessKeyID"
    assert keys[fmt("MINIO_SECRET_ACCESS_KEY")] == "minio.secretAccessKey"
    assert keys[fmt("ETCD_ENDPOINTS")] == "etcd.endpoints"
    assert env["ETCD_ENDPOINTS"].split(":")[0] in compose["services"]


def test_healthchecks_and_order(compose):
    s = compose["services"]
    for name in ("etcd", "bale", "standalone"):
        assert "healthcheck" in s[name], name
    dep = s["standalone"]["depends_on"]
    assert dep["bale"]["condition"] == "service_healthy"
    assert dep["etcd"]["condition"] == "service_healthy"


def test_io_uring_allowed(compose):
    # Docker 25+ blocks io_uring in its default seccomp profile; bale cannot run without it.
    opts = compose["services"]["bale"].get("security_opt", [])
    assert any(o.startswith("seccomp") for o in opts), opts


def test_build_context(compose):
    b = compose["services"]["bale"]["build"]
    ctx = os.path.normpath(os.path.join(os.path.dirname(COMPOSE), b["context"]))
    assert ctx == ROOT
    assert os.path.isfile(os.path.join(ctx, b.get("dockerfile", "Dockerfile")))


def test_bale_help_lists_them():
    """When the binary is built: the flags and variables are in `bale serve --help`."""
    path = os.environ.get("BALE_BIN") or os.path.join(ROOT, "target", "release", "bale")
    if not os.path.exists(path):
        pytest.skip("bale not built")
    out = subprocess.run([path, "serve", "--help"], capture_output=True, text=True, timeout=20).stdout
    for s in ("--listen", "--data", "BALE_LISTEN", "BALE_DATA"):
        assert s in out, f"{s} not in `bale serve --help`"


def test_prometheus_scrapes_bale_with_the_shipped_config(compose):
    """The `prometheus` service runs scripts/monitoring/prometheus.yml against bale's S3 port
    with the same bearer token bale is given (BALE_METRICS_TOKEN)."""
    env_read, _ = bale_reads()
    assert "BALE_METRICS_TOKEN" in env_read
    services = compose["services"]
    prom = services["prometheus"]
    assert prom["image"].startswith("prom/prometheus:")
    mounts = {}
    for v in prom["volumes"]:
        src, dst = v.split(":")[:2]
        mounts[dst] = src
    cfg_dst = next(d for d, s in mounts.items() if s.endswith("monitoring/prometheus.yml"))
    here = os.path.dirname(COMPOSE)
    cfg_path = os.path.normpath(os.path.join(here, mounts[cfg_dst]))
    assert os.path.isfile(cfg_path), cfg_path
    with open(cfg_path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    (job,) = cfg["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Bearer"
    port = services["bale"]["environment"]["BALE_LISTEN"].rpartition(":")[2]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    hosts = ["bale"] + services["bale"]["networks"]["default"]["aliases"]
    assert targets and all(t.rpartition(":")[0] in hosts and t.rpartition(":")[2] == port for t in targets), targets
    # The entrypoint writes the token where the config it runs says, and runs that config.
    script = " ".join(prom["command"])
    assert prom["entrypoint"][:2] == ["/bin/sh", "-c"]
    token_file = job["authorization"]["credentials_file"]
    m = re.search(r"> (\S+-token) ", script)
    assert m and f"s#{token_file}#{m.group(1)}#" in script, script
    assert f"{cfg_dst} > /tmp/prometheus.yml" in script and "--config.file=/tmp/prometheus.yml" in script
    assert "$$BALE_METRICS_TOKEN" in script  # compose turns $$ into $ for the shell
    for env in ({}, {"BALE_METRICS_TOKEN": "another-token-0123456789"}):
        b = e2e.compose_env(compose, "bale", env)
        p = e2e.compose_env(compose, "prometheus", env)
        assert b["BALE_METRICS_TOKEN"] == p["BALE_METRICS_TOKEN"]
        assert 16 <= len(b["BALE_METRICS_TOKEN"]) <= 1024  # what --metrics-token accepts
    assert prom["depends_on"]["bale"]["condition"] == "service_healthy"
    published = [str(p).split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), published
