"""Fuzz the validation stage: structured requests against a small but rich OpenAPI operation
(path, query, header and cookie parameters in several styles; JSON, form and multipart bodies).

Any request must pass (``None``) or be refused with a 400 or 415 whose detail is printable and
echoes no markup; an exception is a bug. Run:
``python -m tests.fuzz.fuzz_validation [libFuzzer flags] CORPUS_DIR``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import atheris

with atheris.instrument_imports(include=["bastion"]):
    from bastion.pipeline.stage import RouteInfo
    from bastion.stages.validation import ValidationConfig, ValidationStage
    from bastion.types import Block, Exchange

from tests.fuzz.codec import Part, Reader, RequestSpec, Writer, read_request, to_request
from tests.fuzz.harness import main

PATH = "/items/{id}/{tags}/{point}/{filter}"
PATH_PARAMS = ("id", "tags", "point", "filter")

_INT = {"type": "integer"}
_STR = {"type": "string"}
ITEM = {
    "type": "object",
    "required": ["sku", "qty"],
    "additionalProperties": False,
    "properties": {
        "sku": {"type": "string", "pattern": "^SKU-[0-9]{1,6}$"},
        "qty": {"type": "integer", "minimum": 1, "maximum": 10},
        "note": {"type": ["string", "null"], "maxLength": 200},
    },
}
OPERATION: dict[str, Any] = {
    "operationId": "updateItem",
    "parameters": [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}},
        {"name": "tags", "in": "path", "required": True, "style": "label", "explode": True,
         "schema": {"type": "array", "maxItems": 5, "items": _STR}},
        {"name": "point", "in": "path", "required": True, "style": "matrix", "explode": True,
         "schema": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}}},
        {"name": "filter", "in": "path", "required": True, "style": "matrix",
         "schema": {"type": "array", "items": _INT}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
        {"name": "ids", "in": "query", "explode": False, "schema": {"type": "array", "items": {"type": "number"}}},
        {"name": "sort", "in": "query", "style": "spaceDelimited",
         "schema": {"type": "array", "items": {"enum": ["asc", "desc"]}}},
        {"name": "cols", "in": "query", "style": "pipeDelimited", "schema": {"type": "array", "items": _STR}},
        {"name": "f", "in": "query", "style": "deepObject",
         "schema": {"type": "object", "properties": {"a": {"type": "boolean"}, "n": _INT}}},
        {"name": "page", "in": "query", "style": "form", "explode": True,
         "schema": {"type": "object", "properties": {"offset": _INT, "size": _INT}}},
        {"name": "q", "in": "query", "schema": {"type": "string", "pattern": "^[a-z ]*$", "maxLength": 50}},
        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "email", "in": "query", "schema": {"type": "string", "format": "email"}},
        {"name": "uid", "in": "query", "schema": {"type": "string", "format": "uuid"}},
        {"name": "meta", "in": "query", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"k": _STR}}}}},
        {"name": "flag", "in": "query", "schema": {"type": "boolean"}},
        {"name": "n", "in": "query", "schema": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5}},
        {"name": "X-Int", "in": "header", "schema": _INT},
        {"name": "X-List", "in": "header", "schema": {"type": "array", "items": _INT}},
        {"name": "X-Obj", "in": "header", "explode": True,
         "schema": {"type": "object", "properties": {"a": _STR, "b": _INT}}},
        {"name": "X-Json", "in": "header", "content": {"application/json": {"schema": {"type": "array"}}}},
        {"name": "c", "in": "cookie", "schema": {"type": "array", "items": _INT}},
        {"name": "session", "in": "cookie",
         "schema": {"type": "string", "minLength": 8, "maxLength": 64, "pattern": "^[A-Za-z0-9]+$"}},
        {"name": "prefs", "in": "cookie", "explode": False,
         "schema": {"type": "object", "properties": {"theme": {"enum": ["dark", "light"]}}}},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Order"}},
            "application/vnd.api+json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}},
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "required": ["a"], "properties": {
                    "a": _INT, "list": {"type": "array", "items": _INT}, "obj": {"type": "object"},
                    "s": {"type": "string", "maxLength": 20}}},
                "encoding": {"list": {"explode": False}},
            },
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary", "maxLength": 4096},
                "meta": {"type": "object", "properties": {"k": _STR}},
                "count": _INT,
                "tags": {"type": "array", "items": _STR}}}},
            "text/plain": {"schema": _STR},
        },
    },
    "responses": {"200": {"description": "ok"}},
}
DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "fuzz", "version": "1"},
    "paths": {PATH: {"put": OPERATION}},
    "components": {"schemas": {
        "Item": ITEM,
        "Order": {
            "type": "object",
            "required": ["name", "items"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "integer", "readOnly": True},
                "name": {"type": "string", "minLength": 1, "maxLength": 50},
                "items": {"type": "array", "maxItems": 20, "uniqueItems": True,
                          "items": {"$ref": "#/components/schemas/Item"}},
                "kind": {"oneOf": [{"const": "a"}, {"type": "integer", "minimum": 5}]},
                "when": {"type": "string", "format": "date"},
                "ip": {"type": "string", "format": "ipv4"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 5},
                "any": {"anyOf": [_STR, {"type": "array", "items": {"$ref": "#/components/schemas/Order"}}]},
            },
        },
    }},
}
ROUTE = RouteInfo("updateItem", "svc", PATH, frozenset({"PUT"}), False, OPERATION, DOCUMENT)
STAGES = [
    ValidationStage.from_config(ValidationConfig(), ROUTE),
    ValidationStage.from_config(
        ValidationConfig(strict=True, reject_unknown_query_params=True, allow_repeated_params=True, max_json_depth=8),
        ROUTE,
    ),
]


class Broken(AssertionError):
    """The stage's answer is not a pass or a clean refusal."""


