"""Upstream side: the targets of a service, load balancing, health and circuit breaking,
and the pool of kept-alive connections.

One :class:`UpstreamPool` per service and worker. A request borrows a kept-alive
connection to the chosen target (or opens one): an
:class:`~bastion.proxy.upstream_connection.UpstreamConnection`, which writes a head
Bastion serialised itself (so the upstream only ever sees Bastion's framing) and reads the
response with llhttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from urllib.parse import urlsplit

from bastion.config.model import Upstream
from bastion.proxy.metrics import METRICS
from bastion.proxy.upstream_connection import UpstreamConnection
from bastion.proxy.upstream_errors import UpstreamConnectError, UpstreamError, UpstreamUnavailable

log = logging.getLogger("bastion.upstream")


class TargetState:
    """One upstream address, its health and its circuit breaker (per worker)."""

    def __init__(self, url: str, weight: int, pool: UpstreamPool) -> None:
        parts = urlsplit(url)
        self.url = url
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        default_port = (parts.scheme == "https" and self.port == 443) or (parts.scheme == "http" and self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.host_line = f"host: {self.host_header}\r\n"
        self.weight = weight
        self.pool = pool
        self.idle: deque[UpstreamConnection] = deque()
        self.active = 0
        self.healthy = True
        self._health_streak = 0
        self.failures = 0
        self.open_until = 0.0
        self.half_open_trial = False

    def available(self, now: float) -> bool:
        if not self.healthy:
            return False
        if self.open_until:
            if now < self.open_until:
                return False
            # Cooldown over: let exactly one trial request through (half-open).
            if self.half_open_trial:
                return False
        return True

    def record_success(self) -> None:
        self.failures = 0
        if self.open_until:
            self._changed("circuit_closed", "circuit_open", -1.0)
        self.open_until = 0.0
        self.half_open_trial = False

    def _changed(self, to: str, why: str, amount: float) -> None:
        """Count a change of state, and the worker in or out of the unavailable gauge (rare:
        never on a request that finds the target as it was)."""
        service = self.pool.service
        METRICS.inc("bastion_upstream_transitions", (service, self.url, to))
        METRICS.labeled_gauge_add("bastion_upstream_unavailable", (service, self.url, why), amount)

    def record_failure(self, now: float) -> None:
        breaker = self.pool.config.circuit_breaker
        if not breaker.enabled:
            return
        self.failures += 1
        if self.open_until or self.failures >= breaker.failures:
            if not self.open_until:
                log.warning("circuit opened for upstream %s after %d failures", self.url, self.failures)
                self._changed("circuit_open", "circuit_open", 1.0)
            self.open_until = now + breaker.cooldown
            self.half_open_trial = False

    def health_result(self, ok: bool) -> None:
        hc = self.pool.config.health_check
        if hc is None:
            return
        if ok == self.healthy:
            self._health_streak = 0
            return
        self._health_streak += 1
        needed = hc.healthy_threshold if ok else hc.unhealthy_threshold
        if self._health_streak >= needed:
            self.healthy = ok
            self._health_streak = 0
            log.warning("upstream %s is now %s", self.url, "healthy" if ok else "unhealthy")
            self._changed("healthy" if ok else "unhealthy", "unhealthy", -1.0 if ok else 1.0)


class UpstreamPool:
    """The targets of one service, with their pooled connections."""

    def __init__(self, service: str, config: Upstream, ssl_context: ssl.SSLContext | None) -> None:
        self.service = service
        self.config = config
        # Read on every forwarded request: plain attributes rather than the settings model's
        # fields (a pydantic field read from compiled code costs ~330 instructions).
        self.total_timeout: float = config.timeouts.total
        self.read_timeout: float = config.timeouts.read
        self.max_idle_connections: int = config.max_idle_connections
        self.ssl_context = ssl_context
        #: Upstream credentials (``upstream.credentials``): the header names the gateway sets,
        #: a client's own dropped, and their lines as sent ('': none).
        self.credential_names: frozenset[str] = frozenset()
        self.credential_lines = ""
        if config.credentials is not None:
            self.credential_names, self.credential_lines = config.credentials.header_lines()
        self.targets = [TargetState(t.url, t.weight, self) for t in config.targets]
        # Weighted round robin: each target appears `weight` times in the cycle.
        self._cycle = [t for t in self.targets for _ in range(t.weight)]
        self._single = self.targets[0] if len(self.targets) == 1 else None
        self._next = 0
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._sweep_idle()))
        if self.config.health_check is not None:
            for target in self.targets:
                self._tasks.append(loop.create_task(self._health_loop(target)))

    async def close(self) -> None:
        """Stop background work and close idle connections; busy ones close when released."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for target in self.targets:
            while target.idle:
                target.idle.pop().close()

    def choose(self, exclude: TargetState | None = None) -> TargetState:
        """Pick a target by the configured balancing; raise when none can take traffic."""
        single = self._single
        if single is not None and single.healthy and not single.open_until and exclude is None:
            return single
        now = time.monotonic()
        if self.config.balance == "least_connections":
            best: TargetState | None = None
            for t in self.targets:
                if t is exclude or not t.available(now):
                    continue
                if best is None or t.active * best.weight < best.active * t.weight:
                    best = t
            if best is None and exclude is not None and exclude.available(now):
                best = exclude
            if best is None:
                raise UpstreamUnavailable("no healthy upstream target")
            return self._take(best)
        cycle = self._cycle
        n = len(cycle)
        for _ in range(n):
            t = cycle[self._next % n]
            self._next += 1
            if t is not exclude and t.available(now):
                return self._take(t)
        if exclude is not None and exclude.available(now):
            return self._take(exclude)
        raise UpstreamUnavailable("no healthy upstream target")

    @staticmethod
    def _take(target: TargetState) -> TargetState:
        if target.open_until:
            target.half_open_trial = True
        return target

    @staticmethod
    def pooled(target: TargetState) -> UpstreamConnection | None:
        """A kept-alive connection to ``target``, if one is idle (no await needed)."""
        idle = target.idle
        while idle:
            conn = idle.pop()
            if conn.usable():
                conn.idle_since = 0.0
                return conn
            conn.close()
        return None

    async def acquire(self, target: TargetState, deadline: float, fresh: bool = False) -> UpstreamConnection:
        """A connection to ``target``: a pooled one (unless ``fresh``), or a new one."""
        conn = None if fresh else self.pooled(target)
        if conn is not None:
            return conn
        loop = asyncio.get_running_loop()
        timeout = min(self.config.timeouts.connect, max(0.001, deadline - time.monotonic()))
        ssl_ctx = self.ssl_context if target.scheme == "https" else None
        server_name = self.config.tls.server_name or target.host if ssl_ctx else None
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(target),
                    target.host,
                    target.port,
                    ssl=ssl_ctx,
                    server_hostname=server_name,
                )
        except TimeoutError:
            raise UpstreamConnectError(f"connect to {target.url} timed out", retryable=True) from None
        except ssl.SSLError as exc:
            raise UpstreamConnectError(
                f"TLS handshake with {target.url} failed: {exc.reason}", retryable=True
            ) from None
        except OSError as exc:
            raise UpstreamConnectError(
                f"connect to {target.url} failed: {exc.strerror or exc}", retryable=True
            ) from None
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection after a complete exchange, or close it."""
        target = conn.target
        if not self._closed and conn.reusable() and len(target.idle) < self.max_idle_connections:
            conn.idle_since = time.monotonic()
            conn.prepare_idle()
            target.idle.append(conn)
        else:
            conn.close()

    async def _sweep_idle(self) -> None:
        # Close connections unused for idle_timeout so the upstream is not the one to do it
        # (an upstream-side close racing a new request is what makes reuse fail).
        while True:
            await asyncio.sleep(min(5.0, self.config.idle_timeout / 2))
            limit = time.monotonic() - self.config.idle_timeout
            for target in self.targets:
                while target.idle and target.idle[0].idle_since < limit:
                    target.idle.popleft().close()

    async def _health_loop(self, target: TargetState) -> None:
        hc = self.config.health_check
        assert hc is not None  # only started when configured
        while True:
            ok = False
            try:
                deadline = time.monotonic() + hc.timeout
                conn = await self.acquire(target, deadline)
                head = (
                    f"GET {target.base_path}{hc.path} HTTP/1.1\r\n"
                    f"host: {target.host_header}\r\nuser-agent: bastion-health\r\n{self.credential_lines}\r\n"
                )
                conn.begin("GET", time.monotonic() + hc.timeout, hc.timeout)
                conn.write(head.encode("latin-1"))
                conn.end_request()
                resp = await conn.response_head()
                await conn.read_body_into(None)
                ok = resp.status in hc.expected_status
                self.release(conn)
            except (UpstreamError, OSError):
                ok = False
            target.health_result(ok)
            await asyncio.sleep(hc.interval)
