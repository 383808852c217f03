"""What every state backend offers: the one interface stages program against.

State is what several workers (and several Bastion instances) must agree on: counters of a
rate limit, a revoked token, a blocked client. A stage gets a backend through
``services.state`` when its worker starts it, and never knows which implementation it has.

Every method may raise :class:`~bastion.errors.DependencyUnavailable` when the backend
cannot be reached in time; the chain then applies the stage's ``failure_mode`` (closed:
503, open: the request passes), and counts the failure either way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

#: A value as a backend stores it; text is stored as its UTF-8 bytes.
Value = bytes | str | int | float
#: Arguments of a script (besides its keys), and what a script may return.
ScriptArg = bytes | str | int | float
ScriptResult = int | bytes | None | list[int | bytes | None]


class ScriptStore(ABC):
    """The keys a script sees in the memory backend: synchronous, under the backend's lock.

    Values come back as bytes (like Redis); missing or expired keys as ``None``.
    """

    @abstractmethod
    def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def set(self, key: str, value: Value, ttl: float | None = None) -> None: ...

    @abstractmethod
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int: ...

    @abstractmethod
    def delete(self, key: str) -> bool: ...

    @abstractmethod
    def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires; ``None`` if it is missing or never expires."""

    def get_int(self, key: str) -> int | None:
        """``int(get(key))``: what a script reads on every request, which a store may do faster."""
        value = self.get(key)
        return None if value is None else int(value)

    def set_int(self, key: str, value: int, ttl: float) -> None:
        """``set(key, value, ttl)`` for an integer and a positive ``ttl`` (checked by the caller)."""
        self.set(key, value, ttl)

    def get_ints(self, keys: Sequence[str]) -> list[int | None]:
        """:meth:`get_int` of each key: what a script reads on every request, in one call."""
        return [self.get_int(key) for key in keys]

    def set_ints(self, items: Sequence[tuple[str, int, float]]) -> None:
        """:meth:`set_int` of each ``(key, value, ttl)``, in one call."""
        for key, value, ttl in items:
            self.set_int(key, value, ttl)


@dataclass(frozen=True, slots=True)
class Script:
    """A small atomic operation over several keys, written once for each backend.

    ``lua`` runs on Redis (``EVALSHA``, with ``KEYS`` and ``ARGV``); ``local`` is the same
    logic in Python, run by the memory backend under its lock, over the same keys (already
    prefixed) and arguments. The interface tests run each script on both backends, so the
    two versions are checked against each other.
    """

    name: str
    lua: str
    local: Callable[[ScriptStore, Sequence[str], Sequence[ScriptArg]], ScriptResult]


class PreparedScript:
    """A script whose arguments after the first are fixed, made once by a backend
    (:meth:`StateBackend.prepare`) for :meth:`StateBackend.run_prepared`: what a stage runs on
    every request (a rate limit's numbers never change), so a backend can encode the fixed
    part of the command once (Redis: the ``EVALSHA`` frame around the keys and ``now``)."""

    __slots__ = ("key_count", "script", "tail")

    def __init__(self, script: Script, key_count: int, tail: Sequence[ScriptArg]) -> None:
        self.script = script
        self.key_count = key_count
        self.tail = tuple(tail)


class Subscription(ABC):
    """Messages published on one channel after :meth:`StateBackend.subscribe` returned."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @abstractmethod
    async def close(self) -> None:
        """Stop receiving; the iterator ends."""


class StateBackend(ABC):
    """Shared state with expiry. Keys are plain strings; the backend adds its own prefix.

    Expiry (``ttl``, in seconds) is set when a key is created and not refreshed by later
    increments: a counter created with ``ttl=60`` is a fixed window of 60 seconds.
    """

    #: Whether every worker of every instance sees the same state (Redis), or only this
    #: process does (memory). The supervisor refuses a per-process backend with more than
    #: one worker when a stage keeps state.
    shared: bool = False
    #: Whether :meth:`run_now` answers at once, without I/O (the memory backend): a stage
    #: on the request path may then decide without handing the chain an awaitable.
    immediate: bool = False

    def run_now(self, script: Script, keys: Sequence[str], args: Sequence[ScriptArg] = ()) -> ScriptResult:
        """:meth:`run`, answered at once; only where :attr:`immediate` is true."""
        raise NotImplementedError(f"{type(self).__name__} cannot run a script without waiting")

    @abstractmethod
    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to the counter ``key`` (0 when missing) and return the new value;
        a counter this call creates expires after ``ttl`` seconds."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or ``None`` when it is missing or expired."""

    @abstractmethod
    async def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, expiring after ``ttl`` seconds (never when ``None``)."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key``; tell whether it existed."""

    @abstractmethod
    async def run(self, script: Script, keys: Sequence[str], args: Sequence[ScriptArg] = ()) -> ScriptResult:
        """Run ``script`` atomically over ``keys``: no other command sees a state half-way."""

    def prepare(self, script: Script, key_count: int, tail: Sequence[ScriptArg]) -> PreparedScript:
        """``script`` over ``key_count`` keys, its arguments after the first always ``tail``."""
        return PreparedScript(script, key_count, tail)

    def run_prepared(self, prepared: PreparedScript, keys: Sequence[str], first: ScriptArg) -> Awaitable[ScriptResult]:
        """:meth:`run` of ``prepared.script`` over ``keys`` (``prepared.key_count`` of them),
        with ``first`` and then ``prepared.tail`` as its arguments."""
        return self.run(prepared.script, keys, (first, *prepared.tail))

    @abstractmethod
    async def publish(self, channel: str, message: bytes) -> None:
        """Send ``message`` to every current subscriber of ``channel`` (at most once each)."""

    @abstractmethod
    async def subscribe(self, channel: str) -> Subscription:
        """Receive what is published on ``channel`` from now on (close it when done)."""

    async def ping(self) -> None:
        """Raise :class:`~bastion.errors.DependencyUnavailable` if the backend is unreachable."""
        return None

    async def close(self) -> None:
        """Release connections; called once, when the worker stops using the backend."""
        return None


def validate_ttl(ttl: float | None) -> None:
    """A TTL is positive (an expired-on-arrival key is a caller's bug, not a state)."""
    if ttl is not None and not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
