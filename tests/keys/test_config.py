"""The config file (`--config bale.toml`) and `bale config check` (issue 16).

Every setting of `bale serve` is a config key (the long flag name with `_`); flags and
environment variables override the file; a bad file is one line on stderr and exit 1.
"""

import os
import re

import pytest

import baleproc
from conftest import bale, boto3_client


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def settings(stdout):
    """`key = value  # source` lines of `bale config check` -> {key: (value, source)}."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"^([a-z0-9_]+) = (.*?)  # (.*)$", line)
        if m:
            out[m.group(1)] = (m.group(2), m.group(3))
        m = re.match(r"^# ([a-z0-9_]+) =   \(not set\)$", line)
        if m:
            out[m.group(1)] = (None, "not set")
    return out


def serve_long_flags():
    r = bale("serve", "--help")
    assert r.returncode == 0, r.stderr
    flags = set(re.findall(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)", r.stdout, re.M))
    flags -= {"help", "version"}
    assert {"listen", "data", "cache-mb", "config", "keys-file"} <= flags, flags
    return sorted(flags)


def test_file_values_apply_and_secrets_are_masked(tmp_path):
    cfg = write(tmp_path, "bale.toml", (
        'cache_mb = 512\n'
        'data = ["/tmp/bale-cfg-a", "/tmp/bale-cfg-b"]\n'
        'no-fast-path = true\n'
        'region = "eu-west-1"\n'
        'access_key = "fileaccess"\n'
        'secret_key = "file-secret-value-123"\n'
    ))
    r = bale("config", "check", "--config", cfg)
    assert r.returncode == 0, r.stderr
    s = settings(r.stdout)
    assert s["cache_mb"] == ("512", "config file")
    assert s["data"] == ('["/tmp/bale-cfg-a", "/tmp/bale-cfg-b"]', "config file")
    assert s["no_fast_path"] == ("true", "config file")
    assert s["region"] == ('"eu-west-1"', "config file")
    assert s["access_key"] == ('"fileaccess"', "config file")
    assert s["secret_key"] == ('"file****"', "config file")
    assert s["listen"] == ('"127.0.0.1:9000"', "default")
    assert "file-secret-value-123" not in r.stdout + r.stderr
    assert "# root key: fileaccess (secret file****)" in r.stdout


def test_flags_and_environment_override_the_file(tmp_path):
    cfg = write(tmp_path, "bale.toml", 'cache_mb = 512\nregion = "eu-west-1"\nidle_timeout_s = 5\n'
                'access_key = "fileaccess"\n')
    r = bale("config", "check", "--config", cfg, "--region", "ap-south-1",
             env={"BALE_CACHE_MB": "7", "MINIO_ROOT_USER": "minioroot"})
    assert r.returncode == 0, r.stderr
    s = settings(r.stdout)
    assert s["region"] == ('"ap-south-1"', "command line")
    assert s["cache_mb"] == ("7", "environment")
    assert s["idle_timeout_s"] == ("5", "config file")
    # MINIO_ROOT_USER is access_key's environment variable: it beats the file too.
    assert s["access_key"] == (None, "not set")
    assert "# root key: minioroot " in r.stdout
    # BALE_CONFIG names the file as --config does.
    r = bale("config", "check", env={"BALE_CONFIG": cfg})
    assert r.returncode == 0, r.stderr
    assert settings(r.stdout)["cache_mb"] == ("512", "config file")


def test_every_serve_flag_is_a_config_key(tmp_path):
    r = bale("config", "check")
    assert r.returncode == 0, r.stderr
    shown = settings(r.stdout)
    for flag in serve_long_flags():
        key = flag.replace("-", "_")
        assert key in shown, f"`bale config check` does not show --{flag}"
        if flag == "config":
            continue
        # The key is accepted in the file, in both spellings (a value may still be refused
        # for its type, never for its name).
        for spelling in (key, flag):
            cfg = write(tmp_path, "one.toml", f'{spelling} = "xxxxxxxxxxxx"\n')
            r = bale("config", "check", "--config", cfg)
            assert "unknown key" not in r.stderr, (flag, r.stderr)
            if r.returncode != 0:
                # Refused for its value (another flag's own validation may need a partner
                # flag): still one line.
                assert r.stderr.count("\n") == 1, r.stderr


def test_a_default_config_check_is_a_valid_config_file(tmp_path):
    """The output of `bale config check` read back as a config file gives the same settings."""
    r = bale("config", "check", "--cache-mb", "99", "--data", "/tmp/x1", "--data", "/tmp/x2",
             "--secret-key", "not-shown-secret-1")
    assert r.returncode == 0, r.stderr
    # Masked secrets would not round-trip: drop them.
    text = "\n".join(ln for ln in r.stdout.splitlines() if not ln.startswith(("secret_key", "config ")))
    cfg = write(tmp_path, "again.toml", text + "\n")
    r2 = bale("config", "check", "--config", cfg)
    assert r2.returncode == 0, r2.stderr
    a, b = settings(r.stdout), settings(r2.stdout)
    for k in ("cache_mb", "data", "listen", "compact_ratio", "region"):
        assert a[k][0] == b[k][0], k


BAD = [
    ("unknown.toml", "bogus_flag = 1\n", "unknown key `bogus_flag`"),
    ("type.toml", 'cache_mb = "lots"\n', "cache_mb"),
    ("range.toml", "spin_us = 20000\n", "spin_us"),
    ("negative.toml", "cache_mb = -1\n", "cache_mb"),
    ("syntax.toml", "cache_mb = = 2\n", "line 1: invalid TOML"),
    ("array.toml", "region = [\"a\", \"b\"]\n", "region: takes one value"),
    ("switch.toml", 'no_fast_path = "yes"\n', "no_fast_path: expects true or false"),
    ("table.toml", "[cache_mb]\nx = 1\n", "cache_mb"),
    ("self.toml", 'config = "other.toml"\n', "unknown key `config`"),
    ("twice.toml", "cache_mb = 1\ncache-mb = 2\n", "given twice"),
    ("ratio.toml", "compact_ratio = 3.5\n", "--compact-ratio must be between 0 and 1"),
    ("utf8.toml", b"cache_mb = 1\n\xff\xfe\n", "line 2: not UTF-8"),
]


@pytest.mark.parametrize("name,text,expect", BAD, ids=[b[0] for b in BAD])
def test_bad_files_are_one_line_and_exit_1(tmp_path, name, text, expect):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    for cmd in (["config", "check"], ["serve"]):
        r = bale(*cmd, "--config", str(p), "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:1")
        assert r.returncode == 1, (cmd, r.stdout, r.stderr)
        assert r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith("bale: error: ") and expect in r.stderr, r.stderr
        assert r.stdout == ""


def test_missing_and_oversized_files(tmp_path):
    r = bale("config", "check", "--config", str(tmp_path / "absent.toml"))
    assert r.returncode == 1 and "absent.toml: cannot open" in r.stderr
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    r = bale("config", "check", "--config", str(big))
    assert r.returncode == 1 and "larger than 1048576 bytes" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1


def test_serve_uses_the_file(tmp_path):
    """A real server configured by the file: its region and keys are the file's."""
    cfg = write(tmp_path, "bale.toml", 'region = "eu-west-1"\nspin_us = 0\n')
    b = baleproc.Bale(extra_args=["--config", cfg])
    b.start()
    try:
        s3 = boto3_client(b.endpoint, b.access_key, b.secret_key, region="eu-west-1")
        s3.create_bucket(Bucket="cfgbucket",
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        loc = s3.get_bucket_location(Bucket="cfgbucket")["LocationConstraint"]
        assert loc == "eu-west-1"
        s3.put_object(Bucket="cfgbucket", Key="k", Body=b"hello")
        assert s3.get_object(Bucket="cfgbucket", Key="k")["Body"].read() == b"hello"
    finally:
        assert b.stop() == 0
        b.cleanup()
