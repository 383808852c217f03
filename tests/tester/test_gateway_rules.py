"""Each gateway-configuration rule: a bastion.yaml that triggers it and the fixed one that does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.config.yamlsrc import parse_source
from bastion.tester.audit import ALL_RULES, Gateway, identity, load_gateway, run_audit
from tests.tester.util import baseline, spec_of

#: Only public reads: no GW-001 (public write) and no GW-017 (secured route nothing verifies).
PUBLIC_API: dict[str, Any] = {**baseline(), "security": []}
PUBLIC_API["paths"] = {k: v for k, v in PUBLIC_API["paths"].items() if "post" not in v}


def config(**overrides: Any) -> dict[str, Any]:
    """A minimal valid bastion.yaml (as data) with top-level keys replaced."""
    cfg: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 8080},
        "admin": {"host": "127.0.0.1", "port": 9090},
        "services": [{"name": "things", "upstream": "http://127.0.0.1:9001", "openapi": "api.yaml"}],
    }
    cfg.update(overrides)
    return cfg


def service(**overrides: Any) -> list[dict[str, Any]]:
    return [{"name": "things", "upstream": "http://127.0.0.1:9001", "openapi": "api.yaml", **overrides}]


def gateway_ids(tmp_path: Path, cfg: dict[str, Any], api: dict[str, Any] | None = None) -> list[str]:
    """Write the config and its OpenAPI document, audit them, return the gateway rules that fired."""
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(api or PUBLIC_API, sort_keys=False))
    (tmp_path / "bastion.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (tmp_path / "cert.pem").write_text("not read by the audit\n")
    (tmp_path / "key.pem").write_text("not read by the audit\n")
    gw = load_gateway(tmp_path / "bastion.yaml")
    result = run_audit(spec_of(api or PUBLIC_API), gw)
    assert all(f.location.line is not None for f in result.findings if f.rule.scope == "config")
    return [f.rule.id for f in result.findings if f.rule.scope == "config"]


TLS = {"cert": "cert.pem", "key": "key.pem"}
WRITE_ROUTE = {"path": "/upload", "methods": ["POST"], "public": True}
READ_ROUTE = {"path": "/upload", "methods": ["GET"], "public": True}

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("BAST-GW-001", config(services=service(routes=[WRITE_ROUTE])), config(services=service(routes=[READ_ROUTE]))),
    (
        "BAST-GW-003",
        config(policies={"headers": {"failure_mode": "open"}}),
        config(policies={"headers": {"failure_mode": "closed"}}),
    ),
    (
        "BAST-GW-004",
        config(services=service(policies={"headers": {"enforce": False}})),
        config(services=service(policies={"headers": {"enforce": True}})),
    ),
    # Off loopback the admin listener must have TLS (a config error otherwise): the finding remains.
    ("BAST-GW-006", config(admin={"host": "0.0.0.0", "tls": TLS}), config(admin={"host": "::1", "tls": TLS})),
    ("BAST-GW-007", config(listen={"host": "0.0.0.0"}), config(listen={"host": "0.0.0.0", "tls": TLS})),
    ("BAST-GW-008", config(listen={"tls": {**TLS, "hsts": {"enabled": False}}}), config(listen={"tls": TLS})),
    (
        "BAST-GW-009",
        config(services=service(upstream={"targets": ["https://10.0.0.5"], "tls": {"verify": False}})),
        config(services=service(upstream={"targets": ["https://10.0.0.5"], "tls": {"verify": True}})),
    ),
    (
        "BAST-GW-010",
        config(services=service(upstream=["http://10.0.0.5:9001"])),
        config(services=service(upstream=["http://localhost:9001"])),
    ),
    (
        "BAST-GW-011",
        config(services=service(routes=[{"path": "/static", "prefix": True, "public": True, "methods": ["GET"]}])),
        config(services=service(routes=[{"path": "/static/app.js", "public": True, "methods": ["GET"]}])),
    ),
    (
        "BAST-GW-012",
        config(policies={"headers": {"set": {"x-upstream-token": "s3cr3t-literal"}}}),
        config(policies={"headers": {"set": {"x-upstream-token": "${UPSTREAM_TOKEN}"}}}),
    ),
    (
        "BAST-GW-013",
        config(listen={"limits": {"max_body_bytes": 200 * 1024 * 1024}}),
        config(listen={"limits": {"max_body_bytes": 1024 * 1024}}),
    ),
    (
        "BAST-GW-014",
        config(policies={"headers": {"set": {"Access-Control-Allow-Origin": "*"}}}),
        config(policies={"headers": {"set": {"Access-Control-Allow-Origin": "https://app.example.com"}}}),
    ),
    (
        "BAST-GW-014",
        config(policies={"cors": {"allow_origins": ["https://app.example.com", "*"]}}),
        config(policies={"cors": {"allow_origins": ["https://app.example.com", "https://*.example.com"]}}),
    ),
    (
        "BAST-GW-015",
        config(listen={"trusted_proxies": ["0.0.0.0/0"]}),
        config(listen={"trusted_proxies": ["10.1.2.3/32"]}),
    ),
    ("BAST-GW-016", config(access_log={"enabled": False}), config(access_log={"enabled": True})),
]


def test_the_baseline_config_is_clean(tmp_path: Path) -> None:
    """A loopback gateway in front of a public-only API triggers no gateway rule."""
    assert gateway_ids(tmp_path, config()) == []


def test_every_config_rule_has_cases() -> None:
    """Every gateway rule has a triggering and a clean case (GW-002, GW-005 and GW-017 have their own tests;
    the identity and access rules have theirs in test_identity_rules.py)."""
    config_rules = {r.id for r in ALL_RULES if r.scope == "config"}
    own_tests = {"BAST-GW-002", "BAST-GW-005", "BAST-GW-017"} | {r.info.id for r in identity.RULES}
    assert config_rules == {rule for rule, _, _ in CASES} | own_tests


@pytest.mark.parametrize(("rule", "bad", "good"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_fires_on_the_flaw_and_not_on_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rule: str, bad: dict[str, Any], good: dict[str, Any]
) -> None:
    """The rule reports the flawed config (with a line) and stays silent on the fixed one."""
    monkeypatch.setenv("UPSTREAM_TOKEN", "from-the-environment")
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    assert rule in gateway_ids(tmp_path / "bad", bad)
    assert rule not in gateway_ids(tmp_path / "good", good)


def test_refused_and_delegated_routes_are_reported(tmp_path: Path) -> None:
    """GW-017 (info): each operation that needs authentication nothing verifies is one finding at
    its line in the OpenAPI document (it answers 401, unreachable); GW-002 (medium) replaces it
    where authentication is delegated to the upstream; public operations are in neither."""
    api = baseline()  # two secured operations
    api["paths"]["/health"] = {
        "get": {**api["paths"]["/things/{thingId}"]["get"], "operationId": "health", "security": [], "parameters": []}
    }
    # Nothing verifies credentials: Bastion's API keys (on by default) are off.
    unverified = {"auth": {"api_keys": {"enabled": False}}}
    ids = gateway_ids(tmp_path, config(policies=unverified), api)
    assert (ids.count("BAST-GW-017"), ids.count("BAST-GW-002")) == (2, 0)
    delegated = config(services=service(policies={"auth": {"delegate": "upstream"}}))
    ids = gateway_ids(tmp_path, delegated, api)
    assert (ids.count("BAST-GW-017"), ids.count("BAST-GW-002")) == (0, 2)
    public = gateway_ids(tmp_path, config(), PUBLIC_API)
    assert "BAST-GW-002" not in public and "BAST-GW-017" not in public


def test_findings_say_what_is_enforced(tmp_path: Path) -> None:
    """The messages name the route and what really happens to it."""
    gateway_ids(tmp_path, config(services=service(policies={"auth": {"delegate": "upstream"}})), baseline())
    gw = load_gateway(tmp_path / "bastion.yaml")
    messages = sorted(f.message for f in run_audit(spec_of(baseline()), gw).findings if f.rule.id == "BAST-GW-002")
    assert messages and all("delegated to upstream" in m and m.startswith("route '") for m in messages), messages


def test_detection_in_monitor_mode_is_reported(tmp_path: Path) -> None:
    """GW-005 reads the detection policy as written, in the config and in OpenAPI extensions."""
    gateway_ids(tmp_path, config())  # writes valid files
    gw = load_gateway(tmp_path / "bastion.yaml")
    text = yaml.safe_dump(config(policies={"detection": {"mode": "monitor"}}), sort_keys=False)
    monitored = Gateway(gw.loaded, parse_source(text, "bastion.yaml", interpolate=False))
    blocking = Gateway(gw.loaded, parse_source(text.replace("monitor", "block"), "bastion.yaml", interpolate=False))
    spec = spec_of(PUBLIC_API)
    assert [f.location.field for f in run_audit(spec, monitored).findings if f.rule.id == "BAST-GW-005"] == [
        "policies.detection.mode"
    ]
    assert not [f for f in run_audit(spec, blocking).findings if f.rule.id == "BAST-GW-005"]
