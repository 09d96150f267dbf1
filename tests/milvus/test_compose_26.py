"""Static checks of scripts/milvus/docker-compose-2.6.yml: Milvus 2.6 with its WAL (Woodpecker)
in bale.

Every check of tests/milvus/test_compose.py that does not depend on the Milvus version runs here
on the 2.6 file as well (the functions are imported; this module's `compose` fixture feeds them
the 2.6 file). Milvus 2.6 cannot be installed on the build machines (no Docker registry; PyPI's
embedded Milvus stops at 2.3.5), so its settings are checked against the names in Milvus's
documentation for 2.6 (milvus.io/docs/use-woodpecker.md: `mq.type: woodpecker`,
`woodpecker.storage.type: minio`) and against the 2.3.5 template for the rest.
"""

import os

import pytest
import yaml

from test_compose import (  # noqa: F401  (collected again here, on the 2.6 file)
    ROOT,
    fmt,
    milvus_config_keys,
    test_a_volume_per_data_directory,
    test_bale_command_and_flags,
    test_bale_environment_is_what_bale_reads,
    test_build_context,
    test_compose_schema,
    test_healthchecks_and_order,
    test_io_uring_allowed,
    test_keys_agree,
    test_listen_port_matches_ports_healthcheck_and_milvus,
    test_prometheus_scrapes_bale_with_the_shipped_config,
    test_services,
)

COMPOSE_26 = os.path.join(ROOT, "scripts", "milvus", "docker-compose-2.6.yml")
COMPOSE_23 = os.path.join(ROOT, "scripts", "milvus", "docker-compose.yml")

# Settings Milvus 2.6 has that 2.3.5's template does not (from the 2.6 documentation).
MILVUS_26_ONLY = {fmt("woodpecker.storage.type"): "woodpecker.storage.type"}


@pytest.fixture(scope="module")
def compose():
    with open(COMPOSE_26, encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_it_is_milvus_26(compose):
    image = compose["services"]["standalone"]["image"]
    name, _, tag = image.partition(":")
    assert name == "milvusdb/milvus"
    major_minor = tuple(int(x) for x in tag.lstrip("v").split(".")[:2])
    assert major_minor == (2, 6), image


def test_wal_is_woodpecker_in_object_storage(compose):
    env = compose["services"]["standalone"]["environment"]
    assert env.get("MQ_TYPE") == "woodpecker", "Milvus 2.6's WAL must be Woodpecker"
    assert env.get("WOODPECKER_STORAGE_TYPE") == "minio", \
        "Woodpecker must keep its fragments in object storage (bale), not on local disk"


def test_milvus_variables_are_milvus_26_settings(compose):
    keys = dict(milvus_config_keys())
    keys.update(MILVUS_26_ONLY)
    env = compose["services"]["standalone"]["environment"]
    for name in env:
        assert fmt(name) in keys, f"Milvus has no setting that {name} maps to"
    assert keys[fmt("MQ_TYPE")] == "mq.type"
    assert keys[fmt("WOODPECKER_STORAGE_TYPE")] == "woodpecker.storage.type"


def test_same_bale_service_as_the_23_file(compose):
    """Only Milvus changes between the two files: bale is configured identically."""
    with open(COMPOSE_23, encoding="utf-8") as f:
        old = yaml.safe_load(f)
    new_bale = dict(compose["services"]["bale"])
    old_bale = dict(old["services"]["bale"])
    for b in (new_bale, old_bale):
        b.pop("container_name", None)
    assert new_bale == old_bale
