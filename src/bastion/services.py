"""What a worker lends its stages: shared state, an HTTP client, a clock, its identity.

A stage is compiled from its settings in every process that loads the configuration
(``bastion check`` included), where it must do no I/O. Only a worker starts it, with
``await stage.start(services)``, and that is where a stage takes what it needs from here.

The services belong to the worker, not to one configuration: a hot reload starts the new
stages with the same services, so a Redis pool, the memory backend's counters and the HTTP
client live on. Only a change of ``backends`` builds new ones (see the worker).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, assert_never

from bastion.config.errors import ConfigIssue
from bastion.config.model import Backends, Consumer, StoreSettings
from bastion.errors import DependencyUnavailable
from bastion.state.interface import StateBackend
from bastion.state.memory import MemoryBackend

if TYPE_CHECKING:
    import httpx

    from bastion.config.loader import LoadedConfig
    from bastion.store import Store

log = logging.getLogger("bastion.services")

T = TypeVar("T")

#: Timeout of the shared HTTP client's requests (JWKS, introspection, webhooks) unless a
#: stage passes its own: short, since a request may be waiting on it.
HTTP_TIMEOUT = 5.0


class Clock:
    """Monotonic time (for durations and expiry) and wall time (for timestamps, tokens).

    Stages read time through this, so tests can move it (subclass and override both).
    """

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def readers(self) -> tuple[Callable[[], float], Callable[[], float]]:
        """``monotonic`` and ``wall`` as plain callables, for code that reads the time on
        every request: module time's own functions when this class's are not overridden
        (compiled code calling an interpreted method pays a Python frame, ~500 instructions
        a read), the overriding methods where a subclass moves time (tests)."""
        cls = type(self)
        monotonic = time.monotonic if cls.monotonic is Clock.monotonic else self.monotonic
        wall = time.time if cls.wall is Clock.wall else self.wall
        return monotonic, wall


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    """Which worker this is: of which instance, at which index, under which pid."""

    #: The gateway instance (one supervisor and its workers), unique across a fleet that
    #: shares a Redis: for keys and messages that belong to one instance.
    instance: str
    #: 0 .. workers-1, stable across a worker's restarts.
    index: int
    #: How many workers the instance runs.
    workers: int
    pid: int


def new_instance_id() -> str:
    """A fresh instance id: the host name and a random suffix."""
    return f"{os.uname().nodename}-{os.urandom(4).hex()}"


class Services:
    """The worker's shared resources, handed to each stage's ``start``."""

    def __init__(
        self,
        state: StateBackend,
        identity: WorkerIdentity,
        clock: Clock | None = None,
        store: StoreSettings | None = None,
        consumers: Sequence[Consumer] = (),
    ) -> None:
        self.state = state
        self.identity = identity
        self.clock = clock if clock is not None else Clock()
        #: The configuration's ``store:`` (resolved by the loader) and ``consumers:``.
        self.store_settings = store
        self._consumers = tuple(consumers)
        self._store: Store | None = None
        self._http: httpx.AsyncClient | None = None
        self._shared: dict[str, Any] = {}
        self.closed = False

    def shared(self, key: str, factory: Callable[[], T]) -> T:
        """The worker-wide object kept under ``key``, made by ``factory`` on first ask.

        For what several stages (or routes) use and a reload must not rebuild: a JWKS cache
        per URL, the snapshot of API keys. Keys are namespaced by their user
        (``"jwks:" + url``). An object with an ``aclose()`` coroutine is closed with the
        worker, after the stages.
        """
        if self.closed:
            raise RuntimeError("the worker's services are closed")
        if key not in self._shared:
            self._shared[key] = factory()
        found: T = self._shared[key]
        return found

    @property
    def http(self) -> httpx.AsyncClient:
        """An HTTP client on the worker's event loop, created on first use, closed with the worker."""
        if self.closed:
            raise RuntimeError("the worker's services are closed")
        if self._http is None:
            import httpx  # only workers whose stages call out pay for it

            self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)
        return self._http

    @property
    def store(self) -> Store:
        """The durable store the configuration names, made on first use without I/O: its
        first query connects, migrates and syncs the declared consumers, so call it in a
        thread (``asyncio.to_thread``), never on the request path. Closed with the worker."""
        if self.closed:
            raise RuntimeError("the worker's services are closed")
        if self._store is None:
            if self.store_settings is None:
                raise RuntimeError("these services were built without a store")
            from bastion.store import Store  # SQLAlchemy only in workers that use the store

            self._store = Store(self.store_settings, self._consumers)
        return self._store

    async def sync_consumers(self, consumers: Sequence[Consumer]) -> None:
        """A reloaded configuration's ``consumers:``: synced into the store at once if it
        is open (in a thread), else when it opens. Raises ``StoreError`` if it cannot be."""
        self._consumers = tuple(consumers)
        if self._store is not None:
            await asyncio.to_thread(self._store.sync_declared, self._consumers)

    async def check(self) -> None:
        """Tell, in the log, whether the state backend answers now (the worker starts anyway:
        stages that need it fail by their ``failure_mode`` until it does)."""
        try:
            await self.state.ping()
        except DependencyUnavailable as exc:
            log.warning("%s (until it is back, stages that keep state fail: 503 where failure_mode is closed)", exc)

    async def close(self) -> None:
        """Release everything; once, when no stage uses these services any more."""
        if self.closed:
            return
        self.closed = True
        for key, obj in list(self._shared.items()):
            aclose = getattr(obj, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # one failing close must not keep the others open
                    log.exception("closing the worker's shared %s failed", key)
        self._shared.clear()
        if self._http is not None:
            await self._http.aclose()
        if self._store is not None:
            await asyncio.to_thread(self._store.close)
        await self.state.close()


def build_services(
    backends: Backends,
    identity: WorkerIdentity,
    clock: Clock | None = None,
    store: StoreSettings | None = None,
    consumers: Sequence[Consumer] = (),
) -> Services:
    """The services ``backends`` and ``store`` describe (no I/O yet: connections open on first use)."""
    clock = clock if clock is not None else Clock()
    state: StateBackend
    if backends.state == "memory":
        state = MemoryBackend(clock.monotonic)
    elif backends.state == "redis":
        # The model guarantees it; the check keeps the type checker (and -O) honest.
        if backends.redis is None:
            raise ValueError("backends.state is 'redis' but backends.redis is not set")
        from bastion.state.redis import RedisBackend  # redis-py only where it is used

        r = backends.redis
        state = RedisBackend(r.url, timeout=r.timeout, key_prefix=r.key_prefix, max_connections=r.max_connections)
    else:
        assert_never(backends.state)
    return Services(state, identity, clock, store, consumers)


def check_backends(loaded: LoadedConfig, workers: int) -> ConfigIssue | None:
    """Refuse a per-process state backend when several workers would each keep their own
    state for a stage that needs it shared (a limit of 100 would become 100 per worker)."""
    if workers <= 1 or loaded.config.backends.state != "memory":
        return None
    for route in (*loaded.builtin_routes, *loaded.routes):
        for stage in route.built:
            if stage.uses_state:
                return ConfigIssue(
                    str(loaded.path),
                    None,
                    "backends.state",
                    f"the stage {stage.name} (route {route.id}) keeps state, and the memory backend keeps it "
                    f"in each worker process: {workers} workers would each count on their own. "
                    "Set backends: {state: redis, redis: {url: ...}}, or run one worker (--workers 1).",
                )
    return None
