"""Validation vouches for inputs its schemas prove inert; detection then skips them.

A header or path parameter declared as a UUID, a date, a date-time, a number or a boolean
cannot carry anything a backend would interpret once it has passed validation, so
detection need not inspect it again (request IDs are new in every request, and would
otherwise cost a scan each time).
"""

from __future__ import annotations

from typing import Any

import pytest

from bastion.pipeline.stage import RouteInfo
from bastion.stages.detection.inspect import extract
from bastion.stages.validation import ValidationConfig, ValidationStage
from bastion.types import Exchange, Request
from tests.stages.validation.helpers import document

UUID = "3f2a9c1e-8b7d-4e6f-a1b2-c3d4e5f6a7b8"
ITEM = "/items/{id}"


def item_stage(id_schema: dict[str, Any], header_schema: dict[str, Any], **config: Any) -> ValidationStage:
    doc = document(
        {"parameters": [{"name": "X-Request-Id", "in": "header", "schema": header_schema}]},
        path=ITEM, method="get",
        path_parameters=[{"name": "id", "in": "path", "required": True, "schema": id_schema}],
    )
    route = RouteInfo("r", "svc", ITEM, frozenset({"GET"}), False, doc["paths"][ITEM]["get"], doc)
    stage = ValidationStage.from_config(ValidationConfig(**config), route)
    assert stage is not None
    return stage


def item_request(item: str = UUID, request_id: str = UUID, raw_path: str | None = None) -> Request:
    path = f"/items/{item}"
    request = Request("GET", raw_path or path, path, "", [("user-agent", "t"), ("x-request-id", request_id)])
    request.path_params = {"id": item}
    return request


def inspected(request: Request) -> list[tuple[str, str]]:
    return [(i.location, i.value) for i in extract(request)]


def test_valid_uuid_header_and_path_are_vouched_for_and_not_inspected() -> None:
    stage = item_stage({"type": "string", "format": "uuid"}, {"type": "string", "format": "uuid"})
    request = item_request()
    assert inspected(request) == [("path", f"items/{UUID}"), ("path:0", "items"), ("path:1", UUID),
                                  ("header:user-agent", "t"), ("header:x-request-id", UUID)]
    assert stage.on_request(Exchange(request, "r")) is None
    assert request.inert_headers == frozenset({"x-request-id"})
    assert request.inert_path is True
    assert inspected(request) == [("header:user-agent", "t")]


@pytest.mark.parametrize(
    "schema",
    [{"type": "integer"}, {"type": "number"}, {"type": "boolean"}, {"type": ["integer", "null"]},
     {"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}],
)
def test_inert_kinds(schema: dict[str, Any]) -> None:
    stage = item_stage(schema, schema)
    assert stage._checker is not None
    assert stage._checker.op.inert_headers == frozenset({"x-request-id"})
    assert stage._checker.op.inert_path is True


@pytest.mark.parametrize(
    "schema",
    [{"type": "string"}, {"type": "string", "format": "email"}, {"type": "string", "format": "uri"},
     {"type": "string", "format": "ipv4"}, {"type": "string", "pattern": "^[a-f0-9-]+$"},
     {"type": ["string", "integer"]}, {"anyOf": [{"type": "integer"}, {"type": "string"}]}, {}],
)
def test_text_that_could_carry_a_payload_is_never_vouched_for(schema: dict[str, Any]) -> None:
    """Free strings, and formats whose values are addresses or URLs (SSRF), stay inspected."""
    stage = item_stage(schema, schema)
    assert stage._checker is not None
    assert stage._checker.op.inert_headers == frozenset()
    assert stage._checker.op.inert_path is False


def test_a_refused_request_vouches_for_nothing() -> None:
    """Only a request that passed validation is vouched for: in shadow mode (enforce: false)
    an invalid request goes on to detection with every input inspected."""
    stage = item_stage({"type": "string", "format": "uuid"}, {"type": "string", "format": "uuid"}, enforce=False)
    attack = "' UNION SELECT password FROM users--"
    request = item_request(request_id=attack)
    assert stage.on_request(Exchange(request, "r")) is not None
    assert request.inert_headers == frozenset()
    assert request.inert_path is False
    assert ("header:x-request-id", attack) in inspected(request)


def test_a_path_sent_in_another_form_than_validated_stays_inspected() -> None:
    """The path is skipped only when the client sent exactly the path that was routed and
    validated (here it also had a dot-dot segment the normaliser removed)."""
    stage = item_stage({"type": "string", "format": "uuid"}, {"type": "string", "format": "uuid"})
    request = item_request(raw_path=f"/other/../items/{UUID}")
    assert stage.on_request(Exchange(request, "r")) is None
    assert request.inert_headers == frozenset({"x-request-id"})
    assert request.inert_path is False
    assert ("path", f"other/../items/{UUID}") in inspected(request)


def test_a_path_with_a_free_text_parameter_stays_inspected() -> None:
    stage = item_stage({"type": "string"}, {"type": "string", "format": "uuid"})
    request = item_request(item="blue-shoes")
    assert stage.on_request(Exchange(request, "r")) is None
    assert request.inert_path is False
    assert ("path:1", "blue-shoes") in inspected(request)


def test_a_repeated_inert_header_is_refused_not_vouched_for() -> None:
    """Two X-Request-Id fields are read as one comma-separated value, which is no UUID."""
    stage = item_stage({"type": "string", "format": "uuid"}, {"type": "string", "format": "uuid"})
    request = item_request()
    request.headers.append(("x-request-id", "1' OR '1'='1"))
    assert stage.on_request(Exchange(request, "r")) is not None
    assert request.inert_headers == frozenset()
