"""The closed loop: the vulnerable app alone, then behind Bastion with the policies the scanner's advice names.

The vulnapp runs with every seeded flaw switched on. It is scanned twice with every check (the same
document, the same identities — alice, bob and root through the login flow — destructive checks
included): once directly, once through a real ``bastion serve`` in front of a second, identical
vulnapp. The gateway's configuration is what the checks' advice tells a user to write:

- routes from the API's OpenAPI document (deny by default: undeclared paths 404, methods 405);
- ``policies.auth: {delegate: upstream}``: the vulnapp authenticates its callers itself (login flow, JWTs),
  and Bastion has no authentication method yet; without it every secured operation would answer 401;
- ``listen.tls`` (HTTPS, with HSTS by default) — :data:`GATEWAY_CONFIG`;
- ``listen.limits.max_body_bytes: 65536``;
- ``policies.detection: {paranoia: 1}``;
- ``policies.validation: {strict: true, reject_unknown_query_params: true}`` (``reject_read_only`` is on
  by default);
- the default ``headers`` stage plus ``add_if_missing: {cache-control: no-store}``;
- ``policies.response: {}`` (undeclared response properties filtered, ``never_return`` names removed,
  upstream 5xx bodies masked) and ``policies.cors`` allowing one front-end origin, with credentials;
- ``x-bastion-response: {uniform_failures: ...}`` on the login operation (added to the gateway's copy of the
  document, :func:`gateway_document`): every failed login gets one answer.

Every check ID of the registry is in exactly one of :data:`BLOCKED` (found directly, gone behind
Bastion), :data:`NOT_YET_BLOCKED` (found both ways: no gateway stage covers it yet),
:data:`GATEWAY_GAPS` (found both ways although a stage in the path should cover it; see each reason)
or :data:`NOT_SEEDED` (the vulnapp has no such flaw: found neither way). A check that moves — a
blocked class found again behind Bastion, or a not-yet-blocked one that disappears — fails the test,
so the lists are kept true as gateway stages land.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.certs import generate_self_signed
from bastion.tester.scan.checks.injection import SqlInjection
from bastion.tester.scan.engine import ScanResult, run_scan
from bastion.tester.scan.interface import ScanOptions
from bastion.tester.scan.registry import ALL_CHECKS
from bastion.testing import GatewayProcess
from tests.tester.scan.vulnscan import describe, identities
from tests.tester.vulnapp.server import ALL_FLAWS, serve_vulnapp

#: Found directly, absent behind Bastion: check ID -> the gateway setting that blocks it.
BLOCKED: dict[str, str] = {
    "API2-TOKEN-IN-URL": "validation.reject_unknown_query_params (access_token/token are undeclared)",
    "API2-PASSWORD-NO-OLD": "validation (the document declares old_password required)",
    "API3-MASS-ASSIGNMENT": "validation.reject_read_only (role is readOnly)",
    "API4-UNBOUNDED-PAGE-SIZE": "validation (limit: maximum 100)",
    "API4-LARGE-PAYLOAD": "listen.limits.max_body_bytes (413)",
    "API4-UNBOUNDED-ARRAY": "validation (items: maxItems 20)",
    "API7-SSRF": "detection (category ssrf)",
    "API8-VERBOSE-ERRORS": "validation (wrong-typed parameters and malformed bodies get Bastion's 400)",
    "API8-DEBUG-ENDPOINT": "routes from the OpenAPI document (deny by default: 404)",
    "API8-TRACE-ENABLED": "routes from the OpenAPI document (undeclared method: 405)",
    "API8-PLAIN-HTTP": "listen.tls",
    "API8-SECURITY-HEADERS": "policies.headers on routed responses; Bastion's own problem responses carry them too",
    "API8-NOSQL-INJECTION": "validation (an object where a string is declared)",
    "API2-USER-ENUM": "response (uniform_failures on the login operation: 401 and 404 become one answer)",
    "API3-UNDECLARED-FIELDS": "response (schema: filter removes what the response schema does not declare)",
    "API3-SENSITIVE-DATA": "response (credential-named fields are undeclared, and never_return names go anyway)",
    "API8-CORS-CREDENTIALS": "cors (the origin is not on allow_origins: no CORS header, the API's own dropped)",
    "API8-SQL-INJECTION": "detection refuses the boolean and time payloads; the error probe (a lone quote, legitimate "
                          "text) reaches the upstream, whose 500 traceback the response stage masks",
    "API5-BFLA": "access (operations tagged admin need a consumer with role admin; with authentication delegated "
                 "to the API no request carries one, so they are refused to everyone, 401)",
    "API8-COMMAND-INJECTION": "validation (format hostname) and detection (category cmdi)",
    "API8-PATH-TRAVERSAL": "validation (file-name pattern) and detection (category path_traversal)",
    "API9-OLD-VERSION": "routes from the OpenAPI document (/v1 is not declared: 404)",
    "API9-UNDOCUMENTED-ENDPOINT": "routes from the OpenAPI document (deny by default: 404)",
}

#: Found directly AND behind Bastion, because no gateway stage covers the class yet. This list must shrink as the
#: auth, ratelimit and response stages land: move each ID to BLOCKED when its stage does (the test fails until then).
NOT_YET_BLOCKED: dict[str, str] = {
    "API1-BOLA-READ": "object ownership is the API's to check (auth stage passes the verified user)",
    "API1-BOLA-GUESS": "object ownership is the API's to check",
    "API1-BOLA-WRITE": "object ownership is the API's to check",
    "API1-BOLA-DELETE": "object ownership is the API's to check",
    "API2-NO-AUTH": "an auth stage method (authentication is delegated to the API here)",
    "API2-JWT-NONE": "auth stage (JWT provider)",
    "API2-JWT-WRONG-KEY": "auth stage (JWT provider)",
    "API2-JWT-ALG-SWAP": "auth stage (JWT provider)",
    "API2-JWT-WEAK-SECRET": "auth stage (JWT provider; the secret itself must change)",
    "API2-JWT-EXPIRED": "auth stage (JWT provider)",
    "API2-DEFAULT-CREDS": "the API's accounts (the ratelimit stage slows guessing)",
    "API2-LOGIN-NO-LIMIT": "ratelimit stage on the login route",
    "API2-PASSWORD-OTHER-USER": "object-level authorization is the API's to check (auth stage passes the verified "
                                "user); the request itself is valid",
    "API4-NO-RATE-LIMIT": "ratelimit stage",
}

#: Found directly AND behind Bastion although the configured stages are meant to cover the class: gaps in the
#: gateway, reported to its owners. Each entry says exactly what still gets through (asserted below).
GATEWAY_GAPS: dict[str, str] = {}

#: The vulnapp seeds no such flaw: found neither directly nor behind Bastion (so the gateway adds no false finding).
NOT_SEEDED: frozenset[str] = frozenset({
    "API1-BOLA-BODY-REF",  # seeded in the library app (tests/tester/scan/test_safety.py)
    "API2-INVALID-TOKEN",
    "API4-REGEX-DOS",
    "API5-METHOD-SWITCH",
    "API5-ROLE-CHANGE",  # seeded in the library app
    "API8-CORS-REFLECT",
    "API8-REVEALING-HEADERS",  # seeded in the library app instead (tests/tester/scan/test_safety.py)
    "API9-SPEC-MISMATCH",
})

#: The one front-end origin the CORS policy allows (the scanner's probe comes from another).
APP_ORIGIN = "https://app.vulnapp.test"

#: The body limit the advice recommends for this API (the vulnapp itself refuses more than 64 KiB when secure).
MAX_BODY = 64 * 1024


def gateway_config(upstream: str, cert: Path, key: Path) -> dict[str, Any]:
    """bastion.yaml as the scanner's advice describes it, for the vulnapp at ``upstream``."""
    return {
        "listen": {"tls": {"cert": str(cert), "key": str(key)}, "limits": {"max_body_bytes": MAX_BODY}},
        "access_log": {"path": "access.log"},
        "policies": {
            # The vulnapp authenticates requests itself; nothing in Bastion can verify its tokens yet.
            "auth": {"delegate": "upstream"},
            "detection": {"paranoia": 1},
            "validation": {"strict": True, "reject_unknown_query_params": True},
            "headers": {"add_if_missing": {"cache-control": "no-store"}},
            "response": {},
            "cors": {"allow_origins": [APP_ORIGIN], "allow_credentials": True},
        },
        "services": [{"name": "vulnapp", "upstream": upstream, "openapi": "openapi.yaml"}],
    }


