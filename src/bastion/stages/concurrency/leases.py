"""Requests in flight per consumer counted in the shared state backend (Redis), exact across
every worker of every instance, and never leaking a place when a worker dies.

Each consumer has one sorted set: a member per request in flight (the worker's token and the
request id), scored with when its *lease* ends (Redis's clock, milliseconds). Taking a place
is one script: drop the leases that ended, count the rest, and add this request's if there
is room -- atomic, so concurrent requests from any worker are serialised and a limit of N
admits N. Giving it back removes the member. A worker renews the leases of its requests
still in flight every third of a lease, all in one script; a worker that crashed renews
nothing, so its places free themselves within one lease, while a live worker's long request
keeps its place however long it lasts.

Places are given back in batches (one script per event-loop iteration, whatever the number
of requests that ended in it), sent before any request read after them takes a place (one
connection, answered in order: a client that sends its next request once answered finds its
place free), and renewed in one script per worker: the request path pays one round trip, to
take its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bastion.errors import DependencyUnavailable
from bastion.state.interface import Script, ScriptArg, ScriptResult, ScriptStore, StateBackend

if TYPE_CHECKING:
    from bastion.services import Services

log = logging.getLogger("bastion.concurrency")

#: The key of a consumer's set (the backend adds its own prefix).
KEY_PREFIX = "concurrency:"
#: The key of the worker's leases in ``services.shared``.
SHARED_KEY = "concurrency:leases"

#: Which worker's leases hold a place for each request of this process (by request id), for
#: the record sink to give it back to whichever state backend took it: a reload that changes
#: the backends leaves the requests still in flight with the old one.
HOLDERS: dict[str, SharedInFlight] = {}

_NOW = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
"""

# KEYS[1]: the consumer's set. ARGV: now in ms ('' for Redis's clock), the most places, the
# lease in ms, this request's member. Answer: {1, places taken with this one} or {0, taken}.
_ACQUIRE_LUA = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local taken = redis.call('ZCARD', KEYS[1])
if taken >= tonumber(ARGV[2]) then return {0, taken} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, taken + 1}
"""
)

# KEYS: a set per place given back; ARGV: the member of each, in the same order. Answer: 0.
_RELEASE_LUA = """
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[i]) end
return 0
"""

# KEYS: a set per lease renewed; ARGV: now ('' for Redis's clock), the lease in ms, then the
# member of each key. Only leases still there are renewed (one that ended was counted out).
_RENEW_LUA = (
    _NOW
    + """
local lease = tonumber(ARGV[2])
local renewed = 0
for i = 1, #KEYS do
  if redis.call('ZSCORE', KEYS[i], ARGV[i + 2]) then
    redis.call('ZADD', KEYS[i], now + lease, ARGV[i + 2])
    redis.call('PEXPIRE', KEYS[i], lease)
    renewed = renewed + 1
  end
end
return renewed
"""
)


def _load(store: ScriptStore, key: str, now: int) -> dict[str, int]:
    """The memory backend's set: member -> end of lease, without the ended ones."""
    raw = store.get(key)
    leases: dict[str, int] = json.loads(raw) if raw is not None else {}
    return {member: end for member, end in leases.items() if end > now}


def _save(store: ScriptStore, key: str, leases: dict[str, int], now: int) -> None:
    if leases:
        store.set(key, json.dumps(leases), (max(leases.values()) - now) / 1000)
    else:
        store.delete(key)


