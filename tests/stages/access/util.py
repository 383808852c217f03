"""Helpers of the access stage's tests: a stage compiled from settings, and hand-made exchanges."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_network
from typing import Any

from bastion.pipeline.stage import RouteInfo
from bastion.stages.access import AccessConfig, AccessStage
from bastion.types import Block, Exchange, Principal, Request


def route(
    operation: dict[str, Any] | None = None,
    *,
    path: str = "/users/{username}",
    methods: frozenset[str] = frozenset({"GET"}),
    public: bool = False,
    doc: dict[str, Any] | None = None,
) -> RouteInfo:
    """A route of the service ``shop`` (an OpenAPI operation when ``operation`` is given)."""
    if operation is not None and doc is None:
        doc = {"openapi": "3.1.0", "paths": {}}
    return RouteInfo("op", "shop", path, methods, public, operation, doc)


def compile_stage(settings: dict[str, Any] | None = None, info: RouteInfo | None = None) -> AccessStage:
    """The access stage the loader would build from ``settings`` (it must build one)."""
    stage = AccessStage.from_config(AccessConfig.model_validate(settings or {}), info or route())
    assert stage is not None
    return stage


def principal(
    name: str = "alice",
    *,
    roles: tuple[str, ...] = ("user",),
    scopes: tuple[str, ...] = (),
    claims: Mapping[str, object] | None = None,
    ip_allow: tuple[str, ...] = (),
    ip_deny: tuple[str, ...] = (),
) -> Principal:
    """A consumer as the auth stage would prove it (id ``id-<name>``)."""
    return Principal(
        f"id-{name}",
        name,
        "key-1",
        frozenset(scopes),
        frozenset(roles),
        claims or {},
        tuple(ip_network(n) for n in ip_allow),
        tuple(ip_network(n) for n in ip_deny),
    )


def exchange(
    method: str = "GET",
    path: str = "/users/alice",
    *,
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
    who: Principal | None = None,
    params: dict[str, str] | None = None,
    client: str = "10.1.2.3",
    body: bytes | None = None,
) -> Exchange:
    """An exchange as the proxy hands it to the stage: routed (``params``), signed in (``who``)."""
    request = Request(method, path + ("?" + query if query else ""), path, query, headers or [], client_ip=client)
    request.path_params = params if params is not None else {"username": path.rsplit("/", 1)[-1]}
    request.body = body
    ex = Exchange(request, "req-1", "shop", "op")
    ex.principal = who
    return ex


def refused(outcome: object) -> str:
    """The reason of a block (fails if the hook let the request through or is pending)."""
    assert isinstance(outcome, Block), outcome
    return outcome.reason
