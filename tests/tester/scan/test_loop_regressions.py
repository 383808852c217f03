"""Scanner fixes found by the closed loop (test_closed_loop.py), each with its own small test.

- Behind a validating gateway a refusal of an invalid probe must not hide a flaw: the CORS probe
  is a valid request. The app here behaves like an API behind Bastion: a request missing a
  required query parameter is refused with 400 before anything else runs (as Bastion's
  validation stage does), so only a valid request reaches the API's own behaviour.
- Injection checks with ``--allow-destructive`` never probe a password-change operation: each probe
  would set the scan user's password to a payload, locking the identity out of later scans.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.tester.scan.checks.injection import CommandInjection, NoSqlInjection, SqlInjection
from bastion.tester.scan.checks.misconfig import EVIL_ORIGIN, CorsCredentials, CorsReflect
from bastion.tester.scan.engine import run_scan
from bastion.tester.scan.interface import ScanOptions
from tests.tester.scan.servers import serve
from tests.tester.scan.vulnscan import USERS, describe, scan_app
from tests.tester.vulnapp.server import serve_vulnapp

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "cors behind a gateway", "version": "1"},
    "servers": [{"url": "/api"}],
    "paths": {"/files": {"get": {"operationId": "getFile", "security": [], "parameters": [
        {"name": "name", "in": "query", "required": True, "schema": {"type": "string", "example": "a.txt"}}],
        "responses": {"200": {"description": "ok"}}}}},
}


def gated_app(reflect: bool) -> Starlette:
    """GET /api/files: 400 without CORS headers when ``name`` is missing (the gateway's refusal);
    otherwise 200, reflecting any Origin with credentials when ``reflect``."""

    async def files(request: Request) -> Response:
        if "name" not in request.query_params:
            return JSONResponse({"title": "Bad Request", "status": 400}, 400, media_type="application/problem+json")
        headers: dict[str, str] = {}
        origin = request.headers.get("origin")
        if reflect and origin:
            headers = {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true"}
        return JSONResponse({"name": request.query_params["name"]}, headers=headers)

    return Starlette(routes=[Route("/api/files", files, methods=["GET"])])


def test_cors_probe_is_a_valid_request(tmp_path: Path) -> None:
    """The CORS checks send the operation's required query parameters, so an API (or a gateway in front of it)
    that refuses incomplete requests before its CORS layer still shows the reflection; a non-reflecting API
    behind the same refusal gives no finding."""
    spec = tmp_path / "openapi.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    with serve(gated_app(reflect=True)) as origin:
        result = run_scan(spec, ScanOptions(base_url=f"{origin}/api", max_rps=500.0, timeout=5.0),
                          checks=[CorsCredentials(), CorsReflect()])
    assert [(f.check.id, f.target) for f in result.findings] == [("API8-CORS-CREDENTIALS", "GET /files")]
    evidence = result.findings[0].evidence[0]
    assert "name=a.txt" in evidence.url
    assert evidence.header("access-control-allow-origin") == EVIL_ORIGIN
    with serve(gated_app(reflect=False)) as origin:
        result = run_scan(spec, ScanOptions(base_url=f"{origin}/api", max_rps=500.0, timeout=5.0),
                          checks=[CorsCredentials(), CorsReflect()])
    assert result.findings == []


def test_injection_leaves_passwords_alone() -> None:
    """With --allow-destructive and the vulnapp's password change accepting any body, the injection checks still
    find the seeded injections but send nothing to PUT /users/me/password, so every user can log in afterwards."""
    with serve_vulnapp({"password_change_no_old", "sqli", "nosqli", "login_no_rate_limit", "no_rate_limit"}) as app:
        checks = [SqlInjection(techniques=("error", "boolean")), NoSqlInjection(), CommandInjection()]
        result = scan_app(app, checks, users=2, allow_destructive=True)
        assert {f.check.id for f in result.findings} == {"API8-SQL-INJECTION", "API8-NOSQL-INJECTION"}, \
            describe(result)
        for name, password in USERS:
            answer = httpx.post(f"{app.base_url}/auth/login", json={"username": name, "password": password})
            assert answer.status_code == 200, (name, answer.text)