def _acquire_local(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    now, most, lease, member = int(args[0]), int(args[1]), int(args[2]), str(args[3])
    leases = _load(store, keys[0], now)
    if len(leases) >= most:
        return [0, len(leases)]
    leases[member] = now + lease
    _save(store, keys[0], leases, now)
    return [1, len(leases)]


def _release_local(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    for key, member in zip(keys, args, strict=True):
        raw = store.get(key)
        leases: dict[str, int] = json.loads(raw) if raw is not None else {}
        if leases.pop(str(member), None) is None:
            continue
        if leases:
            store.set(key, json.dumps(leases), store.ttl(key))
        else:
            store.delete(key)
    return 0


def _renew_local(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    now, lease = int(args[0]), int(args[1])
    renewed = 0
    for key, member in zip(keys, args[2:], strict=True):
        leases = _load(store, key, now)
        if str(member) in leases:
            leases[str(member)] = now + lease
            _save(store, key, leases, now)
            renewed += 1
    return renewed


ACQUIRE = Script("concurrency-acquire", _ACQUIRE_LUA, _acquire_local)
RELEASE = Script("concurrency-release", _RELEASE_LUA, _release_local)
RENEW = Script("concurrency-renew", _RENEW_LUA, _renew_local)


class SharedInFlight:
    """This worker's places in the shared counts: taken by the stage, given back by the
    record sink, renewed in the background while their requests are in flight."""

    def __init__(self, state: StateBackend, token: str, lease: float) -> None:
        self.state = state
        #: Makes this worker's members unique among every worker's (request ids are per worker).
        self.token = token
        self.lease_ms = max(1, int(lease * 1000))
        #: Member -> its consumer's key, for every place this worker may hold.
        self.held: dict[str, str] = {}
        self._returning: list[tuple[str, str]] = []
        self._flush: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        #: Closed with its services: what is still held then ends with its lease.
        self.closed = False

    def member(self, request_id: str) -> str:
        return self.token + request_id

    async def acquire(self, consumer: str, most: int, request_id: str) -> int:
        """Take a place for this request: how many the consumer has with it, or 0 (none left).

        The member is noted as held *before* the script runs: if the answer never comes
        (the client left, Redis timed out after adding it), the record sink still gives it
        back."""
        key = KEY_PREFIX + consumer
        member = self.member(request_id)
        self.held[member] = key
        HOLDERS[request_id] = self
        answer = await self.state.run(ACQUIRE, [key], ["", most, self.lease_ms, member])
        if not isinstance(answer, list) or len(answer) != 2 or not isinstance(answer[1], int):
            raise RuntimeError(f"the concurrency script answered {answer!r}")
        if answer[0] != 1:
            self.held.pop(member, None)
            HOLDERS.pop(request_id, None)
            return 0
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_every())
        return answer[1]

    def release(self, request_id: str) -> None:
        """Give the request's place back (from the record sink): batched, off the request path."""
        member = self.member(request_id)
        key = self.held.pop(member, None)
        if key is None or self.closed:
            return
        self._returning.append((key, member))
        if self._flush is None:
            self._flush = asyncio.get_running_loop().create_task(self._give_back())

    async def _give_back(self) -> None:
        # Runs at the next turn of the event loop, before the requests that turn reads (its
        # step was scheduled first): a client's next request, on the same Redis connection,
        # comes after this. The records completed in this turn join the batch.
        batch, self._returning = self._returning, []
        self._flush = None
        try:
            await self.state.run(RELEASE, [k for k, _ in batch], [m for _, m in batch])
        except DependencyUnavailable as exc:
            # Not lost for good: the places free themselves when their leases end.
            log.warning("concurrency: %d place(s) not given back now (%s); their leases end them", len(batch), exc)

    async def _renew_every(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            held = list(self.held.items())
            if not held:
                continue
            try:
                await self.state.run(RENEW, [k for _, k in held], ["", self.lease_ms, *(m for m, _ in held)])
            except DependencyUnavailable as exc:
                log.warning("concurrency: leases of %d request(s) not renewed (%s)", len(held), exc)

    async def aclose(self) -> None:
        """Stop renewing, and give back what was still to be (the worker's shutdown)."""
        self.closed = True
        for task in (self._renewer, self._flush):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._renewer = self._flush = None
        if self._returning:
            batch, self._returning = self._returning, []
            with contextlib.suppress(DependencyUnavailable):
                await self.state.run(RELEASE, [k for k, _ in batch], [m for _, m in batch])


def release_lease(request_id: str) -> bool:
    """Give back the place a request holds in a shared count, if it holds one (the record
    sink, once the request's exchange ended)."""
    holder = HOLDERS.pop(request_id, None)
    if holder is None:
        return False
    holder.release(request_id)
    return True


def shared_in_flight(services: Services, lease: float) -> SharedInFlight:
    """The worker's places in the shared counts (one per worker and state backend, kept
    across reloads), with the shortest lease any stage asks for (renewals follow it)."""
    identity = services.identity
    token = f"{identity.instance}:{identity.index}:{identity.pid}:"
    shared = services.shared(SHARED_KEY, lambda: SharedInFlight(services.state, token, lease))
    shared.lease_ms = min(shared.lease_ms, max(1, int(lease * 1000)))
    return shared


__all__ = [
    "ACQUIRE",
    "HOLDERS",
    "KEY_PREFIX",
    "RELEASE",
    "RENEW",
    "SHARED_KEY",
    "SharedInFlight",
    "release_lease",
    "shared_in_flight",
]
