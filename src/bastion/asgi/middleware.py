"""The embedded mode's ASGI middleware: Bastion's stages in the application's process.

``BastionMiddleware(app, config="bastion.yaml")`` loads and compiles the configuration at
once (every error a ``ConfigError``, as ``bastion check`` reports it), then serves as the
gateway's worker does: its services (the state backend, an HTTP client, the store), the
stages started with them, and the record sinks (metrics, the access log, the audit log,
the detectors) are started on ``lifespan.startup`` and closed after
``lifespan.shutdown``. An application without lifespan support gets Bastion's own
(the server sees a lifespan that works); a server that runs no lifespan at all
(``uvicorn --lifespan off``) gets them started on the first request instead, and a start
that fails answers ``503`` (fail closed) and is tried again on the next request.

WebSocket connections are refused (closed before they are accepted, ``403`` from the
server), as the gateway refuses protocol upgrades.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from bastion.asgi.config import load_embedded
from bastion.asgi.exchange import EmbeddedExchange
from bastion.asgi.types import ASGIApp, Message, Receive, Scope, Send
from bastion.audit import AuditSink
from bastion.config.loader import LoadedConfig
from bastion.detect import Detectors
from bastion.errors import problem_response
from bastion.proxy.accesslog import AccessLog
from bastion.proxy.metrics import CountMetrics
from bastion.proxy.prelude import next_request_id
from bastion.proxy.record import RecordSinks
from bastion.proxy.runtime import Runtime
from bastion.sensitive.evidence import EvidenceRedactor
from bastion.services import Services, WorkerIdentity, build_services, new_instance_id
from bastion.stages.concurrency import ConcurrencyStage, ReleaseInFlight

log = logging.getLogger("bastion.asgi")


class BastionStartError(Exception):
    """The stages or their services could not start (the message says which and why)."""


class _Serving:
    """What a started middleware serves with; closed as a whole."""

    def __init__(
        self,
        runtime: Runtime,
        sinks: RecordSinks,
        services: Services,
        access: AccessLog,
        audit: AuditSink | None,
        detectors: Detectors | None,
    ) -> None:
        self.runtime = runtime
        self.sinks = sinks
        self.services = services
        self.access = access
        self.audit = audit
        self.detectors = detectors

    async def close(self) -> None:
        if self.detectors is not None:  # before the services: it counts in their state backend
            await self.detectors.close()
        await self.runtime.close_stages()
        await self.services.close()
        self.access.close()
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close)


class BastionMiddleware:
    """An ASGI application that runs ``app`` behind the stages ``config`` declares."""

    def __init__(self, app: ASGIApp, config: str | Path | LoadedConfig) -> None:
        self.app = app
        self.loaded = config if isinstance(config, LoadedConfig) else load_embedded(config)
        for warning in self.loaded.warnings:
            log.warning("%s", warning)
        self.identity = WorkerIdentity(new_instance_id(), 0, 1, os.getpid())
        self._serving: _Serving | None = None
        self._starting = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": "WebSocket is not supported"})
        else:
            raise ValueError(f"Bastion refuses ASGI connections of type {kind!r}.")

    # -- requests --------------------------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        serving = self._serving
        if serving is None:
            try:
                serving = await self._started()
            except BastionStartError as exc:
                log.error("%s; answering 503 until a start succeeds", exc)
                await _send_problem(send, 503, "The service is not ready; retry the request.")
                return
        await EmbeddedExchange(serving.runtime, serving.sinks, self.app, scope, receive, send).run()

    async def _started(self) -> _Serving:
        async with self._starting:
            if self._serving is None:
                await self.startup()
            assert self._serving is not None
            return self._serving

    # -- lifespan ----------------------------------------------------------------------------
    async def startup(self) -> None:
        """Build the services, start every stage and the record sinks (as a gateway worker
        does); :class:`BastionStartError` when one cannot start (nothing stays open)."""
        if self._serving is not None:
            return
        config = self.loaded.config
        services = build_services(config.backends, self.identity, None, config.store, config.consumers)
        await services.check()
        audit: AuditSink | None = None
        try:
            if config.audit.enabled:
                audit = AuditSink(config.audit, config.store, self.identity)
                audit.start()
        except OSError as exc:
            await services.close()
            raise BastionStartError(f"the audit log cannot start: {exc}") from None
        runtime = Runtime(self.loaded)
        try:
            await runtime.start_stages(services)
        except Exception as exc:
            if audit is not None:
                await asyncio.to_thread(audit.close)
            await services.close()
            raise BastionStartError(str(exc)) from None
        access = AccessLog(config.access_log.path if config.access_log.enabled else None)
        detectors: Detectors | None = None
        if config.detectors.enabled:
            detectors = Detectors(config.detectors, services)
            detectors.start()
        # The gateway worker's sinks, in its order (docs/concepts.md: record sinks). Only a
        # concurrency stage counts requests in flight: without one (the configuration is
        # never reloaded here) there is nothing to release, and no call per request for it.
        counts_in_flight = any(isinstance(stage, ConcurrencyStage) for stage, _ in runtime.stages)
        sinks = RecordSinks(
            [
                *([ReleaseInFlight()] if counts_in_flight else []),
                CountMetrics(),
                access,
                *([audit] if audit is not None else []),
                *([detectors] if detectors is not None else []),
            ],
            EvidenceRedactor(config.access_log.redact_fields),
        )
        self._serving = _Serving(runtime, sinks, services, access, audit, detectors)
        log.info("bastion embedded: %d routes, stages started", len(self.loaded.routes))

    async def shutdown(self) -> None:
        """Close the stages, the sinks and the services (after the application's own shutdown)."""
        serving, self._serving = self._serving, None
        if serving is not None:
            await serving.close()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        failure: list[str] = []
        received = False

        async def app_receive() -> Message:
            nonlocal received
            received = True
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except BastionStartError as exc:
                    failure.append(f"Bastion could not start: {exc}")
            return message

        async def app_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and failure:
                message = {"type": "lifespan.startup.failed", "message": failure[0]}
            await send(message)
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.shutdown()

        try:
            await self.app(scope, app_receive, app_send)
        except Exception:
            if received:
                raise
            log.debug("the application has no lifespan support: Bastion runs its own")
        if not received:
            await self._own_lifespan(receive, send)

    async def _own_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except BastionStartError as exc:
                    await send({"type": "lifespan.startup.failed", "message": f"Bastion could not start: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _send_problem(send: Send, status: int, detail: str) -> None:
    resp = problem_response(status, detail, next_request_id())
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
    headers.append((b"content-length", str(len(resp.body or b"")).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": resp.body or b""})


def protect(app: ASGIApp, config: str | Path | LoadedConfig) -> BastionMiddleware:
    """``app`` behind the stages of ``config`` (a ``bastion.yaml`` path, read for the
    embedded mode: :func:`bastion.asgi.config.load_embedded`)."""
    return BastionMiddleware(app, config)


__all__ = ["BastionMiddleware", "BastionStartError", "protect"]