def gateway_document(spec: Path) -> str:
    """The API's document as the gateway gets it: the login operation marked for uniform failures."""
    doc = yaml.safe_load(spec.read_text(encoding="utf-8"))
    doc["paths"]["/auth/login"]["post"]["x-bastion-response"] = {
        "uniform_failures": {"status": 401, "body": {"title": "Unauthorized", "detail": "Wrong username or password."},
                             "headers": {"content-type": "application/problem+json"}}}
    return str(yaml.safe_dump(doc, sort_keys=False))


def scan(base_url: str, spec: Path, ca_file: Path | None) -> ScanResult:
    """Every check, with alice, bob and root logging in, destructive checks included, at a high rate."""
    options = ScanOptions(base_url=base_url, max_rps=500.0, timeout=8.0, allow_destructive=True,
                          ca_file=str(ca_file) if ca_file else None, max_retry_wait=12.0)
    return run_scan(spec, options, identities(users=2, admin=True), ALL_CHECKS)


@dataclass(frozen=True)
class Loop:
    direct: ScanResult
    behind: ScanResult
    gateway: GatewayProcess
    #: The gateway's certificate (the scan trusts it) and base URL; the bare vulnapp's base URL.
    ca_file: Path
    base_url: str
    direct_url: str


def _start(gateway: GatewayProcess, failure: list[BaseException]) -> None:
    try:
        gateway.start()
    except BaseException as exc:  # reported by the fixture's thread join
        failure.append(exc)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    """Both scans, once for the module. The gateway (whose detection stage takes a while to compile) starts in
    the background while the direct scan runs."""
    folder = tmp_path_factory.mktemp("closed-loop")
    cert, key = folder / "gateway.pem", folder / "gateway.key"
    generate_self_signed(cert, key, hosts=["127.0.0.1", "localhost"])
    with serve_vulnapp(ALL_FLAWS) as direct_app, serve_vulnapp(ALL_FLAWS) as upstream:
        (folder / "gateway").mkdir()
        gateway = GatewayProcess(gateway_config(upstream.origin, cert, key), folder=folder / "gateway",
                                 files={"openapi.yaml": gateway_document(upstream.spec_path)},
                                 ready_timeout=120.0)
        failure: list[BaseException] = []
        starter = threading.Thread(target=_start, args=(gateway, failure), daemon=True)
        starter.start()
        try:
            try:
                direct = scan(direct_app.base_url, direct_app.spec_path, None)
            finally:
                starter.join()
            if failure:
                raise failure[0]
            base_url = gateway.url + "/v2"
            behind = scan(base_url, upstream.spec_path, cert)
            yield Loop(direct, behind, gateway, cert, base_url, direct_app.base_url)
        finally:
            gateway.stop()


