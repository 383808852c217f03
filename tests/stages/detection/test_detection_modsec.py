"""``engine: modsecurity``: the OWASP CRS through libmodsecurity, configured and run for real.

The rules are Debian's ``modsecurity-crs`` package (``.ci/run`` installs it). Where it is
missing the CRS tests are skipped with that reason, unless ``BASTION_REQUIRE_CRS=1`` (set
by CI) makes its absence a failure.
"""

from __future__ import annotations

import os
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bastion.config import ConfigError, load_config
from bastion.stages.detection import DetectionConfig, DetectionStage
from bastion.stages.detection import config as detection_config
from bastion.stages.detection.config import DEBIAN_CRS_RULES, DEBIAN_CRS_SETUP
from bastion.stages.detection.modsec import ModSecurityEngine, ModSecurityVerdict
from bastion.testing import GatewayProcess, RawResponse, parse_one_response, raw_request
from bastion.types import Request

CRS_INSTALLED = Path(DEBIAN_CRS_SETUP).is_file() and bool(list(Path(DEBIAN_CRS_RULES).parent.glob("*.conf")))
if not CRS_INSTALLED and os.environ.get("BASTION_REQUIRE_CRS") == "1":
    raise RuntimeError("BASTION_REQUIRE_CRS=1 but Debian's modsecurity-crs is not installed")
needs_crs = pytest.mark.skipif(
    not CRS_INSTALLED, reason="Debian's modsecurity-crs is not installed (apt-get install modsecurity-crs)"
)

SQLI_TARGET = "/items?id=1%27%20UNION%20SELECT%20password%20FROM%20users--"
HEADERS = [("host", "api.test"), ("user-agent", "curl/8.5"), ("accept", "*/*")]


def config_errors(tmp_path: Path, detection: str) -> list[str]:
    """The issues ``load_config`` reports for a catch-all route with this detection policy."""
    path = tmp_path / "bastion.yaml"
    path.write_text(
        "services:\n"
        "  - name: api\n"
        "    upstream: http://127.0.0.1:9001\n"
        "    routes: [{path: /, prefix: true, public: true}]\n"
        "    policies:\n"
        "      detection:\n" + textwrap.indent(textwrap.dedent(detection), "        ")
    )
    try:
        load_config(path)
    except ConfigError as exc:
        return [str(issue) for issue in exc.issues]
    return []


def request(target: str, body: bytes | None = None, content_type: str | None = None) -> Request:
    path, _, query = target.partition("?")
    headers = list(HEADERS)
    if content_type:
        headers.append(("content-type", content_type))
    req = Request("POST" if body else "GET", target, path, query, headers, host="api.test")
    req.body = body
    return req


# -- configuration errors ---------------------------------------------------------------


def test_rules_entry_matching_no_file_is_a_config_error(tmp_path: Path) -> None:
    """A rules entry that matches no file is reported with the file, the field and the entry."""
    errors = config_errors(
        tmp_path,
        f"""\
        engine: modsecurity
        modsecurity: {{rules: ["{tmp_path}/missing/*.conf"]}}
        """,
    )
    assert errors == [
        f"{tmp_path}/bastion.yaml:8: services[0].policies.detection.modsecurity.rules: "
        f"'{tmp_path}/missing/*.conf' matches no file"
    ]


def test_relative_rules_path_is_a_config_error(tmp_path: Path) -> None:
    """Rule files must be named by absolute paths (a policy can come from any file)."""
    errors = config_errors(tmp_path, "engine: modsecurity\nmodsecurity: {rules: [rules/*.conf]}\n")
    assert len(errors) == 1
    assert errors[0].endswith(
        "services[0].policies.detection.modsecurity.rules: 'rules/*.conf' is not an absolute path"
    )


def test_rule_syntax_error_is_a_config_error_naming_file_and_line(tmp_path: Path) -> None:
    """A SecRules file ModSecurity cannot parse fails the config load with its own message
    (file and line), instead of a gateway running with part of its rules."""
    bad = tmp_path / "bad.conf"
    bad.write_text('SecRule ARGS "@rx a" "id:1,phase:2,deny"\nSecRuleX ARGS\n')
    errors = config_errors(tmp_path, f"engine: modsecurity\nmodsecurity: {{rules: ['{bad}']}}\n")
    assert len(errors) == 1
    field = "services[0].policies.detection.modsecurity"
    assert errors[0].startswith(f"{tmp_path}/bastion.yaml:8: {field}: ModSecurity cannot load the rules: ")
    assert f"File: {bad}. Line: 2" in errors[0]


