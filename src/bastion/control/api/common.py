"""What the admin API's resource modules share: request bodies checked against their
endpoint's declared schema, query parameters, cursors, errors as problem+json, and the
audited write (the change and its admin audit entry in one store transaction).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy.orm import Session
from starlette.requests import Request

from bastion.control.auth import Principal
from bastion.control.context import AdminContext
from bastion.store import adminaudit

T = TypeVar("T")

#: Largest JSON body the admin API reads (a configuration import is the largest there is).
MAX_BODY = 1024 * 1024
#: Page sizes of every list: ``limit`` defaults to this, and may not exceed MAX_LIMIT.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class ApiError(Exception):
    """An answer other than success, with a sentence the caller can act on (problem+json)."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


async def read_json(request: Request) -> Any:
    """The request's JSON body (``{}`` when there is none): 415 unless it is ``application/json``, 413 above
    :data:`MAX_BODY`, 400 if it does not parse."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not media and request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers:
        return {}  # no body at all: the schema's defaults (or its required fields' absence) decide
    if media != "application/json":
        raise ApiError(415, "Send the body as JSON (Content-Type: application/json).")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, f"The body is larger than {MAX_BODY} bytes.")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"The body is larger than {MAX_BODY} bytes.")
    try:
        return orjson.loads(bytes(raw))
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}.") from None


def body_of(request: Request) -> dict[str, Any]:
    """The body the dispatcher read and checked against the endpoint's request schema."""
    value: dict[str, Any] = request.state.body
    return value


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ApiError(400, f"The query parameter {name} must be a whole number from {low} to {high}.")
    return int(text)


def limit_of(request: Request) -> int:
    return query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)


def encode_cursor(value: str) -> str:
    """A list's ``next_cursor``: opaque to callers (it is the last item's sort key)."""
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def cursor_of(request: Request) -> str | None:
    """The sort key after which a page starts (the ``cursor`` a previous page gave)."""
    text = request.query_params.get("cursor")
    if not text:
        return None
    try:
        value = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = None
    if not value or encode_cursor(value) != text:  # only what encode_cursor makes
        raise ApiError(400, "The cursor is not one this API gave; start again without it.")
    return value


def page(items: list[T], limit: int, key: Callable[[T], str]) -> tuple[list[T], str | None]:
    """``items`` (fetched with ``limit + 1`` rows) cut to a page, and the cursor of the next
    page (``None`` on the last)."""
    if len(items) <= limit:
        return items, None
    kept = items[:limit]
    return kept, encode_cursor(key(kept[-1]))


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


@contextmanager
def audited(ctx: AdminContext, who: Principal) -> Iterator[tuple[Session, Callable[..., None]]]:
    """A write transaction and ``note(action, target, before=, after=)`` that records the
    admin audit entry in it: the change and its record are committed together, or neither."""
    store = ctx.store()
    with store.write() as session:

        def note(action: str, target: str, *, before: dict[str, Any] | None = None,
                 after: dict[str, Any] | None = None) -> None:
            adminaudit.record(session, **who.audit(), action=action, target=target, before=before, after=after)

        yield session, note


#: An RFC 6749 scope token: printable ASCII but space, quote and backslash.
SCOPES: dict[str, Any] = {"type": "array", "maxItems": 128, "description": "Scopes (RFC 6749 scope tokens).",
                          "items": {"type": "string", "pattern": r"^[\x21\x23-\x5b\x5d-\x7e]+$", "maxLength": 128}}

#: The query parameters of every paginated list.
PAGING: dict[str, tuple[dict[str, Any], str]] = {
    "limit": ({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
              "At most this many items in the page."),
    "cursor": ({"type": "string"}, "The `next_cursor` of the previous page."),
}


def list_schema(item: dict[str, Any]) -> dict[str, Any]:
    """A page of ``item``: ``{"items": [...], "next_cursor": str | null}``."""
    return {"type": "object", "required": ["items", "next_cursor"],
            "properties": {"items": {"type": "array", "items": item},
                           "next_cursor": {"type": ["string", "null"],
                                           "description": "Pass it as `cursor` for the next page; null on the last."}}}


def timestamp(description: str, *, nullable: bool = True) -> dict[str, Any]:
    return {"type": ["string", "null"] if nullable else "string", "format": "date-time", "description": description}


#: Setting names whose values are secrets (or may hold one): masked in what the API shows.
_SECRET_NAME = re.compile(r"secret|password|passwd|token|credential|private|api_?key|authorization|cookie|pepper",
                          re.IGNORECASE)
MASK = "********"


def masked(value: Any, name: str = "") -> Any:
    """``value`` (settings as JSON) with every secret replaced by :data:`MASK`: the values of
    fields named like secrets, and every encrypted (``enc:v1:``) value."""
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, name) for v in value]
    if isinstance(value, str) and (value.startswith("enc:v1:") or (value and _SECRET_NAME.search(name))):
        return MASK
    return value


def query_time(request: Request, name: str) -> datetime | None:
    """An ISO 8601 timestamp query parameter (UTC when it names no offset)."""
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"The query parameter {name} must be an ISO 8601 time, such as "
                            "2026-12-07T13:00:00Z.") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def time_cursor(after: str | None) -> tuple[datetime, str] | None:
    """A cursor made of ``"<iso time> <id>"`` (lists ordered by time, then id)."""
    if after is None:
        return None
    when, _, row_id = after.partition(" ")
    try:
        return datetime.fromisoformat(when), row_id
    except ValueError:
        raise ApiError(400, "The cursor is not one this API gave; start again without it.") from None
