"""The scan engine: samples, identities, scope, rate limit, 429 handling, caps, discovery, canary."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bastion.config import ConfigError
from bastion.config.yamlsrc import parse_source
from bastion.tester.audit import Spec
from bastion.tester.audit.interface import Severity
from bastion.tester.scan.engine import ScanError, run_scan
from bastion.tester.scan.identities import IdentityConfig, LoginFlow, identity_from_headers, load_identities
from bastion.tester.scan.interface import Check, CheckInfo, RequestPlan, ScanContext, ScanFinding, ScanOptions, Skip
from bastion.tester.scan.objects import remove_dot_segments
from bastion.tester.scan.samples import sample_value
from tests.tester.scan.servers import serve

USERS = {"alice": "pw-a", "bob": "pw-b"}


def mini_app() -> Starlette:
    """Login, per-user orders, a throttled route and an off-site redirect."""
    orders: dict[int, dict[str, Any]] = {}
    counter = itertools.count(1)
    throttled = {"n": 0}

    def who(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[len("Bearer tok-"):] if auth.startswith("Bearer tok-") else None

    async def login(request: Request) -> Response:
        body = await request.json()
        if USERS.get(body.get("username")) == body.get("password"):
            return JSONResponse({"access_token": f"tok-{body['username']}", "token_type": "bearer"})
        return JSONResponse({"detail": "bad credentials"}, 401)

    async def create(request: Request) -> Response:
        user = who(request)
        if user is None:
            return JSONResponse({}, 401)
        oid = next(counter)
        orders[oid] = {"id": oid, "owner": user, **(await request.json())}
        return JSONResponse(orders[oid], 201)

    async def read(request: Request) -> Response:
        user = who(request)
        order = orders.get(int(request.path_params["orderId"]))
        if user is None:
            return JSONResponse({}, 401)
        if order is None or order["owner"] != user:
            return JSONResponse({}, 404)
        return JSONResponse(order)

    async def limited(request: Request) -> Response:
        throttled["n"] += 1
        if throttled["n"] % 2 == 1:
            return JSONResponse({}, 429, headers={"Retry-After": "1"})
        return JSONResponse({"ok": True})

    async def away(request: Request) -> Response:
        return RedirectResponse("http://example.invalid/elsewhere", 302)

    async def echo(request: Request) -> Response:
        return JSONResponse({"path": request.url.path, "query": str(request.url.query)})

    return Starlette(routes=[
        Route("/api/login", login, methods=["POST"]),
        Route("/api/orders", create, methods=["POST"]),
        Route("/api/orders/{orderId}", read, methods=["GET"]),
        Route("/api/limited", limited),
        Route("/api/away", away),
        Route("/{rest:path}", echo),
    ])


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "mini", "version": "1"},
    "servers": [{"url": "/api"}],
    "security": [{"bearer": []}],
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/login": {"post": {"operationId": "login", "security": [], "requestBody": {"content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "username": {"type": "string"}, "password": {"type": "string"}}}}}},
            "responses": {"200": {"description": "ok"}}}},
        "/orders": {"post": {"operationId": "createOrder", "requestBody": {"content": {"application/json": {
            "schema": {"type": "object", "required": ["item"], "properties": {
                "id": {"type": "integer", "readOnly": True},
                "item": {"type": "string", "minLength": 3, "maxLength": 10},
                "quantity": {"type": "integer", "minimum": 5, "maximum": 9}}}}}},
            "responses": {"201": {"description": "created"}}}},
        "/orders/{orderId}": {"get": {"operationId": "getOrder", "parameters": [
            {"name": "orderId", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "ok"}}},
            "delete": {"operationId": "deleteOrder", "parameters": [
                {"name": "orderId", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"204": {"description": "gone"}}}},
        "/users/me/password": {"put": {"operationId": "changePassword", "responses": {"204": {"description": "ok"}}}},
    },
}


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with serve(mini_app()) as url:
        yield url


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "openapi.yaml"
    path.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    return path


def login_identity(name: str) -> IdentityConfig:
    return IdentityConfig(name, login=LoginFlow("login", {"username": name, "password": USERS[name]}))


class Probe(Check):
    """A check that runs a coroutine against the context and records what it returns."""

    def __init__(self, body: Any, **extra: Any) -> None:
        self.info = CheckInfo(id=f"TEST-{id(self)}", title="probe", category="API8:2023", cwe=16,
                              severity=Severity.LOW, phase="misconfiguration", checks="test", advice="none", **extra)
        self.body = body
        self.result: Any = None

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        self.result = await self.body(ctx, self.info)
        return []


def scan_with(spec_path: Path, origin: str, body: Any, *, users: tuple[str, ...] = ("alice", "bob"),
              **options: Any) -> tuple[Probe, Any]:
    probe = Probe(body)
    opts = ScanOptions(base_url=origin + "/api", max_rps=200, timeout=5, **options)
    result = run_scan(spec_path, opts, [login_identity(u) for u in users], checks=[probe])
    return probe, result


def test_samples_follow_formats_bounds_and_read_only() -> None:
    """Generated values honour format, bounds, lengths, simple patterns and enums; readOnly is left out."""
    spec = Spec(parse_source("openapi: 3.1.0", "x"))
    schema = {"type": "object", "properties": {
        "id": {"type": "string", "format": "uuid", "readOnly": True},
        "email": {"type": "string", "format": "email"},
        "when": {"type": "string", "format": "date-time"},
        "site": {"type": "string", "format": "uri"},
        "count": {"type": "integer", "minimum": 10, "maximum": 20},
        "ratio": {"type": "number", "exclusiveMaximum": 1, "minimum": 0.5},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "name": {"type": "string", "minLength": 8, "maxLength": 9},
        "kind": {"enum": ["a", "b"]},
        "tags": {"type": "array", "items": {"type": "string", "format": "uuid"}, "minItems": 2},
    }}
    value = sample_value(spec, schema)
    assert "id" not in value
    assert value["email"] == "scanner@example.com"
    assert value["when"].endswith("Z") and value["site"].startswith("https://example.com")
    assert value["count"] == 10 and 0.5 <= value["ratio"] < 1
    assert value["code"] == "AAA"
    assert 8 <= len(value["name"]) <= 9
    assert value["kind"] == "a" and len(value["tags"]) == 2


def test_dot_segments_never_climb_above_the_origin() -> None:
    """Paths are normalised once, so '/v2/../debug' reaches '/debug' and extra '..' stop at the root."""
    assert remove_dot_segments("/v2/../debug/vars") == "/debug/vars"
    assert remove_dot_segments("/v2/../../../etc") == "/etc"
    assert remove_dot_segments("/a/./b/") == "/a/b/"


def test_login_discovery_and_plans(spec_path: Path, origin: str) -> None:
    """Login flows yield bearer tokens; discovery records each user's own order; plans reuse its ID and a
    valid body; destructive operations are out of scope by default."""

    async def body(ctx: ScanContext, info: CheckInfo) -> Any:
        alice, bob = ctx.users
        get = next(op for op in ctx.operations() if op.node.get("operationId") == "getOrder")
        create = next(op for op in ctx.operations() if op.node.get("operationId") == "createOrder")
        plan = ctx.plan(get, alice)
        mine = await ctx.send(plan, alice, check=info)
        theirs = await ctx.send(plan, bob, check=info)
        return {
            "tokens": (alice.token, bob.token),
            "created": (ctx.created(alice), ctx.created(bob)),
            "mine": mine.status, "theirs": theirs.status,
            "body": ctx.plan(create, alice).json,
            "ops": sorted(op.label for op in ctx.operations()),
        }

    probe, result = scan_with(spec_path, origin, body)
    data = probe.result
    assert data["tokens"] == ("tok-alice", "tok-bob")
    (a_objs, b_objs) = data["created"]
    assert len(a_objs) == 1 and len(b_objs) == 1
    assert a_objs[0][1] != b_objs[0][1] and a_objs[0][0].template == "/orders/{orderId}"
    assert (data["mine"], data["theirs"]) == (200, 404)
    assert data["body"] == {"item": "item", "quantity": 5}
    assert "DELETE /orders/{orderId}" not in data["ops"] and "PUT /users/me/password" not in data["ops"]
    assert result.identities == ["alice", "bob"] and result.secrets["tok-alice"] == "$ALICE_TOKEN"


def test_scope_redirects_and_dot_segments(spec_path: Path, origin: str) -> None:
    """Other origins are refused without sending; redirects are returned, not followed; raw paths resolve
    against the base URL with dot segments removed."""

    async def body(ctx: ScanContext, info: CheckInfo) -> Any:
        outside = await ctx.raw("GET", "http://127.0.0.2:1/x", ctx.anonymous, check=info)
        redirect = await ctx.raw("GET", "/away", ctx.anonymous, check=info)
        climbed = await ctx.raw("GET", "/../debug/vars", ctx.anonymous, query=[("a", "1")], check=info)
        absolute = await ctx.raw("GET", ctx.origin + "/v1/products", ctx.anonymous, check=info)
        return outside, redirect, climbed, absolute

    probe, _ = scan_with(spec_path, origin, body, users=())
    outside, redirect, climbed, absolute = probe.result
    assert outside.status == 0 and outside.error is not None and "out of scope" in outside.error
    assert redirect.status == 302 and redirect.header("location") == "http://example.invalid/elsewhere"
    assert climbed.json() == {"path": "/debug/vars", "query": "a=1"}
    assert absolute.json()["path"] == "/v1/products"


def test_429_is_waited_out_unless_asked_not_to(spec_path: Path, origin: str) -> None:
    """A 429 with Retry-After: 1 is waited for and retried; retry_429=False returns it."""

    async def body(ctx: ScanContext, info: CheckInfo) -> Any:
        started = time.monotonic()
        retried = await ctx.raw("GET", "/limited", ctx.anonymous, check=info)
        waited = time.monotonic() - started
        seen = await ctx.raw("GET", "/limited", ctx.anonymous, check=info, retry_429=False)
        return retried.status, waited, seen.status

    probe, _ = scan_with(spec_path, origin, body, users=())
    status, waited, seen = probe.result
    assert status == 200 and waited >= 0.9
    assert seen == 429


def test_rate_limit_and_request_cap(spec_path: Path, origin: str) -> None:
    """max_rps spaces requests out (a token bucket of max_rps tokens); the per-check cap stops a check without
    sending."""

    async def body(ctx: ScanContext, info: CheckInfo) -> Any:
        started = time.monotonic()
        answers = [await ctx.raw("GET", "/x", ctx.anonymous, check=info) for _ in range(12)]
        return time.monotonic() - started, [a.status for a in answers], answers[-1].error

    probe = Probe(body)
    opts = ScanOptions(base_url=origin + "/api", max_rps=10, max_requests_per_check=10, timeout=5)
    result = run_scan(spec_path, opts, [], checks=[probe])
    _, statuses, error = probe.result
    assert statuses == [200] * 10 + [0, 0]
    assert error is not None and "cap" in error
    assert result.exchanges == 11  # the reachability probe before the checks, then the check's 10

    probe = Probe(body)
    opts = ScanOptions(base_url=origin + "/api", max_rps=4, max_requests_per_check=12, timeout=5)
    run_scan(spec_path, opts, [], checks=[probe])
    assert probe.result[0] >= (12 - 4) / 4 - 0.1


def test_unthrottled_burst_is_capped_scoped_and_noted(spec_path: Path, origin: str) -> None:
    """``send(..., unthrottled=True)`` skips the --max-rps token bucket for at most 100 requests per check (100
    requests at max_rps 2 would take 50 s; they take a few), later ones wait for the bucket again, a URL on
    another origin is still refused without sending, and the scan result notes the burst."""

    async def body(ctx: ScanContext, info: CheckInfo) -> Any:
        plan = RequestPlan(None, "GET", "/x")
        started = time.monotonic()
        fast = []
        for _ in range(5):
            fast += await asyncio.gather(*(ctx.send(plan, ctx.anonymous, check=info, unthrottled=True)
                                           for _ in range(20)))
        fast_took = time.monotonic() - started
        await asyncio.sleep(1.0)  # the bucket (2 tokens) is full again
        started = time.monotonic()
        slow = [await ctx.send(plan, ctx.anonymous, check=info, unthrottled=True) for _ in range(4)]
        slow_took = time.monotonic() - started
        outside = await ctx.send(RequestPlan(None, "GET", "http://127.0.0.2:1/x"), ctx.anonymous, check=info,
                                 unthrottled=True)
        return fast_took, slow_took, [a.status for a in [*fast, *slow]], outside

    probe = Probe(body)
    result = run_scan(spec_path, ScanOptions(base_url=origin + "/api", max_rps=2, timeout=5), [], checks=[probe])
    fast_took, slow_took, statuses, outside = probe.result
    assert statuses == [200] * 104
    assert fast_took < 15.0
    assert slow_took >= 0.9  # two tokens at once, then one every 0.5 s
    assert outside.status == 0 and outside.error is not None and "out of scope" in outside.error
    assert result.notes == [f"{probe.info.id}: burst of 100 requests at full speed (outside --max-rps 2)"]
    assert result.exchanges == 105  # the reachability probe, then 104 (the refused one was never sent)


def test_canary_listener_counts_hits(spec_path: Path, origin: str) -> None:
    """The canary listens on 127.0.0.1 and counts requests per token."""

    async def body(ctx: ScanContext, info: CheckInfo) -> Any:
        url = ctx.canary_url("tok123")
        assert url is not None and url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient() as client:
            await client.get(url + "/anything?x=1")
            await client.get(url)
        await asyncio.sleep(0.05)
        return ctx.canary_hits("tok123"), ctx.canary_hits("other")

    probe, _ = scan_with(spec_path, origin, body, users=())
    assert probe.result == (2, 0)


def test_skips_carry_reasons(spec_path: Path, origin: str) -> None:
    """Checks needing more users, an admin or --allow-destructive are skipped with the reason; a failing check
    is reported as skipped with its error, not dropped."""

    async def boom(ctx: ScanContext, info: CheckInfo) -> Any:
        raise RuntimeError("kaput")

    checks = [Probe(boom), Probe(boom, destructive=True), Probe(boom, needs_users=3), Probe(boom, needs_admin=True)]
    opts = ScanOptions(base_url=origin + "/api", max_rps=200)
    result = run_scan(spec_path, opts, [login_identity("alice")], checks=checks)
    reasons = [s.reason for s in result.skips]
    assert "the check failed: RuntimeError: kaput" in reasons
    assert any("--allow-destructive" in r for r in reasons)
    assert any("needs 3 user identities" in r for r in reasons)
    assert any("admin identity" in r for r in reasons)
    assert not result.findings


def test_failed_login_is_a_scan_error(spec_path: Path, origin: str) -> None:
    """A login flow that is refused stops the scan with a message naming the identity, the status and what the
    API answered; an unreachable URL stops it before any check."""
    with pytest.raises(ScanError, match=r"cannot reach http://127.0.0.1:9/api: ConnectError"):
        run_scan(spec_path, ScanOptions(base_url="http://127.0.0.1:9/api", max_rps=200), [], checks=[])
    bad = IdentityConfig("mallory", login=LoginFlow("POST /login", {"username": "alice", "password": "nope"}))
    refused = r'identity mallory: login with POST /login failed \(HTTP 401: \{"detail":"bad credentials"\}\)'
    with pytest.raises(ScanError, match=refused):
        run_scan(spec_path, ScanOptions(base_url=origin + "/api", max_rps=200), [bad], checks=[])
    missing = IdentityConfig("x", login=LoginFlow("nosuchop", {}))
    with pytest.raises(ScanError, match="'nosuchop' is not in the OpenAPI document"):
        run_scan(spec_path, ScanOptions(base_url=origin + "/api", max_rps=200), [missing], checks=[])


def test_identities_file_expands_env_and_reports_precise_errors(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The identities file expands ${ENV}; each problem names the file, line and field."""
    monkeypatch.setenv("ALICE_PW", "s3cret")
    good = tmp_path / "ids.yaml"
    good.write_text(
        "identities:\n"
        "  - name: alice\n"
        "    login: {operation: login, body: {username: alice, password: '${ALICE_PW}'}, token: /access_token}\n"
        "  - name: root\n"
        "    role: admin\n"
        "    headers: {Authorization: Bearer abc}\n",
        encoding="utf-8",
    )
    alice, root = load_identities(good)
    assert alice.login is not None and alice.login.body["password"] == "s3cret"
    assert root.role == "admin" and root.headers == {"Authorization": "Bearer abc"}

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "identities:\n"
        "  - name: alice\n"
        "    role: boss\n"
        "  - name: bob\n"
        "    login: {operation: login, token: access_token}\n"
        "  - name: carol\n"
        "    colour: blue\n"
        "    headers: {X-Key: k}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_identities(bad)
    messages = [str(i) for i in info.value.issues]
    assert any(m.startswith(f"{bad}:3: identities[0].role: expected user or admin") for m in messages)
    assert any(m.startswith(f"{bad}:5: identities[1].login.token: expected a JSON pointer") for m in messages)
    assert any(m.startswith(f"{bad}:7: identities[2].colour: unknown field") for m in messages)

    assert identity_from_headers(["Authorization: Bearer x", "X-K: v"]).headers == {
        "Authorization": "Bearer x", "X-K": "v"}
    with pytest.raises(ValueError, match="expected 'Name: value'"):
        identity_from_headers(["no colon"])


