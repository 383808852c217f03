"""Per-request cost of validation and detection on typical API requests.

    python bench/detection/typical.py

The detection engine remembers values it has seen in clean requests (headers, tokens,
enums repeat across API traffic) and skips them. So every figure comes twice: *warm*,
as traffic flows, and *cold*, with that memory emptied before each request (every value
seen for the first time: the worst case).

1. Detection alone on a small mix, one request repeated.
2. Validation and detection on 2,000 distinct ~1 KB JSON orders (free text differs in
   each), against the operation's schema: the issue's "1 KB JSON body" figure.
   The same again with the CPU caches evicted before each request, as the gateway's
   other work evicts them: what a request costs there.
3. Detection over the committed benign corpus (5,500 varied requests), in order.
4. When libmodsecurity and Debian's CRS are installed: the same mix and corpus through
   ``engine: modsecurity`` (CRS PL1), which has no memory of clean values.

A CPU calibration figure (``sum(range(1000))``) lets numbers from different machines compare.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bastion.pipeline.stage import RouteInfo
from bastion.stages.detection import DetectionConfig, DetectionEngine
from bastion.stages.detection.modsec import ModSecurityEngine
from bastion.stages.validation import SPEC as VALIDATION
from bastion.stages.validation import ValidationConfig
from bastion.types import Exchange, Request

HEADERS = [
    ("host", "api.example.com"),
    ("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"),
    ("accept", "application/json"),
    ("content-type", "application/json"),
    ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQ"),
    ("accept-encoding", "gzip, br"),
    ("x-request-id", "7d3b1a2e-5c4f-4a8b-9e1d-2f3a4b5c6d7e"),
]

ORDER = {
    "user": {
        "name": "Siobhan O'Brien",
        "email": "siobhan.obrien+news@example.com",
        "address": {"street": "12 Harbour Road", "city": "Galway", "zip": "H91 X2Y3", "country": "IE"},
    },
    "order": {
        "items": [
            {"sku": "SKU-1234", "qty": 2, "note": "Please leave at the door, or with the neighbour"},
            {"sku": "SKU-9", "qty": 1, "note": "gift wrap"},
        ],
        "comment": "I'd like to select a different delivery slot; union of both would be fine. Drop me an email!",
        "coupon": "SPRING-2024",
        "tags": ["new", "vip", "returning"],
        "website": "https://www.example.org/about?ref=newsletter&utm_source=mail",
    },
    "meta": {"client": "ios/17.2", "trace": "3f2a9c1e-8b7d-4e6f-a1b2-c3d4e5f6a7b8"},
}
PROFILE = {
    "id": 81234,
    "display_name": "Zoë Müller",
    "bio": "Backend developer. Coffee, climbing & open source. Opinions are my own.",
    "links": ["https://github.com/zoe-m", "https://zoe.example.dev/blog"],
    "settings": {"theme": "dark", "language": "de-DE", "notifications": {"email": True, "push": False}},
    "skills": ["python", "rust", "postgres", "kubernetes"],
    "location": {"city": "Zürich", "country": "CH"},
    "updated_at": "2024-05-03T10:15:30Z",
}


def _post(path: str, doc: object) -> Request:
    body = json.dumps(doc).encode()
    request = Request("POST", path, path.partition("?")[0], path.partition("?")[2], list(HEADERS))
    request.body = body
    return request


def _get(target: str) -> Request:
    headers = [h for h in HEADERS if h[0] != "content-type"]
    return Request("GET", target, target.partition("?")[0], target.partition("?")[2], headers)


MIX: list[tuple[str, Request]] = [
    ("POST /v1/orders (JSON)", _post("/v1/orders?dry_run=false", ORDER)),
    ("PUT /v1/profile (JSON)", _post("/v1/users/81234/profile", PROFILE)),
    ("GET /v1/search?q=...", _get("/v1/search?q=blue+running+shoes&size=42&sort=-rating&page=2")),
    ("GET /v1/items/{id}", _get("/v1/items/3f2a9c1e-8b7d-4e6f-a1b2-c3d4e5f6a7b8")),
]

_TEXT = {"type": "string", "maxLength": 500}
_ADDRESS = {"type": "object", "additionalProperties": False,
            "properties": {k: {"type": "string", "maxLength": 100} for k in ("street", "city", "zip", "country")}}
ORDER_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["user", "order"],
    "properties": {
        "user": {"type": "object", "additionalProperties": False, "required": ["name", "email"], "properties": {
            "name": {"type": "string", "maxLength": 200}, "email": {"type": "string", "format": "email"},
            "address": _ADDRESS}},
        "order": {"type": "object", "additionalProperties": False, "required": ["items"], "properties": {
            "items": {"type": "array", "maxItems": 50, "items": {
                "type": "object", "additionalProperties": False, "required": ["sku", "qty"], "properties": {
                    "sku": {"type": "string", "pattern": "^SKU-[0-9]{1,8}$"},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 99}, "note": _TEXT}}},
            "comment": _TEXT, "coupon": {"type": "string", "maxLength": 40},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 10},
            "website": {"type": "string", "format": "uri"}}},
        "meta": {"type": "object", "properties": {
            "client": {"type": "string", "maxLength": 40}, "trace": {"type": "string", "format": "uuid"}}},
    },
}
ORDER_OPERATION: dict[str, Any] = {
    "parameters": [{"name": "dry_run", "in": "query", "schema": {"type": "boolean"}}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": ORDER_SCHEMA}}},
    "responses": {"201": {"description": "Created."}},
}
ORDER_DOC: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": "bench", "version": "1"},
                             "paths": {"/v1/orders": {"post": ORDER_OPERATION}}}


def order_of_1kb(i: int) -> dict[str, Any]:
    """A ~1 KB order whose free-text values differ from one call to the next."""
    doc = copy.deepcopy(ORDER)
    doc["order"]["items"].append({"sku": f"SKU-{1000 + i}", "qty": 1 + i % 5,
                                  "note": f"Second floor, ring twice; ask for Mary-Kate #{i}"})
    doc["order"]["comment"] = f"{doc['order']['comment']} (order {i}, it's urgent)"
    doc["meta"]["trace"] = f"3f2a9c1e-8b7d-4e6f-a1b2-{i:012d}"
    doc["user"]["email"] = f"siobhan.obrien+{i}@example.com"
    return doc


def best_of(fn: Callable[[], object], number: int = 500, repeat: int = 9) -> float:
    """Best mean time of ``fn`` in microseconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e6


