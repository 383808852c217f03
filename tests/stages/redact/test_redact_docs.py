"""docs/redaction.md's examples load as written, and its table names every type."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bastion.config import load_config
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
