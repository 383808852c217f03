"""Per-request cost of the detection engine on a typical ~1 KB JSON API request.

    python bench/detection/typical.py

Reports the best-of-N mean time of :meth:`DetectionEngine.evaluate` (request extraction,
normalisation, matching, scoring) for a small mix of typical API requests, plus a CPU
calibration figure (``sum(range(1000))``) so numbers from different machines compare.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from bastion.stages.detection import DetectionConfig, DetectionEngine
from bastion.types import Request

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


def best_of(fn: Callable[[], object], number: int = 500, repeat: int = 9) -> float:
    """Best mean time of ``fn`` in microseconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e6


def main() -> int:
    engine = DetectionEngine(DetectionConfig())
    print(f"backend={engine.matcher.backend_name}")
    print(f"calibration sum(range(1000)): {best_of(lambda: sum(range(1000)), 2000):.1f} µs")
    for label, request in MIX:
        size = len(request.body or b"")
        assert engine.evaluate(request).block_category is None
        print(f"{label:<28} body {size:>5} B  {best_of(lambda r=request: engine.evaluate(r)):7.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
