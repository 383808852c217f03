"""``/blocks``: the clients, consumers and credentials the detectors block now, and lifting a
block before its time.

A block is a key in the state backend (``block:<kind>:<value>``, see
:mod:`bastion.stages.blocklist`), set by a detector with ``action: block`` when it raises an
alert, which the store keeps. The admin process finds the blocks through those alerts (a
block lasts at most seven days: ``block_ttl``'s bound) and reads each key's detector and
time left in one round trip. That needs the redis backend: with ``backends.state: memory``
each worker keeps its blocks in its own memory, out of this process's reach, so these
endpoints answer 409 and say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.control.accounts.roles import Role
from bastion.control.api import Endpoint
from bastion.control.api.common import ApiError, audited, iso
from bastion.control.auth import principal_of
from bastion.control.context import AdminContext
from bastion.errors import DependencyUnavailable
from bastion.stages.blocklist import block_key
from bastion.state.interface import Script, ScriptArg, ScriptResult, ScriptStore
from bastion.store.models import AlertRecord, utcnow

if TYPE_CHECKING:
    from bastion.config.model import Backends, RedisSettings
    from bastion.store import Store

#: ``block_ttl``'s upper bound: no block outlives an alert older than this.
LOOKBACK = timedelta(days=7)
KINDS = ("ip", "consumer", "credential")


def _peek_local(store: ScriptStore, keys: Sequence[str], _: Sequence[ScriptArg]) -> ScriptResult:
    out: list[int | bytes | None] = []
    for key in keys:
        ttl = store.ttl(key)
        out += [store.get(key) or b"", -1 if ttl is None else int(ttl * 1000)]
    return out


#: Each key's value ("" when absent) and milliseconds left (PTTL), in one round trip.
PEEK = Script(
    "blocks.peek",
    "local out = {}\n"
    "for i, key in ipairs(KEYS) do\n"
    "  out[#out + 1] = redis.call('GET', key) or ''\n"
    "  out[#out + 1] = redis.call('PTTL', key)\n"
    "end\n"
    "return out\n",
    _peek_local,
)

BLOCK = {"type": "object", "required": ["kind", "value", "detector", "expires_in"], "properties": {
    "kind": {"enum": list(KINDS)}, "value": {"type": "string"},
    "detector": {"type": "string", "description": "The detector that blocked it."},
    "expires_in": {"type": ["number", "null"], "description": "Seconds until the block ends by itself."},
    "alert": {"type": "object", "description": "The latest alert that set it (id, summary, last_seen)."}}}


class BlocksUnreachable(Exception):
    """The blocks cannot be read or lifted from here (the message says why and what to do)."""


def require_shared(backends: Backends) -> RedisSettings:
    """The Redis the blocks live in; :class:`BlocksUnreachable` with the memory backend."""
    if backends.state != "redis" or backends.redis is None:
        raise BlocksUnreachable(
            "Blocks live in each worker's memory with backends.state: memory, out of this process's reach; use "
            "backends: {state: redis} to list and lift them (they end by themselves after the detector's block_ttl).")
    return backends.redis


async def _peek(r: RedisSettings, keys: list[str]) -> list[Any]:
    """Each key's value and milliseconds left, on a short-lived connection to the gateway's Redis."""
    from bastion.state.redis import RedisBackend

    state = RedisBackend(r.url, timeout=r.timeout, key_prefix=r.key_prefix, max_connections=1)
    try:
        answer = await state.run(PEEK, keys)
    finally:
        await state.close()
    if not isinstance(answer, list) or len(answer) != 2 * len(keys):
        raise DependencyUnavailable(f"redis at {state.where} answered the block read with {answer!r}")
    return answer


def candidates(store: Store) -> dict[tuple[str, str], AlertRecord]:
    """The subject of every blocking alert of the lookback, with its latest alert."""
    query = (select(AlertRecord).where(AlertRecord.action == "block", AlertRecord.last_seen >= utcnow() - LOOKBACK)
             .order_by(AlertRecord.last_seen))
    found: dict[tuple[str, str], AlertRecord] = {}
    with store.read() as session:
        for alert in session.scalars(query):
            kind, value = next(iter(alert.subject.items()))
            found[(str(kind), str(value))] = alert
            session.expunge(alert)
    return found


async def current(r: RedisSettings, found: dict[tuple[str, str], AlertRecord]) -> list[dict[str, Any]]:
    """The blocks among ``found``'s subjects that hold now."""
    subjects = list(found)
    if not subjects:
        return []
    answer = await _peek(r, [block_key(k, v) for k, v in subjects])
    items = []
    for i, (kind, value) in enumerate(subjects):
        detector, ms = answer[2 * i], int(answer[2 * i + 1])
        if not detector:
            continue  # ended, or lifted
        alert = found[(kind, value)]
        items.append({"kind": kind, "value": value, "detector": bytes(detector).decode(),
                      "expires_in": ms / 1000 if ms >= 0 else None,
                      "alert": {"id": alert.id, "summary": alert.summary, "last_seen": iso(alert.last_seen)}})
    return items