def test_bad_directives_are_a_config_error(tmp_path: Path) -> None:
    """Extra directives are parsed at load too, and their error says they are at fault."""
    rules = tmp_path / "ok.conf"
    rules.write_text('SecRule ARGS "@rx a" "id:1,phase:2,deny"\n')
    errors = config_errors(
        tmp_path, f"engine: modsecurity\nmodsecurity: {{rules: ['{rules}'], directives: 'SecNoSuchDirective On'}}\n"
    )
    assert len(errors) == 1
    assert "modsecurity: ModSecurity cannot load the rules: in 'directives': " in errors[0]


def test_native_only_settings_are_refused_with_modsecurity(tmp_path: Path) -> None:
    """Per-category modes and exclusions name Bastion's own rules: with the ModSecurity engine
    they would silently do nothing, so they are an error pointing at SecRuleRemoveById."""
    rules = tmp_path / "ok.conf"
    rules.write_text('SecRule ARGS "@rx a" "id:1,phase:2,deny"\n')
    errors = config_errors(
        tmp_path, f"engine: modsecurity\nmodsecurity: {{rules: ['{rules}']}}\ncategories: {{recon: monitor}}\n"
    )
    assert errors == [
        f"{tmp_path}/bastion.yaml:6: services[0].policies.detection: 'categories' applies to the native engine "
        "only; with engine 'modsecurity' tune the rules with 'modsecurity.directives' (e.g. SecRuleRemoveById)"
    ]


def test_missing_package_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the libmodsecurity package (simulated) the engine is a config error naming the
    extra to install, never a gateway silently running without protection."""
    monkeypatch.setattr(detection_config, "modsecurity_installed", lambda: False)
    errors = config_errors(tmp_path, "engine: modsecurity\n")
    assert errors == [
        f"{tmp_path}/bastion.yaml:7: services[0].policies.detection.engine: engine 'modsecurity' needs the "
        "libmodsecurity package: pip install 'bastion-gateway[modsecurity]'"
    ]


def test_native_default_never_reads_crs_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default engine stays native, and its config neither needs the package nor the CRS: on a
    machine without Debian's CRS files (simulated) detection still loads (it failed to, once)."""
    monkeypatch.setattr(detection_config, "modsecurity_installed", lambda: False)
    monkeypatch.setattr(detection_config, "DEBIAN_CRS_SETUP", f"{tmp_path}/no-crs/crs-setup.conf")
    monkeypatch.setattr(detection_config, "DEBIAN_CRS_RULES", f"{tmp_path}/no-crs/rules/*.conf")
    config = DetectionConfig.model_validate({"paranoia": 1})
    assert config.engine == "native"
    assert config_errors(tmp_path, "enforce: true\nparanoia: 2\n") == []


def test_modsecurity_without_the_crs_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """engine: modsecurity on a machine without the default rule files names the missing files."""
    monkeypatch.setattr(detection_config, "DEBIAN_CRS_SETUP", f"{tmp_path}/no-crs/crs-setup.conf")
    monkeypatch.setattr(detection_config, "DEBIAN_CRS_RULES", f"{tmp_path}/no-crs/rules/*.conf")
    errors = config_errors(tmp_path, "engine: modsecurity\n")
    assert errors == [
        f"{tmp_path}/bastion.yaml:6: services[0].policies.detection.modsecurity: no rule file exists at "
        f"{tmp_path}/no-crs/crs-setup.conf, {tmp_path}/no-crs/rules/*.conf: install Debian's modsecurity-crs "
        "package, or name your SecRules files in 'rules'"
    ]


