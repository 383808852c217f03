"""What a worker serves from: routes with their chains, and upstream pools.

Built from a :class:`LoadedConfig` once per (re)load. In-flight requests keep a reference
to the runtime they started with, so a reload never changes a request half-way through.

The stage objects come compiled from the loader; the worker starts them here
(:meth:`Runtime.start_stages`, with its services) before the runtime serves, and
:meth:`Runtime.close` closes them with the upstream pools once it serves no more: after a
reload, as soon as the last exchange that started on it has ended
(:meth:`Runtime.wait_idle`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from dataclasses import dataclass

from bastion.config.loader import LoadedConfig, ResolvedRoute
from bastion.config.model import GatewayConfig, Limits
from bastion.errors import BastionError
from bastion.pipeline.chain import Chain
from bastion.pipeline.stage import Stage
from bastion.proxy.bounds import Bounds
from bastion.proxy.metrics import METRICS
from bastion.proxy.tls import client_context
from bastion.proxy.upstream import UpstreamPool
from bastion.routing import Router
from bastion.services import Services
from bastion.stages.auth import auth_stage
from bastion.types import Block

log = logging.getLogger("bastion.runtime")


class StageStartError(BastionError):
    """A stage could not start in this worker; the message names the stage and route."""


@dataclass(slots=True)
class RouteRuntime:
    """A route as the proxy uses it."""

    resolved: ResolvedRoute
    chain: Chain
    #: ``None`` on a built-in route: its stage answers every request, nothing is forwarded.
    pool: UpstreamPool | None
    id: str
    service: str
    max_body_bytes: int
    #: Largest response body buffered whole for a stage that needs it (``needs_response_body``).
    max_response_body_bytes: int
    #: A larger one is refused with 502 (``False``) or passed on uninspected (``True``).
    pass_over_limit: bool
    #: Methods whose requests may carry a body on this route (``ResolvedRoute.body_methods``).
    body_methods: frozenset[str]
    #: Answered as soon as the request head is complete, before any body is read: the 401
    #: of a route that requires authentication nothing here can verify (decided at load;
    #: a route that verifies credentials does so in its chain's head phase instead).
    auth_refusal: Block | None
    #: The route's backend authenticates requests itself (``delegate: upstream``); logged.
    auth_delegated: bool
    #: Header, target and query limits checked once the request is routed (the listener's,
    #: tightened by the service and route).
    limits: Limits
    #: The same limits as the proxy reads them per request (plain integers).
    bounds: Bounds


def _count_stage_error(stage: str) -> None:
    METRICS.inc("bastion_stage_errors", (stage,))


class Runtime:
    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        cfg: GatewayConfig = loaded.config
        self.config = cfg
        self.pools: dict[str, UpstreamPool] = {}
        for svc in cfg.services:
            ctx: ssl.SSLContext | None = None
            if any(t.url.startswith("https://") for t in svc.upstream.targets):
                t = svc.upstream.tls
                ctx = client_context(ca=t.ca, cert=t.cert, key=t.key, verify=t.verify)
            self.pools[svc.name] = UpstreamPool(svc.name, svc.upstream, ctx)
        self.router: Router[RouteRuntime] = Router()
        #: Each stage object once, with the route it was built for (for messages).
        self.stages: list[tuple[Stage, str]] = []
        self._started: list[Stage] = []
        seen: set[int] = set()
        # Built-in routes' stages first: what they start (the OAuth server's keys) is what
        # services' routes may verify against.
        for r in (*loaded.builtin_routes, *loaded.routes):
            for stage in r.built:
                if id(stage) not in seen:
                    seen.add(id(stage))
                    self.stages.append((stage, r.id))
        for r in loaded.routes:
            # Stage objects were built (and their settings checked) by the loader.
            auth = auth_stage(r.built)
            if auth is None and not r.public:  # the loader guarantees it; never forward unchecked
                raise RuntimeError(f"route {r.id!r} requires authentication but has no auth stage")
            # The auth stage's hook runs only where it checks credentials: a refusal decided at
            # load is the prelude's (before the body checks), and a delegated route has none.
            stages = r.built if auth is None or auth.authenticates else [s for s in r.built if s is not auth]
            limits = r.limits if r.limits is not None else cfg.listen.limits
            rt = RouteRuntime(
                r,
                Chain(stages, _count_stage_error),
                self.pools[r.service],
                r.id,
                r.service,
                r.max_body_bytes,
                r.max_response_body_bytes,
                r.response_body_over_limit == "pass",
                r.body_methods,
                auth.refusal if auth is not None else None,
                auth is not None and auth.delegated,
                limits,
                Bounds(limits),
            )
            self.router.add(r.path, r.methods, rt, host=r.host, prefix=r.prefix, matrix=r.matrix_params)
        #: The routes the gateway answers itself, matched before services' (``None``: none).
        self.builtin: Router[RouteRuntime] | None = None
        for r in loaded.builtin_routes:
            if self.builtin is None:
                self.builtin = Router()
            limits = r.limits if r.limits is not None else cfg.listen.limits
            rt = RouteRuntime(
                r, Chain(r.built, _count_stage_error), None, r.id, r.service, r.max_body_bytes,
                r.max_response_body_bytes, False, r.body_methods, None, False, limits, Bounds(limits),
            )
            self.builtin.add(r.path, r.methods, rt)
        self.trusted = tuple(cfg.listen.trusted_proxies)
        self._trusted_cache: dict[str, bool] = {}
        self.limits = cfg.listen.limits
        self.bounds = Bounds(self.limits)
        self.timeouts = cfg.listen.timeouts
        tls = cfg.listen.tls
        self.hsts: str | None = None
        if tls is not None and tls.hsts.enabled:
            value = f"max-age={tls.hsts.max_age}"
            if tls.hsts.include_subdomains:
                value += "; includeSubDomains"
            if tls.hsts.preload:
                value += "; preload"
            self.hsts = value
        #: Exchanges that started on this runtime and have not ended: a replaced runtime
        #: is closed when this comes to 0 (see :meth:`wait_idle`).
        self.exchanges = 0
        self._idle: asyncio.Event | None = None

    def enter(self) -> None:
        """An exchange starts on this runtime (its stages and pools are in use)."""
        self.exchanges += 1

    def leave(self) -> None:
        """An exchange that started here has ended (answered, refused or cut)."""
        self.exchanges -= 1
        if self.exchanges == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, limit: float) -> bool:
        """Once no new exchange can start here (a reload replaced this runtime): wait until
        those in flight have ended, at most ``limit`` seconds. Tell whether they all did."""
        if self.exchanges == 0:
            return True
        idle = self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(idle.wait(), limit)
        except TimeoutError:
            return self.exchanges == 0
        return True

    def start(self) -> None:
        for pool in self.pools.values():
            pool.start()

    async def start_stages(self, services: Services) -> None:
        """Start every stage with the worker's ``services``, each once, in route order.

        If one fails, those already started are closed again and :class:`StageStartError`
        says which failed: a runtime is served with all its stages started or not at all.
        """
        for stage, route_id in self.stages:
            try:
                await stage.start(services)
            except Exception as exc:
                await self.close_stages()
                raise StageStartError(
                    f"stage {stage.name} (route {route_id}) could not start: {type(exc).__name__}: {exc}"
                ) from exc
            self._started.append(stage)

    async def close_stages(self) -> None:
        """Close the started stages (in reverse order); a failing close is logged, and the
        others are closed all the same."""
        started, self._started = self._started, []
        for stage in reversed(started):
            try:
                await stage.close()
            except Exception:
                log.exception("stage %s failed to close", stage.name)

    async def close(self) -> None:
        await self.close_stages()
        for pool in self.pools.values():
            await pool.close()

    def is_trusted(self, ip: str) -> bool:
        """Whether ``ip`` is one of the configured proxies (cached per address)."""
        if not self.trusted:
            return False
        known = self._trusted_cache.get(ip)
        if known is not None:
            return known
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            result = False
        else:
            result = any(addr in net for net in self.trusted)
        if len(self._trusted_cache) < 10000:
            self._trusted_cache[ip] = result
        return result