def check(data: bytes) -> None:
    reader = Reader(atheris.FuzzedDataProvider(data))
    request = to_request(read_request(reader))
    request.path_params = {name: reader.utf8(512) for name in PATH_PARAMS}
    for stage in STAGES:
        if stage is None:
            raise Broken("the operation did not compile")
        outcome = stage.on_request(Exchange(request, "fuzz"))
        if outcome is None:
            continue
        if not isinstance(outcome, Block) or outcome.status not in (400, 415):
            raise Broken(f"on_request() gave {outcome!r}")
        if not outcome.detail.isprintable() or "<" in outcome.detail or ">" in outcome.detail:
            raise Broken(f"the detail echoes raw input: {outcome.detail!r}")


def _specs() -> Iterator[tuple[RequestSpec, tuple[str, str, str, str]]]:
    good_path = ("7", ".a.b", ";x=1.5;y=-2", ";filter=1,2,3")
    query = ("limit=10&ids=1,2.5&sort=asc%20desc&cols=a|b&f[a]=true&f[n]=3&offset=0&size=10&q=hello"
             "&since=2024-01-01T00:00:00Z&email=a@example.com&uid=3fa85f64-5717-4562-b3fc-2c963f66afa6"
             "&meta=%7B%22k%22%3A%22v%22%7D&flag=false&n=1.5")
    headers = [("x-int", "5"), ("x-list", "1, 2"), ("x-obj", "a=x,b=2"), ("x-json", "[1]"),
               ("cookie", "c=1,2; session=abcdefgh123; prefs=theme,dark")]
    order = {"name": "n", "items": [{"sku": "SKU-1", "qty": 2, "note": None}], "kind": "a", "when": "2024-02-29",
             "ip": "10.0.0.1", "labels": {"x": "y"}, "any": [{"name": "m", "items": []}]}
    bodies = [
        RequestSpec(body_kind="json", body=json.dumps(order).encode()),
        RequestSpec(body_kind="json", body=json.dumps({**order, "id": 1, "extra": True, "kind": 3}).encode()),
        RequestSpec(body_kind="raw", body=json.dumps([order["items"]]).encode(),
                    headers=[("content-type", "application/vnd.api+json; charset=utf-8")]),
        RequestSpec(body_kind="form", body=b"a=1&list=1,2,3&obj=%7B%7D&s=hi"),
        RequestSpec(body_kind="form", body=b"a=x&a=2&list=&s=" + b"z" * 30),
        RequestSpec(body_kind="multipart", parts=[
            Part("file", b"\x89PNG\r\n\x00", filename="a.png", content_type="image/png"),
            Part("meta", b'{"k": "v"}', content_type="application/json"),
            Part("count", b"3"), Part("tags", b"a"), Part("tags", b"b")]),
        RequestSpec(body_kind="raw", body=b"hello", headers=[("content-type", "text/plain")]),
        RequestSpec(body_kind="raw", body=b"{}", headers=[("content-type", "application/xml")]),
        RequestSpec(body_kind="json", body=b"[" * 40 + b"]" * 40),
        RequestSpec(body_kind="json", body=b'{"name": 1, "items": 2}', encoding="gzip"),
    ]
    bad_path = ("x", "a.b", "x=1", ";filter=a")
    for spec in bodies:
        spec.method = "PUT"
        spec.path = "/items/7/.a.b/;x=1.5;y=-2/;filter=1,2,3"
        spec.query = query
        spec.headers = headers + spec.headers
        yield spec, good_path
    yield RequestSpec(method="PUT", query="limit=0&limit=1&ids=x&f[a][b]=1&q=%ff&zz=1"), bad_path
    yield RequestSpec(method="PUT", query="a=%zz&b=%C3%28", headers=[("x-int", "1e400"), ("cookie", "c=,;")]), bad_path


def validation_seeds() -> Iterator[bytes]:
    for spec, path_params in _specs():
        w = Writer()
        spec.write(w)
        for value in path_params:
            w.text(value)
        yield w.data()


if __name__ == "__main__":
    main(check, validation_seeds)