@needs_crs
def test_openapi_extension_selects_the_engine(tmp_path: Path) -> None:
    """``x-bastion-detection: {engine: modsecurity}`` in an OpenAPI document configures the
    operation's detection stage with the ModSecurity engine, like the YAML policy does."""
    (tmp_path / "api.yaml").write_text(
        "openapi: 3.0.3\n"
        "info: {title: t, version: '1'}\n"
        "x-bastion-detection: {engine: modsecurity, paranoia: 2}\n"
        "paths:\n"
        "  /search:\n"
        "    get: {operationId: search, security: [], responses: {'200': {description: ok}}}\n"
    )
    (tmp_path / "bastion.yaml").write_text(
        "services: [{name: api, upstream: 'http://127.0.0.1:9001', openapi: api.yaml}]\n"
    )
    route = next(r for r in load_config(tmp_path / "bastion.yaml").routes if r.id == "search")
    config = next(cfg for spec, cfg in route.stages if spec.name == "detection")
    assert isinstance(config, DetectionConfig)
    assert (config.engine, config.paranoia) == ("modsecurity", 2)
    assert isinstance(DetectionStage(config).engine, ModSecurityEngine)


# -- the engine, in process --------------------------------------------------------------


@needs_crs
def test_crs_verdict_has_rule_ids_categories_locations_and_snippets() -> None:
    """CRS PL1 blocks an SQL injection; the verdict lists CRS rule IDs with category, the
    ModSecurity variable and a short snippet, in the native engine's log format."""
    engine = ModSecurityEngine(DetectionConfig(engine="modsecurity"))
    verdict = engine.evaluate(request(SQLI_TARGET))
    assert isinstance(verdict, ModSecurityVerdict)
    record = verdict.log_record()
    assert record["blocked"] is True and record["category"] == "sqli"
    assert set(record) == {"score", "total_score", "blocked", "category", "uninspected", "hits"}
    rules = {h["rule"] for h in record["hits"]}
    assert 942100 in rules  # libinjection
    assert not any(949000 <= r <= 949999 for r in rules)  # the scoring rule is not a detection
    for hit in record["hits"]:
        assert set(hit) == {"rule", "category", "severity", "location", "snippet"}
        assert hit["category"] == "sqli" and hit["severity"] == 5 and hit["location"] == "ARGS:id"
        assert 0 < len(hit["snippet"]) <= 40
    assert record["score"] == record["total_score"] == 5 * len(record["hits"])


@needs_crs
def test_non_utf8_matched_bytes_still_give_a_verdict() -> None:
    """Matched data that is not UTF-8 (``%ff`` decodes to a lone byte) makes the bindings raise
    when a rule message's data is read; the engine still blocks and logs the hits with their
    location and snippet, instead of raising (a 500, or a bypass when fail-open)."""
    engine = ModSecurityEngine(DetectionConfig(engine="modsecurity"))
    verdict = engine.evaluate(request("/items?id=%ff%27%20UNION%20SELECT%20password%20FROM%20users--"))
    assert verdict.block_category == "sqli"
    assert verdict.hits and all(h.location == "ARGS:id" for h in verdict.hits)
    assert any("\ufffd' UNION" in h.snippet for h in verdict.hits)


@needs_crs
def test_threshold_sets_the_crs_anomaly_threshold() -> None:
    """``threshold`` is the CRS inbound anomaly threshold: 100 lets the same injection pass
    (logged as hits, not blocked)."""
    verdict = ModSecurityEngine(DetectionConfig(engine="modsecurity", threshold=100)).evaluate(request(SQLI_TARGET))
    assert verdict.hits and verdict.block_category is None and verdict.monitor_category is None


@needs_crs
def test_unparsable_json_body_is_uninspectable() -> None:
    """A JSON body ModSecurity cannot parse was not inspected field by field: the verdict says
    so and the stage refuses it with 413, like any request it could not inspect whole."""
    stage = DetectionStage(DetectionConfig(engine="modsecurity"))
    verdict = stage.engine.evaluate(request("/items", b'{"a": ', "application/json"))
    assert verdict.uninspected == "request_body"


# -- through the real gateway ------------------------------------------------------------


def gateway_config(upstream_url: str, enforce: bool) -> dict[str, object]:
    return {
        "access_log": {"path": "access.log"},
        "services": [
            {
                "name": "api",
                "upstream": upstream_url,
                "policies": {"detection": {"engine": "modsecurity", "enforce": enforce, "paranoia": 1}},
                "routes": [{"path": "/", "prefix": True, "public": True}],
            }
        ],
    }