async def peek_one(r: RedisSettings, kind: str, value: str) -> dict[str, Any] | None:
    """The block of ``kind``/``value`` if one holds now."""
    if kind not in KINDS:
        raise LookupError(f"{kind!r} is not a kind of block; they are {', '.join(KINDS)}.")
    answer = await _peek(r, [block_key(kind, value)])
    if not answer[0]:
        return None
    return {"kind": kind, "value": value, "detector": bytes(answer[0]).decode(),
            "expires_in": int(answer[1]) / 1000 if int(answer[1]) >= 0 else None}


async def lift(r: RedisSettings, kind: str, value: str) -> None:
    from bastion.state.redis import RedisBackend

    state = RedisBackend(r.url, timeout=r.timeout, key_prefix=r.key_prefix, max_connections=1)
    try:
        await state.delete(block_key(kind, value))
    finally:
        await state.close()


def _redis(ctx: AdminContext) -> RedisSettings:
    try:
        return require_shared(ctx.config.config.backends)
    except BlocksUnreachable as exc:
        raise ApiError(409, str(exc)) from None


async def list_blocks(ctx: AdminContext, request: Request) -> Response:
    r = _redis(ctx)
    found = await ctx.call(candidates, ctx.store())
    try:
        items = await current(r, found)
    except DependencyUnavailable as exc:
        raise ApiError(503, str(exc)) from None
    return JSONResponse({"items": items, "next_cursor": None})


async def lift_block(ctx: AdminContext, request: Request) -> Response:
    r = _redis(ctx)
    kind, value, who = request.path_params["kind"], request.path_params["value"], principal_of(request)
    try:
        before = await peek_one(r, kind, value)
    except LookupError as exc:
        raise ApiError(404, str(exc)) from None
    except DependencyUnavailable as exc:
        raise ApiError(503, str(exc)) from None
    if before is None:
        raise ApiError(404, f"No {kind} {value!r} is blocked now.")

    def note() -> None:
        # The audit entry first: a lift that cannot be recorded is not made.
        with audited(ctx, who) as (_, record):
            record("block.lift", f"block:{kind}:{value}", before=before, after=None)

    await ctx.call(note)
    try:
        await lift(r, kind, value)
    except DependencyUnavailable as exc:
        raise ApiError(503, str(exc)) from None
    return JSONResponse({"lifted": before})


ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/blocks", list_blocks, Role.VIEWER,
             "The clients, consumers and credentials blocked now, by which detector and for how long "
             "(needs backends.state: redis).", "listBlocks", "blocks",
             response_schema={"type": "object", "properties": {"items": {"type": "array", "items": BLOCK},
                                                               "next_cursor": {"type": "null"}}},
             responses={409: "The state backend is memory: blocks are in each worker, out of reach.",
                        503: "Redis cannot be reached."}),
    Endpoint("DELETE", "/blocks/{kind}/{value}", lift_block, Role.OPERATOR,
             "Lift a block now (every gateway honours it within a second).", "liftBlock", "blocks",
             response_schema={"type": "object", "properties": {"lifted": BLOCK}},
             responses={404: "Nothing of that kind and value is blocked.",
                        409: "The state backend is memory: blocks are in each worker, out of reach.",
                        503: "Redis cannot be reached."}),
]