def ids(result: ScanResult) -> set[str]:
    """The checks that found something (folded proofs of one root cause included)."""
    return {f.check.id for f in result.every_finding}


def test_every_check_is_in_exactly_one_list() -> None:
    """BLOCKED, NOT_YET_BLOCKED, GATEWAY_GAPS and NOT_SEEDED partition the registry's check IDs."""
    lists = [set(BLOCKED), set(NOT_YET_BLOCKED), set(GATEWAY_GAPS), set(NOT_SEEDED)]
    registry = {c.info.id for c in ALL_CHECKS}
    assert set().union(*lists) == registry
    assert sum(len(ids_) for ids_ in lists) == len(registry)


def test_both_scans_ran_every_check(loop: Loop) -> None:
    """Both scans logged all three identities in (through the gateway too) and ran every check without a
    failure, so an absent finding is a result, not a crash."""
    for result in (loop.direct, loop.behind):
        assert result.identities == ["alice", "bob", "root"]
        assert {c.id for c in result.ran} == {c.info.id for c in ALL_CHECKS}
        failed = [s for s in result.skips if s.reason.startswith("the check failed")]
        assert failed == [], describe(result)


def test_blocked_classes_disappear_behind_bastion(loop: Loop) -> None:
    """Every class the gateway blocks today is found on the bare vulnapp and not through Bastion."""
    assert set(BLOCKED) <= ids(loop.direct), describe(loop.direct)
    assert not set(BLOCKED) & ids(loop.behind), describe(loop.behind)


def test_not_yet_blocked_classes_are_still_found(loop: Loop) -> None:
    """Classes no gateway stage covers yet are found both ways. When one disappears behind Bastion, a stage
    started blocking it: move it to BLOCKED."""
    expected = set(NOT_YET_BLOCKED) | set(GATEWAY_GAPS)
    assert expected <= ids(loop.direct), describe(loop.direct)
    assert expected <= ids(loop.behind), describe(loop.behind)


