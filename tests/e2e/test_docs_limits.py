"""docs/limits.md: every configuration example in it loads, and the table names every
reason the gateway counts as a resource limit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bastion.config.loader import load_config
from bastion.proxy.limits import LIMIT_REASONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "limits.md"


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def test_every_example_loads(tmp_path: Path) -> None:
    """Each YAML block of docs/limits.md, completed with a service where it has none, is a
    configuration ``bastion check`` accepts (a misspelt or out-of-range setting fails here)."""
    blocks = _yaml_blocks()
    assert blocks, "docs/limits.md has no examples"
    route = {"path": "/", "prefix": True, "public": True}
    service = {"services": [{"name": "api", "upstream": "http://127.0.0.1:9", "routes": [route]}]}
    for i, block in enumerate(blocks):
        example = yaml.safe_load(block)
        config = example if "services" in example else _merge(service, example)
        path = tmp_path / f"example{i}.yaml"
        path.write_text(yaml.safe_dump(config))
        load_config(path)


def test_every_counted_reason_is_documented() -> None:
    """Each reason counted in ``bastion_limit_rejections_total`` appears in the doc."""
    text = DOC.read_text()
    missing = sorted(r for r in LIMIT_REASONS if f"`{r}`" not in text)
    assert not missing, f"not in docs/limits.md: {missing}"
