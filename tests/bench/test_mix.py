"""The request mix of ``bench/run.py --mix``: its wrk script, its OpenAPI document and the
scenarios that use it. Whether the mix really passes every target is checked by the
benchmark itself, over sockets, before it measures."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bastion.config.loader import load_config
from proxybench import mix
from proxybench.modsecurity import modsecurity_nginx_config
from proxybench.report import (
    MIX_REFERENCES,
    Sample,
    TargetRuns,
    headers_with,
    mix_checks,
    proxy_section,
    summarize,
    table_cells,
)
from proxybench.scenarios import BASTION_NONE, INSPECT, MODSEC, SCENARIOS, select
from proxybench.servers import bastion_config
from proxybench.wrk import WrkResult, wrk_command


def test_lua_string_escapes_quotes_backslashes_and_non_ascii_bytes() -> None:
    """Printable ASCII stays, '"' and '\\' are escaped, other bytes become \\ddd (UTF-8)."""
    assert mix.lua_string('say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert mix.lua_string("Siobhán\n") == '"Siobh\\195\\161n\\010"'
    assert mix.lua_string(b"\x00\x7f") == '"\\000\\127"'


def test_lua_script_sends_each_request_of_the_mix_in_turn() -> None:
    """Every request's method, target and header values are in the script, and the order's
    bytes survive the escaping (decoding the literal gives the body back)."""
    script = mix.lua_script()
    for req in mix.MIX:
        assert f"method = {mix.lua_string(req.method)}, path = {mix.lua_string(req.target)}" in script
        for name, value in req.headers:
            assert f"[{mix.lua_string(name)}] = {mix.lua_string(value)}" in script
    literal = re.search(r'body = "((?:[^"\\]|\\.)*)"', script)
    assert literal is not None
    decoded = re.sub(rb"\\([0-9]{3})", lambda m: bytes([int(m.group(1))]),
                     re.sub(rb'\\(["\\])', rb"\1", literal.group(1).encode()))
    assert decoded == mix.ORDER_BODY
    assert "function request()" in script and "wrk.format(r.method, r.path, headers, r.body)" in script


def test_the_order_is_a_realistic_kilobyte() -> None:
    """About 1 KB, with the characters benign traffic has and naive filters trip on."""
    assert 900 <= len(mix.ORDER_BODY) <= 1300
    text = mix.ORDER_BODY.decode()
    assert "O'Brien" in text and "+orders@" in text and "https://" in text and "á" in text
    assert json.loads(text) == mix.ORDER


def test_bastion_inspect_config_loads_with_validation_and_detection(tmp_path: Path) -> None:
    """The scenario's generated bastion.yaml and OpenAPI document load: one route per
    operation of the mix (HEAD beside the GETs), each with validation and detection."""
    scenario = next(s for s in SCENARIOS if s.name == INSPECT)
    assert scenario.openapi is not None
    openapi = tmp_path / "api.json"
    openapi.write_text(json.dumps(scenario.openapi))
    config = bastion_config(port=8000, admin_port=8001, upstream_port=8002, access_log=None,
                            policies=scenario.policies, overrides=scenario.overrides, openapi=openapi)
    path = tmp_path / "bastion.yaml"
    path.write_text(json.dumps(config))
    loaded = load_config(path)
    routes = {r.id: r for r in loaded.routes}
    assert set(routes) == {"listItems", "getItem", "createOrder"}
    assert routes["createOrder"].methods == {"POST"}
    assert routes["getItem"].methods == {"GET", "HEAD"}
    for route in routes.values():
        assert [stage.name for stage in route.built] == ["validation", "detection"]
    targets = {(r.method, r.target.partition("?")[0]) for r in mix.MIX}
    assert targets == {("GET", "/api/items"), ("GET", f"/api/items/{mix.ITEM_ID}"), ("POST", "/api/orders")}


def test_mix_scenarios_run_only_with_mix_and_bring_their_references() -> None:
    """Without --mix the GET / scenarios run as before; with it, asking for bastion-inspect
    also runs what its ratios are taken against."""
    assert [s.name for s in select(None)] == [
        "direct", "nginx", "bastion-none", "bastion-default", "bastion-apikey", "bastion-audit",
        "bastion-monitor", "bastion-protect"]
    with pytest.raises(ValueError, match="only run with --mix"):
        select([INSPECT])
    assert [s.name for s in select([INSPECT], use_mix=True)] == [
        "direct", "nginx", BASTION_NONE, INSPECT, MODSEC]


def test_wrk_command_with_the_mix_script_and_a_timeout() -> None:
    """The script goes with -s, the timeout with --timeout; the run stays bounded by -d."""
    assert wrk_command("http://127.0.0.1:1/", threads=2, connections=32, duration_s=2,
                       script=Path("/tmp/x/mix.lua"), timeout_s=10) == [
        "wrk", "-t2", "-c32", "-d2s", "--latency", "--timeout", "10s", "-s", "/tmp/x/mix.lua",
        "http://127.0.0.1:1/",
    ]


def _runs(name: str, rps: float) -> TargetRuns:
    sample = Sample(WrkResult(int(rps * 10), 10.0, rps, 1000, 3000, 0, 0), 1.0)
    return TargetRuns(name, name, [sample], [WrkResult(100, 10.0, 10.0, 500, 900, 0, 0)])


def test_mix_summary_has_ratios_to_bastion_none_and_modsecurity() -> None:
    """bastion-inspect's RPS over bastion-none's and over ModSecurity's, in the row, the
    table and the target checks."""
    rows = summarize([_runs("direct", 40000), _runs("nginx", 20000), _runs(BASTION_NONE, 10000),
                      _runs(INSPECT, 8000), _runs(MODSEC, 500)], MIX_REFERENCES)
    inspect = next(r for r in rows if r.name == INSPECT)
    assert inspect.rps_vs == {BASTION_NONE: pytest.approx(0.8), MODSEC: pytest.approx(16.0)}
    headers = headers_with(MIX_REFERENCES)
    cells = dict(zip(headers, table_cells([inspect], MIX_REFERENCES)[0], strict=True))
    assert cells["vs bastion-none"] == "0.80x" and cells["vs nginx-modsec-pl1"] == "16.0x"
    assert [ok for _, ok in mix_checks(rows)] == [True, True]


def test_modsecurity_config_stays_on_loopback_with_the_proxy_pool(tmp_path: Path) -> None:
    """The ModSecurity nginx listens on 127.0.0.1 and keeps the plain proxy's keep-alive pool."""
    config = modsecurity_nginx_config(tmp_path, "modsec", 8003, 8001, 2, tmp_path / "main.conf")
    assert "listen 127.0.0.1:8003;" in config and "modsecurity on;" in config
    assert "keepalive 64;" in config and "keepalive_requests 100000000;" in config


