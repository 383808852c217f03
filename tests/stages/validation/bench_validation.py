"""In-process cost of the validation stage: POST, ~1 KB JSON body, 10-field schema, 3 query params.

Run: ``BASTION_PURE_PYTHON=1 .venv/bin/python -m tests.stages.validation.bench_validation``
(not collected by pytest). Prints microseconds per request, best of 5 runs of 20 000.
"""

from __future__ import annotations

import timeit
from typing import Any

import orjson

from bastion.pipeline.stage import RouteInfo
from bastion.stages.validation import SPEC, ValidationConfig
from bastion.types import Exchange, Request

ITEM: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["id", "name", "email"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "name": {"type": "string", "maxLength": 200},
        "email": {"type": "string", "format": "email"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "score": {"type": "number"},
        "active": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 20},
        "created": {"type": "string", "format": "date-time"},
        "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "bio": {"type": "string", "maxLength": 2000},
    },
}
OPERATION: dict[str, Any] = {
    "parameters": [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
        {"name": "sort", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]}},
        {"name": "tag", "in": "query", "schema": {"type": "string", "maxLength": 50}},
    ],
    "requestBody": {"required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}},
    "responses": {"200": {"description": "ok"}},
}
DOC: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": "bench", "version": "1"},
                       "paths": {"/items": {"post": OPERATION}}, "components": {"schemas": {"Item": ITEM}}}
BODY = orjson.dumps({
    "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "name": "Aoife O'Brien", "email": "aoife+news@example.com",
    "age": 41, "score": 97.5, "active": True, "tags": ["alpha", "beta", "gamma", "delta"],
    "created": "2024-05-01T12:30:00Z", "country": "IE", "bio": "x" * 640,
})
QUERY = "limit=20&sort=asc&tag=books"


def _request() -> Request:
    req = Request("POST", "/items?" + QUERY, "/items", QUERY,
                  [("host", "api"), ("content-type", "application/json"), ("content-length", str(len(BODY)))])
    req.body = BODY
    return req


def measure(strict: bool, n: int = 20_000) -> tuple[float, float]:
    """Microseconds per request: with the stage, and for building the request alone."""
    route = RouteInfo("r", "s", "/items", frozenset({"POST"}), False, OPERATION, DOC)
    stage = SPEC.build(ValidationConfig(strict=strict), route)

    def one() -> None:
        if stage.on_request(Exchange(_request(), "rid")) is not None:
            raise AssertionError("the benchmark request must be valid")

    def baseline() -> None:
        Exchange(_request(), "rid")

    total = min(timeit.repeat(one, number=n, repeat=5)) / n * 1e6
    base = min(timeit.repeat(baseline, number=n, repeat=5)) / n * 1e6
    return total, base


def main() -> None:
    print(f"body: {len(BODY)} bytes, query: {QUERY}")
    for strict in (False, True):
        total, base = measure(strict)
        print(f"strict={strict}: {total - base:.1f} us/request in the stage "
              f"({total:.1f} us including {base:.1f} us to build the request)")


if __name__ == "__main__":
    main()
