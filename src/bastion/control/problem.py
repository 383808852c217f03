"""problem+json answers of the control plane (RFC 9457), as the data plane writes them."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

_TITLES = {400: "Bad request", 401: "Authentication required", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 413: "Payload too large", 415: "Unsupported media type",
           422: "Unprocessable content", 423: "Locked", 429: "Too many requests", 503: "Service unavailable"}


def problem(status: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"), "status": status,
                            "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)