def test_mix_section_describes_the_mix_and_the_targets() -> None:
    """The written section says what was sent and shows the extra ratio columns and targets."""
    rows = summarize([_runs("direct", 40000), _runs("nginx", 20000), _runs(BASTION_NONE, 10000),
                      _runs(INSPECT, 6000), _runs(MODSEC, 500)], MIX_REFERENCES)
    section = proxy_section(command="python bench/run.py --mix", date="today", machine={}, rows=rows,
                            rounds=3, wrk_throughput="wrk ...", wrk_moderate="wrk ...", workers=2,
                            use_mix=True, wrk_timeout_s=10)
    assert section.startswith("## Input defense")
    assert "- `POST /api/orders` with a 1," in section and "`GET /api/items/" in section
    assert "| vs bastion-none | vs nginx-modsec-pl1 |" in section
    assert "**not met**: throughput ≥ 0.7x Bastion with no stages: 0.60x" in section
    assert "met: throughput ≥ 10x nginx + ModSecurity + CRS PL1: 12.0x" in section


def test_mix_stages_runs_the_inspect_chains_over_new_text(capsys: pytest.CaptureFixture[str]) -> None:
    """``bench/detection/mix_stages.py`` passes every request of the mix through the
    bastion-inspect chains (any refusal fails it) and reports their cost."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "detection"))
    import mix_stages

    rt = mix_stages.runtime()
    raws = mix_stages.wire_requests(0, 6)
    assert [r[0] for r in raws] == ["GET", "GET", "POST"] * 2
    assert b"00002" in raws[2][3] and b"00005" in raws[5][3]  # new text in each order
    assert mix_stages.main(["--requests", "30", "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["stages_us_per_request"] > 0 and result["requests_per_round"] == 30
    route, request = mix_stages.build(rt, raws[1])
    assert request.path_params == {"itemId": mix.ITEM_ID} and route.chain.request_stages
