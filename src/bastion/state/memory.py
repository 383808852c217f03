"""The memory backend: state in the worker's own process.

Compiled with mypyc (setup.py): a rate limit on this backend runs its script here on every
request. (Its subscriptions, an async generator mypyc does not compile, are in
:mod:`bastion.state.channels`.)

Exact within that process, and only there: with several workers each would count on its
own, so the supervisor refuses it with more than one worker when a stage keeps state (see
:func:`bastion.state.check_backend`). It is the default, for one worker and for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from bastion.state.channels import MemorySubscription
from bastion.state.interface import (
    Script,
    ScriptArg,
    ScriptResult,
    ScriptStore,
    StateBackend,
    Subscription,
    Value,
    validate_ttl,
)

_NEVER = float("inf")
#: Expired keys are dropped when read, and in a sweep whenever the table has doubled since
#: the last one (so a stream of one-off keys, like per-client counters, stays bounded).
_MIN_SWEEP = 1024


def _as_bytes(value: Value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not a state value; store 1 or 0")
    return str(value).encode()


class _Table(ScriptStore):
    """The keys, with their expiry on ``clock``; the caller holds the lock.

    An integer is kept as an ``int`` (a counter, a rate limit's TAT: read and written on
    every request, so neither parsed nor formatted there) and read back as its decimal
    bytes by :meth:`get`, as Redis would answer."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.values: dict[str, tuple[bytes | int, float]] = {}
        self._sweep_at = _MIN_SWEEP

    def _live(self, key: str) -> tuple[bytes | int, float] | None:
        entry = self.values.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock():
            del self.values[key]
            return None
        return entry

    def _store(self, key: str, value: bytes | int, expires: float) -> None:
        self.values[key] = (value, expires)
        if len(self.values) >= self._sweep_at:
            now = self.clock()
            self.values = {k: e for k, e in self.values.items() if e[1] > now}
            self._sweep_at = max(_MIN_SWEEP, 2 * len(self.values))

    def _expiry(self, ttl: float | None) -> float:
        validate_ttl(ttl)
        return _NEVER if ttl is None else self.clock() + ttl

    def get(self, key: str) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        value = entry[0]
        return b"%d" % value if isinstance(value, int) else value

    def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        self._store(key, _as_bytes(value), self._expiry(ttl))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        entry = self._live(key)
        if entry is None:
            new, expires = amount, self._expiry(ttl)
        else:
            try:
                new = int(entry[0]) + amount
            except ValueError:
                raise ValueError(f"state key {key!r} does not hold an integer") from None
            expires = entry[1]
        self._store(key, new, expires)
        return new

    def delete(self, key: str) -> bool:
        return self._live(key) is not None and self.values.pop(key, None) is not None

    def get_int(self, key: str) -> int | None:
        # get() and int(), inlined: a rate limit reads one per limit on every request.
        entry = self.values.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock():
            del self.values[key]
            return None
        return int(entry[0])

    def set_int(self, key: str, value: int, ttl: float) -> None:
        self._store(key, value, self.clock() + ttl)

    def get_ints(self, keys: Sequence[str]) -> list[int | None]:
        # get_int of each, with the clock read once (a rate limit's keys, on every request).
        now = self.clock()
        values = self.values
        out: list[int | None] = []
        for key in keys:
            entry = values.get(key)
            if entry is None:
                out.append(None)
            elif entry[1] <= now:
                del values[key]
                out.append(None)
            else:
                value = entry[0]
                out.append(value if isinstance(value, int) else int(value))
        return out

    def set_ints(self, items: Sequence[tuple[str, int, float]]) -> None:
        now = self.clock()
        for key, value, ttl in items:
            self._store(key, value, now + ttl)

    def ttl(self, key: str) -> float | None:
        entry = self._live(key)
        if entry is None or entry[1] == _NEVER:
            return None
        return entry[1] - self.clock()


class MemoryBackend(StateBackend):
    """State in a dictionary of this process; ``clock`` (monotonic seconds) times expiry."""

    shared = False
    immediate = True

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._table = _Table(clock)
        # The event loop already runs one coroutine at a time; the lock also keeps a script
        # atomic against threads (a stage may use the backend from an executor).
        self._lock = threading.Lock()
        self._channels: dict[str, set[MemorySubscription]] = {}

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        with self._lock:
            return self._table.incr(key, amount, ttl)

    async def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._table.get(key)

    async def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        with self._lock:
            self._table.set(key, value, ttl)

    async def delete(self, key: str) -> bool:
        with self._lock:
            return self._table.delete(key)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[ScriptArg] = ()) -> ScriptResult:
        with self._lock:
            return script.local(self._table, keys, args)

    def run_now(self, script: Script, keys: Sequence[str], args: Sequence[ScriptArg] = ()) -> ScriptResult:
        with self._lock:
            return script.local(self._table, keys, args)

    async def publish(self, channel: str, message: bytes) -> None:
        for subscription in tuple(self._channels.get(channel, ())):
            subscription.queue.put_nowait(message)

    async def subscribe(self, channel: str) -> Subscription:
        return MemorySubscription(self._channels, channel)

    async def close(self) -> None:
        for listeners in tuple(self._channels.values()):
            for subscription in tuple(listeners):
                await subscription.close()

    def __len__(self) -> int:
        """Keys held, expired ones not yet swept included (for tests and metrics)."""
        return len(self._table.values)
