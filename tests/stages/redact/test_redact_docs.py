"""docs/redaction.md's examples load as written, and its table names every type."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bastion.config import load_config
from bastion.config.secrets import MASTER_KEY_ENV, encrypt, new_master_key
from bastion.sensitive import DETECTORS, GROUPS
from bastion.stages.redact import RedactConfig, RedactStage

DOC = (Path(__file__).resolve().parents[3] / "docs" / "redaction.md").read_text()


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)


def test_the_config_example_loads_and_builds_the_stage(tmp_path: Path) -> None:
    """The bastion.yaml example passes `bastion check`'s loader and builds a redact stage on
    both routes, with the per-type override on the first."""
    path = tmp_path / "bastion.yaml"
    path.write_text(_yaml_blocks()[0])
    config = load_config(path)
    stages = {route.id: [s for s in route.built if isinstance(s, RedactStage)] for route in config.routes}
    assert sorted(len(v) for v in stages.values()) == [1, 1]
    first = next(iter(v[0] for k, v in stages.items() if "accounts" in k))
    assert first.needs_response_body  # ssn is on block


def test_the_extension_example_is_a_valid_policy() -> None:
    """The x-bastion-redact example is a valid RedactConfig."""
    doc = yaml.safe_load(_yaml_blocks()[1])
    RedactConfig(**doc["x-bastion-redact"])


def test_the_types_table_lists_every_type_and_group() -> None:
    """Each detector has its row in the table and each group is explained."""
    for kind in DETECTORS:
        assert f"| `{kind}` |" in DOC, kind
    for group in GROUPS:
        assert f"`{group}` is" in DOC, group


def test_the_record_example_loads(tmp_path: Path) -> None:
    """The access_log.redact_fields example loads as written."""
    path = tmp_path / "bastion.yaml"
    path.write_text(_yaml_blocks()[2])
    assert load_config(path).config.access_log.redact_fields == ["pin", "user.ssn"]


def test_the_secrets_example_loads_with_a_reference_or_encrypted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secrets-at-rest example loads with its variable set; with its URL replaced by what
    `bastion secrets encrypt` prints for the URL shown (the same function), it loads with the
    master key set; the shell example uses the commands that exist."""
    shell = re.findall(r"```sh\n(.*?)```", DOC, flags=re.S)[0]
    assert "bastion secrets new-key" in shell and "bastion secrets encrypt" in shell
    example = _yaml_blocks()[3]
    path = tmp_path / "bastion.yaml"
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    path.write_text(example)
    redis = load_config(path).config.backends.redis
    assert redis is not None and redis.url == "redis://:s3cret@cache:6379/0"
    key = new_master_key()
    monkeypatch.setenv(MASTER_KEY_ENV, key)
    monkeypatch.delenv("REDIS_PASSWORD")
    value = encrypt(key.encode(), "redis://:s3cret@cache:6379/0")
    path.write_text(example.replace("redis://:${REDIS_PASSWORD}@cache:6379/0", value))
    redis = load_config(path).config.backends.redis
    assert redis is not None and redis.url == "redis://:s3cret@cache:6379/0"
