"""Building the validation stage from small OpenAPI documents, and sending it requests."""

from __future__ import annotations

from typing import Any

import orjson

from bastion.pipeline.stage import RouteInfo
from bastion.stages.validation import ValidationConfig, ValidationStage
from bastion.types import Block, Exchange, Request


def document(operation: dict[str, Any], *, version: str = "3.1.0", path: str = "/things",
             method: str = "post", components: dict[str, Any] | None = None,
             path_parameters: list[Any] | None = None) -> dict[str, Any]:
    """An OpenAPI document with one operation."""
    item: dict[str, Any] = {method: {"responses": {"200": {"description": "ok"}}, **operation}}
    if path_parameters is not None:
        item["parameters"] = path_parameters
    return {"openapi": version, "info": {"title": "t", "version": "1"}, "paths": {path: item},
            "components": components or {}}


def build(doc: dict[str, Any], path: str = "/things", method: str = "post", **config: Any) -> ValidationStage:
    """The stage for ``method path`` of ``doc``, with ``config`` settings."""
    operation = doc["paths"][path][method]
    route = RouteInfo("r", "svc", path, frozenset({method.upper()}), False, operation, doc)
    return ValidationStage.from_config(ValidationConfig(**config), route)


def body_stage(schema: dict[str, Any], *, version: str = "3.1.0", components: dict[str, Any] | None = None,
               media: str = "application/json", required: bool = True, **config: Any) -> ValidationStage:
    """A stage for a POST whose body has ``schema`` under ``media``."""
    doc = document({"requestBody": {"required": required, "content": {media: {"schema": schema}}}},
                   version=version, components=components)
    return build(doc, **config)


def param_stage(parameters: list[Any], *, version: str = "3.1.0", components: dict[str, Any] | None = None,
                path: str = "/things", **config: Any) -> ValidationStage:
    """A stage for a GET with ``parameters``."""
    doc = document({"parameters": parameters}, version=version, path=path, method="get", components=components)
    return build(doc, path, "get", **config)


def send(stage: ValidationStage, *, query: str = "", headers: list[tuple[str, str]] | None = None,
         body: bytes | None = None, json: Any = None, content_type: str | None = None,
         path_params: dict[str, str] | None = None) -> tuple[Block | None, Exchange]:
    """Run the stage's request hook on a request; return its outcome and the exchange."""
    hdrs = list(headers or [])
    if json is not None:
        body = orjson.dumps(json)
        content_type = content_type or "application/json"
    if content_type is not None:
        hdrs.append(("content-type", content_type))
    request = Request("POST", "/things" + ("?" + query if query else ""), "/things", query, hdrs)
    request.path_params = dict(path_params or {})
    request.body = body if body is not None else (b"" if stage.needs_request_body else None)
    exchange = Exchange(request, "req-1")
    outcome = stage.on_request(exchange)
    assert outcome is None or isinstance(outcome, Block)
    return outcome, exchange


def detail(stage: ValidationStage, **kwargs: Any) -> str:
    """The detail of the block the request gets (fails if it passes)."""
    outcome, _ = send(stage, **kwargs)
    assert outcome is not None, "the request was expected to be refused"
    return outcome.detail


def passes(stage: ValidationStage, **kwargs: Any) -> bool:
    """Whether the request passes the stage."""
    outcome, _ = send(stage, **kwargs)
    return outcome is None