def corpus_requests() -> list[Request]:
    out = []
    for line in (Path(__file__).parent / "benign.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        target = row["path"]
        path, _, query = target.partition("?")
        request = Request(row["method"], target, path, query, [(k.lower(), v) for k, v in row["headers"]])
        request.body = (row.get("body") or "").encode() or None
        out.append(request)
    return out


def mean_over(requests: list[Request], fn: Callable[[Request], object], cold: Callable[[], None] | None,
              start: Callable[[], None] | None = None) -> float:
    """Best (of 3) mean CPU time per request of ``fn`` over ``requests`` in microseconds;
    ``cold`` runs before each request and ``start`` before each round, outside the timing.

    Every round replays the same requests: pass the engine's ``forget`` as ``start`` so
    that a round does not find the values of the round before remembered."""
    best = float("inf")
    for _ in range(3):
        if start is not None:
            start()
        spent = 0.0
        for request in requests:
            if cold is not None:
                cold()
            t0 = time.process_time()
            fn(request)
            spent += time.process_time() - t0
        best = min(best, spent / len(requests))
    return best * 1e6


def main() -> int:
    engine = DetectionEngine(DetectionConfig())
    forget = engine.matcher.forget
    print(f"backend={engine.matcher.backend_name}")
    print(f"calibration sum(range(1000)): {best_of(lambda: sum(range(1000)), 2000):.1f} µs")
    print("\nDetection alone, one request repeated; cold: the memory of clean values emptied first")
    for label, request in MIX:
        size = len(request.body or b"")
        assert engine.evaluate(request).block_category is None

        def cold_once(r: Request = request) -> None:
            forget()
            engine.evaluate(r)

        cold = best_of(cold_once)
        warm = best_of(lambda r=request: engine.evaluate(r))
        print(f"  {label:<28} body {size:>5} B  cold {cold:6.1f} µs  warm {warm:6.1f} µs")

    route = RouteInfo("orders", "bench", "/v1/orders", frozenset({"POST"}), False, ORDER_OPERATION, ORDER_DOC)
    validation = VALIDATION.build(ValidationConfig(), route)
    assert validation is not None
    orders = [_post("/v1/orders?dry_run=false", order_of_1kb(i)) for i in range(2000)]
    sizes = sorted(len(r.body or b"") for r in orders)

    # Validation leaves the parsed JSON on the request for detection: each measured call
    # starts from a fresh request state, as a request arriving from the network would.
    def validate(r: Request) -> None:
        r.parsed_json = None
        if validation.on_request(Exchange(r, "rid")) is not None:
            raise AssertionError("the benchmark order must be valid")

    def detect(r: Request) -> None:
        r.parsed_json = None
        engine.evaluate(r)

    def both(r: Request) -> None:
        validate(r)
        if engine.evaluate(r).block_category is not None:
            raise AssertionError("the benchmark order must pass detection")

    def build(r: Request) -> None:
        r.parsed_json = None
        Exchange(r, "rid")

    print(f"\nPOST /v1/orders, 2000 distinct orders of {sizes[0]}-{sizes[-1]} B (validation + detection)")
    base = mean_over(orders, build, None)
    for label, fn in (("validation", validate), ("detection", detect), ("both", both)):
        warm = mean_over(orders, fn, None, forget) - base
        cold = mean_over(orders, fn, forget) - base
        print(f"  {label:<11} {warm:6.1f} µs per request (cold: {cold:6.1f} µs)")

    # In the gateway, the proxy's own work and the other processes sharing the core evict
    # the stages' code and tables (hyperscan's database, libinjection's keyword table, the
    # validators) from the CPU caches between two requests. Writing 8 MB before each
    # request (outside the timing) shows what that costs.
    scratch = bytearray(8 << 20)
    zeros = bytes(len(scratch) // 64 + 1)

    def evict() -> None:
        scratch[::64] = zeros[: len(range(0, len(scratch), 64))]

    evicted = mean_over(orders, both, evict, forget) - mean_over(orders, build, evict)
    print(f"  both, with the CPU caches evicted before each request: {evicted:6.1f} µs per request")

    requests = corpus_requests()
    warm = mean_over(requests, engine.evaluate, None, forget)
    cold = mean_over(requests, engine.evaluate, forget)
    print(f"\nOwn benign corpus ({len(requests)} requests, in order): detection {warm:.1f} µs per request "
          f"(cold: {cold:.1f} µs)")
    modsecurity(requests)
    return 0


def modsecurity(requests: list[Request]) -> None:
    """Section 4: ``engine: modsecurity`` (the Debian CRS at PL1) on the same requests."""
    try:
        config = DetectionConfig(engine="modsecurity")
    except ValueError as exc:
        print(f"\nengine: modsecurity not measured: {exc}")
        return
    engine = ModSecurityEngine(config)
    print("\nengine: modsecurity (OWASP CRS PL1 through libmodsecurity), one request repeated")
    for label, request in MIX:
        spent = best_of(lambda r=request: engine.evaluate(r), 200, 5)
        print(f"  {label:<28} body {len(request.body or b''):>5} B  {spent:8.1f} µs")
    passed = mean_over(requests, engine.evaluate, None)
    print(f"  own benign corpus ({len(requests)} requests, in order): {passed:.1f} µs per request")


if __name__ == "__main__":
    raise SystemExit(main())
