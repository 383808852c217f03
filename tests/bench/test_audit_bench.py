"""The audit log's bench scenarios (issue 17): what ``bench/run.py`` starts for them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bastion.config.loader import load_config
from proxybench.scenarios import SCENARIOS
from proxybench.servers import bastion_config


@pytest.mark.parametrize(("name", "detectors"), [("bastion-audit", False), ("bastion-monitor", True)])
def test_audit_scenarios_load_with_their_own_spool_and_store_and_no_stage(
    tmp_path: Path, name: str, detectors: bool
) -> None:
    """Each scenario's generated bastion.yaml loads with the audit log on, writing to a spool
    and a SQLite store of its own in the run folder (the two run side by side), no stage on
    the route (its ratio to bastion-none is the audit log's cost), and the detectors on for
    bastion-monitor only."""
    scenario = next(s for s in SCENARIOS if s.name == name)
    config = bastion_config(port=8000, admin_port=8001, upstream_port=8002, access_log=None,
                            policies=scenario.policies, overrides=scenario.overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(config))
    loaded = load_config(path)
    settings = loaded.config
    assert settings.audit.enabled and settings.audit.store
    assert settings.audit.spool_dir == tmp_path / f"spool-{name.removeprefix('bastion-')}"
    assert settings.store.url == f"sqlite:///{tmp_path / (name + '.db')}"
    assert settings.detectors.enabled is detectors
    assert [[stage.name for stage in route.built] for route in loaded.routes] == [[]]