def test_nothing_unexpected_either_way(loop: Loop) -> None:
    """Neither scan reports a check outside its lists, and the checks for flaws the vulnapp does not seed stay
    silent behind Bastion too: the gateway's own refusals are never mistaken for a vulnerability."""
    assert ids(loop.direct) == set(BLOCKED) | set(NOT_YET_BLOCKED) | set(GATEWAY_GAPS), describe(loop.direct)
    assert ids(loop.behind) == set(NOT_YET_BLOCKED) | set(GATEWAY_GAPS), describe(loop.behind)


def test_the_sql_error_probe_meets_a_masked_error(loop: Loop) -> None:
    """Behind Bastion the error-based SQL probe (a lone quote, which detection rightly lets through) still makes
    the upstream fail, but the client gets problem+json with the request ID: no SQL finding. The traceback is in
    the access record only (``response.masked``)."""
    assert not [f for f in loop.behind.findings if f.check.id == "API8-SQL-INJECTION"], describe(loop.behind)
    masked = [r for r in loop.gateway.access_log_records()
              if r.get("path") == "/v2/products" and r.get("status") == 500 and "masked" in r.get("response", {})]
    assert masked and any("sqlite3" in str(r["response"]["masked"].get("body", "")) for r in masked)


def test_sql_exploitation_is_blocked(loop: Loop) -> None:
    """With only the boolean- and time-based SQL techniques, the bare vulnapp is found injectable and, through
    Bastion, nothing is: the tautologies (including pairs closing a LIKE pattern, `x%' OR 'b%'='b`) and the
    sleep payloads are refused by detection (403, logged as sqli on GET /v2/products)."""
    spec = Path(loop.direct.spec_file)
    check = [SqlInjection(techniques=("boolean", "time"))]
    direct = run_scan(spec, ScanOptions(base_url=loop.direct_url, max_rps=500.0, timeout=8.0),
                      identities(users=1), check)
    assert [f.target for f in direct.findings] == ["GET /products"], describe(direct)
    options = ScanOptions(base_url=loop.base_url, max_rps=500.0, timeout=8.0, ca_file=str(loop.ca_file))
    behind = run_scan(spec, options, identities(users=1), check)
    assert behind.findings == [], describe(behind)
    assert any(r.get("blocked_by") == "detection" and r.get("detection", {}).get("category") == "sqli"
               and r["path"] == "/v2/products" for r in loop.gateway.access_log_records())


def test_access_log_records_the_blocks(loop: Loop) -> None:
    """The gateway's access log names the stage and reason of each class it blocked: detection (sqli, cmdi,
    ssrf, path traversal), validation (unknown query parameter, read-only property, out-of-range query), the
    body limit, undeclared paths (debug, shadow and old-version endpoints) and TRACE."""
    records = loop.gateway.access_log_records()
    reasons = {(r.get("blocked_by"), r.get("reason") or ",".join(d["reason"] for d in r.get("decisions", [])))
               for r in records if r.get("blocked_by")}
    assert {
        ("detection", "detection.sqli"),
        ("detection", "detection.cmdi"),
        ("detection", "detection.ssrf"),
        ("detection", "detection.path_traversal"),
        ("validation", "validation.unknown_query"),
        ("validation", "validation.body"),
        ("validation", "validation.query"),
        ("validation", "validation.json"),
        ("core", "http.body_too_large"),
        ("core", "route.not_found"),
        ("core", "route.method_not_allowed"),
    } <= reasons, sorted(reasons)
    refused = {(r["method"], r["path"], r["status"]) for r in records if r.get("blocked_by") == "core"}
    assert {("GET", "/debug/vars", 404), ("GET", "/v2/internal/export", 404), ("GET", "/v1/orders", 404)} <= refused
    assert any(m == "TRACE" and s == 405 for m, _, s in refused), sorted(refused)
    read_only = [r for r in records if r.get("blocked_by") == "validation" and r["method"] == "PATCH"
                 and any("read-only" in v.get("rule", "") for v in r.get("validation", []))]
    assert read_only, "no read-only refusal of PATCH /v2/users/me was logged"
    ssrf = [r for r in records if r.get("detection", {}).get("category") == "ssrf"]
    assert ssrf and all(r["status"] == 403 and r["path"] == "/v2/webhooks/test" for r in ssrf)
