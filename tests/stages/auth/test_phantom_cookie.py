"""The auth stage's phantom cookie (``phantom_cookie``), without a gateway: which alternatives
it adds, and that a cookie never gets around the scopes an alternative requires."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from typing import Any

from bastion.pipeline.stage import RouteInfo
from bastion.services import Services, WorkerIdentity
from bastion.stages.auth import AuthConfig, AuthStage
from bastion.stages.phantom.tokens import Record, new_token, state_key
from bastion.state import MemoryBackend
from bastion.types import Block, Exchange, Request

SCHEMES: dict[str, Any] = {
    "bearerAuth": {"type": "http", "scheme": "bearer"},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "sid"},
}
CONFIG = AuthConfig.model_validate(
    {"phantom_tokens": True, "phantom_cookie": "sid", "api_keys": {"enabled": False}}
)


def route(security: list[dict[str, list[str]]]) -> RouteInfo:
    doc = {"openapi": "3.1.0", "components": {"securitySchemes": SCHEMES}}
    return RouteInfo("op", "shop", "/orders", frozenset({"POST"}), False, {"security": security}, doc)


def test_the_cookie_takes_the_bearer_schemes_place_with_its_scopes() -> None:
    """On a route whose bearer alternative requires a scope, the cookie alternative requires
    it too; a declared apiKey scheme naming the cookie takes the phantom itself (no extra
    alternative); `bastion check` says where phantoms are read."""
    scoped = AuthStage(CONFIG, route([{"bearerAuth": ["orders:write"]}]))
    assert scoped.summary == (
        "bearer token (phantom token) with scopes orders:write or phantom token (cookie sid) with scopes orders:write"
    )
    declared = AuthStage(CONFIG, route([{"sessionCookie": []}]))
    assert declared.summary == "phantom token (cookie sid)"


def test_a_cookie_phantom_without_the_scope_is_refused() -> None:
    """A phantom in the cookie whose record lacks the scope the route's bearer alternative
    requires is refused 403 ``insufficient_scope``, as it would be as a bearer token; one with
    the scope is accepted, and the forwarded cookie carries the upstream's token."""
    stage = AuthStage(CONFIG, route([{"bearerAuth": ["orders:write"]}]))

    async def main() -> list[Block | None]:
        services = Services(MemoryBackend(), WorkerIdentity("test", 0, 1, os.getpid()))
        await stage.start(services)
        answers: list[Block | None] = []
        exchanges = []
        for scopes in ((), ("orders:write",)):
            phantom = new_token()
            record = Record("upstream-" + "-".join(scopes), "alice", scopes, (), {}, time.time() + 60)
            await services.state.set(state_key(phantom), record.encode(), ttl=60)
            exchange = Exchange(Request("POST", "/orders", "/orders", "", [("cookie", f"sid={phantom}")]), "r")
            outcome = stage.on_request_head(exchange)
            answer = await outcome if inspect.isawaitable(outcome) else outcome
            assert answer is None or isinstance(answer, Block)
            answers.append(answer)
            exchanges.append(exchange)
        await stage.close()
        await services.close()
        assert exchanges[1].request.headers == [("cookie", "sid=upstream-orders:write")]
        return answers

    refused, accepted = asyncio.run(main())
    assert refused is not None and refused.status == 403 and 'error="insufficient_scope"' in str(refused.headers)
    assert accepted is None