def send(gw: GatewayProcess, method: str, target: str, body: bytes = b"", content_type: str = "") -> RawResponse:
    lines = [f"{method} {target} HTTP/1.1", "Host: api.test", "User-Agent: curl/8.5", "Accept: */*"]
    lines.append("Connection: close")
    if body:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    data = raw_request("127.0.0.1", gw.port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    return parse_one_response(data)[0]


class Upstream(BaseHTTPRequestHandler):
    """Answers 200 ``{"ok":true}`` and records the request targets it received."""

    received: list[str] = []
    lock = threading.Lock()
    url = ""

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        with self.lock:
            self.received.append(self.path)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "11")
        self.end_headers()
        self.wfile.write(b'{"ok":true}')

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        return

    @classmethod
    def targets(cls) -> list[str]:
        with cls.lock:
            return list(cls.received)


@pytest.fixture(scope="module")
def upstream() -> Iterator[type[Upstream]]:
    """The recording upstream on a free loopback port, stopped after the module."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    Upstream.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Upstream
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def blocking(upstream: type[Upstream]) -> Iterator[GatewayProcess]:
    """The gateway with CRS PL1 through ModSecurity in block mode on a catch-all route."""
    with GatewayProcess(gateway_config(upstream.url, True)) as gw:
        yield gw


@needs_crs
def test_gateway_blocks_sqli_in_query(blocking: GatewayProcess, upstream: type[Upstream]) -> None:
    """An SQL injection in a query value gets the usual 403 problem+json, never reaches the
    upstream, and the access log names the CRS rules that matched."""
    reply = send(blocking, "GET", SQLI_TARGET + "&marker=ms-sqli")
    assert reply.status == 403
    assert reply.header("content-type") == "application/problem+json"
    assert reply.json()["detail"] == "The request was blocked by the gateway's attack detection."
    assert not any("ms-sqli" in t for t in upstream.targets())
    record = blocking.wait_for_access_record(lambda r: r.get("status") == 403 and r.get("path") == "/items")
    assert record["blocked_by"] == "detection"
    assert record["decisions"] == [{"stage": "detection", "action": "block", "reason": "detection.sqli"}]
    assert record["detection"]["blocked"] is True
    assert any(h["rule"] == 942100 and h["location"] == "ARGS:id" for h in record["detection"]["hits"])


@needs_crs
def test_gateway_blocks_xss_in_json_body(blocking: GatewayProcess, upstream: type[Upstream]) -> None:
    """A script tag in a JSON field (parsed by ModSecurity's JSON body processor) is blocked
    as XSS before the upstream."""
    body = b'{"comment": "<script>alert(document.cookie)</script>", "marker": "ms-xss"}'
    reply = send(blocking, "POST", "/comments?marker=ms-xss", body, "application/json")
    assert reply.status == 403
    assert not any("ms-xss" in t for t in upstream.targets())
    record = blocking.wait_for_access_record(lambda r: r.get("status") == 403 and r.get("path") == "/comments")
    assert record["decisions"] == [{"stage": "detection", "action": "block", "reason": "detection.xss"}]
    assert any(h["location"] == "ARGS:json.comment" for h in record["detection"]["hits"])


@needs_crs
def test_gateway_forwards_benign_request(blocking: GatewayProcess, upstream: type[Upstream]) -> None:
    """An ordinary search and an ordinary JSON body reach the upstream unchanged."""
    target = "/people?marker=ms-benign&name=Anne+Smith&page=2"
    reply = send(blocking, "GET", target)
    assert reply.status == 200, reply.body
    assert reply.json() == {"ok": True}
    assert target in upstream.targets()
    body = b'{"name": "Anne Smith", "age": 41}'
    reply = send(blocking, "POST", "/people?marker=ms-benign2", body, "application/json")
    assert reply.status == 200, reply.body


@needs_crs
def test_gateway_shadow_mode_forwards_and_logs(upstream: type[Upstream]) -> None:
    """In shadow mode (``enforce: false``) the SQL injection reaches the upstream, and the
    access log records the CRS hits and the decision that would have blocked it."""
    with GatewayProcess(gateway_config(upstream.url, False)) as gw:
        target = SQLI_TARGET + "&marker=ms-mon"
        reply = send(gw, "GET", target)
        assert reply.status == 200
        assert target in upstream.targets()
        record = gw.wait_for_access_record(lambda r: "detection" in r)
        assert record["status"] == 200
        assert "blocked_by" not in record
        assert record["detection"]["blocked"] is False
        assert record["detection"]["category"] == "sqli"
        assert any(h["rule"] == 942100 for h in record["detection"]["hits"])
        assert {"stage": "detection", "action": "monitor", "reason": "detection.sqli"} in record["decisions"]