def test_a_login_flow_may_take_its_token_from_a_cookie(tmp_path: Path) -> None:
    """``cookie:`` in a login flow names the cookie the login answer sets; a value that cannot be a cookie name
    is refused with the file, line and field."""
    ids = tmp_path / "ids.yaml"
    ids.write_text(
        "identities:\n"
        "  - name: alice\n"
        "    login: {operation: login, body: {username: a, password: p}, cookie: mkt_session}\n"
        "  - name: bob\n"
        "    login: {operation: login, body: {username: b, password: p}, cookie: 'two words'}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_identities(ids)
    assert [str(i) for i in info.value.issues] == [
        f"{ids}:5: identities[1].login.cookie: expected a cookie name (the cookie the login answer sets)"]
    ids.write_text("identities:\n  - name: alice\n"
                   "    login: {operation: login, body: {username: a, password: p}, cookie: mkt_session}\n",
                   encoding="utf-8")
    [alice] = load_identities(ids)
    assert alice.login is not None and alice.login.cookie == "mkt_session"


def test_findings_with_one_root_cause_are_one_finding() -> None:
    """A token accepted with any signature explains the unsigned and algorithm-swapped ones: they are folded into
    the root finding as its proofs (the one on the same target when there are several), the root's message names
    them, and findings without a root are left alone."""
    from bastion.tester.scan.engine import group_root_causes
    from bastion.tester.scan.interface import ScanFinding
    from bastion.tester.scan.registry import BY_ID

    def made(check_id: str, target: str = "GET /orders") -> ScanFinding:
        return ScanFinding(BY_ID[check_id].info, target, "Accepted.")

    none, wrong, swap, other = (made("API2-JWT-NONE"), made("API2-JWT-WRONG-KEY"), made("API2-JWT-ALG-SWAP"),
                                made("API1-BOLA-READ"))
    grouped = group_root_causes([none, wrong, other, swap])
    assert [f.check.id for f in grouped] == ["API2-JWT-WRONG-KEY", "API1-BOLA-READ"]
    assert grouped[0].proofs == (none, swap) and grouped[1] == other
    assert grouped[0].message == (
        "Accepted. Root cause: the API does not verify token signatures at all; the same flaw also shows as "
        "API2-JWT-NONE on GET /orders, API2-JWT-ALG-SWAP on GET /orders (proofs below), which this fix closes too.")
    on_files, on_orders = made("API2-JWT-WRONG-KEY", "GET /files"), made("API2-JWT-WRONG-KEY")
    two = group_root_causes([on_files, on_orders, made("API2-JWT-NONE")])
    assert [len(f.proofs) for f in two] == [0, 1]
    alone = [made("API2-JWT-NONE")]
    assert group_root_causes(alone) == alone


def test_an_anonymous_admin_read_is_one_finding_only_on_its_own_target() -> None:
    """An administrative operation answering anonymously (API5-BFLA) explains API2-NO-AUTH on the same operation,
    which is folded into it; API2-NO-AUTH on another operation stays a finding of its own."""
    from bastion.tester.scan.engine import group_root_causes
    from bastion.tester.scan.interface import ScanFinding
    from bastion.tester.scan.registry import BY_ID

    def made(check_id: str, target: str) -> ScanFinding:
        return ScanFinding(BY_ID[check_id].info, target, "Answered.")

    admin, other = made("API2-NO-AUTH", "GET /admin/users"), made("API2-NO-AUTH", "GET /reports")
    grouped = group_root_causes([admin, made("API5-BFLA", "GET /admin/users"), other])
    assert [(f.check.id, f.target) for f in grouped] == [("API5-BFLA", "GET /admin/users"),
                                                         ("API2-NO-AUTH", "GET /reports")]
    assert grouped[0].proofs == (admin,) and grouped[1] == other
    assert "Root cause: the administrative operation checks no login at all" in grouped[0].message


def test_a_root_is_never_less_severe_than_what_it_explains() -> None:
    """Every root-cause rule names registered checks, and the root's severity is at least each follower's, so
    folding a finding never lowers the worst severity --fail-on sees."""
    from bastion.tester.scan.engine import ROOT_CAUSES
    from bastion.tester.scan.registry import BY_ID

    for rule in ROOT_CAUSES:
        assert all(BY_ID[rule.root].info.severity >= BY_ID[f].info.severity for f in rule.followers), rule
