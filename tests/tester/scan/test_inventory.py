"""API9 checks against the vulnapp: old versions, undocumented endpoints, spec/server mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.tester.scan.checks.inventory import CHECKS, SpecMismatch, sibling_versions
from bastion.tester.scan.engine import run_scan
from bastion.tester.scan.interface import ScanOptions
from tests.tester.scan.servers import serve
from tests.tester.scan.vulnscan import describe, identities, scan_vulnapp, targets
from tests.tester.vulnapp.server import serve_vulnapp


@pytest.mark.parametrize(
    ("flaw", "expected"),
    [
        ("old_version", {("API9-OLD-VERSION", "/v1")}),
        ("shadow_endpoint", {("API9-UNDOCUMENTED-ENDPOINT", "GET /v2/internal/export")}),
    ],
)
def test_each_flaw_is_found_and_nothing_else(flaw: str, expected: set[tuple[str, str]]) -> None:
    """With one API9 switch on, the matching check reports exactly its seeded flaw and the others nothing."""
    result = scan_vulnapp({flaw}, CHECKS)
    assert targets(result) == expected, describe(result)
    assert all(f.evidence and f.evidence[0].status == 200 for f in result.findings)


def test_secure_app_has_no_inventory_findings() -> None:
    """With every switch off (over TLS), other versions and common internal paths answer 404 and every declared
    operation is served: no finding."""
    result = scan_vulnapp((), CHECKS, tls=True)
    assert result.findings == [], describe(result)


def test_declared_operation_the_server_lacks_is_a_mismatch(tmp_path: Path) -> None:
    """An operation added to the document that the server does not serve (404 on a path without parameters,
    twice) is reported as a spec/server mismatch; the served operations are not."""
    with serve_vulnapp() as app:
        spec = yaml.safe_load(app.spec_path.read_text())
        spec["paths"]["/coupons"] = {"get": {"operationId": "listCoupons", "summary": "Coupons",
                                             "responses": {"200": {"description": "The coupons."}}}}
        path = tmp_path / "openapi.json"
        path.write_text(json.dumps(spec))
        options = ScanOptions(base_url=app.base_url, max_rps=500.0, timeout=8.0)
        result = run_scan(path, options, identities(), [SpecMismatch()])
    assert targets(result) == {("API9-SPEC-MISMATCH", "GET /coupons")}, describe(result)
    assert "answers 404 (twice)" in result.findings[0].message


@pytest.mark.parametrize(
    ("base", "siblings"),
    [
        ("/v2", ["/v1", "/v0", "/v3"]),
        ("/api/v1", ["/api/v0", "/api/v2"]),
        ("/api/v2.1/shop", ["/api/v2/shop", "/api/v1/shop", "/api/v0/shop", "/api/v3/shop"]),
        ("/api", []),
        ("", []),
    ],
)
def test_sibling_versions(base: str, siblings: list[str]) -> None:
    """The version segment of the base path is replaced by its neighbours (lower ones first, then the next)."""
    assert sibling_versions(base) == siblings


@pytest.mark.parametrize("old_still_served", [True, False])
def test_versions_in_the_paths_first_segment_are_tried_too(tmp_path: Path, old_still_served: bool) -> None:
    """The server URL has no version but the paths start with `/v2`, and `/v1/legacy` is documented: the v2
    GET paths are tried under `/v1` and `/v3` (not the documented `/v1/legacy`). An API still serving the
    undocumented `/v1/things` is found; one that does not yields nothing. Before, the check skipped: "the base
    path '/' has no version segment"."""

    async def things(request: Request) -> Response:
        return JSONResponse({"data": [{"id": 1, "name": "one"}]})

    routes = [Route("/v2/things", things), Route("/v1/legacy", things)]
    if old_still_served:
        routes.append(Route("/v1/things", things))
    spec = tmp_path / "openapi.yaml"
    spec.write_text("openapi: 3.1.0\ninfo: {title: t, version: '2'}\npaths:\n"
                    "  /v2/things:\n    get:\n      security: []\n      responses: {'200': {description: ok}}\n"
                    "  /v1/legacy:\n    get:\n      security: []\n      deprecated: true\n"
                    "      responses: {'200': {description: ok}}\n", encoding="utf-8")
    with serve(Starlette(routes=routes)) as origin:
        result = run_scan(spec, ScanOptions(base_url=origin, max_rps=300), [], checks=[CHECKS[0]])
    assert result.skips == []
    assert [(f.check.id, f.target) for f in result.findings] == (
        [("API9-OLD-VERSION", "/v1")] if old_still_served else []), describe(result)
