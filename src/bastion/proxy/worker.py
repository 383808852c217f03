"""A data-plane worker process: one event loop, one listener, hot reload, graceful drain.

The supervisor starts N of these (``python -m bastion.proxy.worker``). Each binds the
data port with SO_REUSEPORT, so the kernel spreads connections over workers and one
worker's crash leaves the others serving.

A worker owns the services its stages share (:mod:`bastion.services`: the state backend,
an HTTP client, a clock). It starts every stage of a configuration with them before the
configuration serves, and closes the stages once it serves no more. A reload keeps the
services -- counters in the memory backend, the Redis pool, the store -- unless ``backends``
or ``store`` changed, which builds new ones for the new configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable

import uvloop

from bastion.audit import AuditSink
from bastion.audit.otel import OtelExporter, route_templates
from bastion.config import ConfigError, LoadedConfig, load_config
from bastion.detect import Detectors
from bastion.logs import setup_logging
from bastion.proxy.accesslog import AccessLog
from bastion.proxy.metrics import METRICS, CountMetrics
from bastion.proxy.record import RecordSinks
from bastion.proxy.runtime import Runtime, StageStartError
from bastion.proxy.server import GatewayServer
from bastion.proxy.tls import server_context
from bastion.sensitive.evidence import EvidenceRedactor
from bastion.services import Clock, Services, WorkerIdentity, build_services, check_backends, new_instance_id
from bastion.stages.concurrency import ReleaseInFlight

log = logging.getLogger("bastion.worker")

#: The longest an old runtime (its stages and upstream connections) lives on after a reload,
#: for requests that started on it and are stuck: it is closed as soon as they end.
RELOAD_GRACE = 30.0


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket with SO_REUSEPORT (shared by all workers)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def tls_context(loaded: LoadedConfig) -> ssl.SSLContext | None:
    tls = loaded.config.listen.tls
    if tls is None:
        return None
    return server_context(tls.cert, tls.key, min_version=tls.min_version, client_ca=tls.client_ca)


#: How a worker reads its configuration: :func:`load_config`, or (in tests) a function
#: that adds stages of their own to what it loads.
Loader = Callable[[str], LoadedConfig]


class WorkerStartError(Exception):
    """The worker could not start serving (a stage failed to start)."""


class Worker:
    """One worker: its services, the runtime it serves and the ones a reload replaced.

    ``identity`` says which worker of which instance this is (the supervisor passes it);
    ``load`` reads the configuration (tests pass a loader that adds a stage of their own);
    ``clock`` is the services' clock (tests pass one they move).
    """

    def __init__(
        self,
        config_path: str,
        ready_fd: int | None = None,
        *,
        identity: WorkerIdentity | None = None,
        load: Loader = load_config,
        clock: Clock | None = None,
    ) -> None:
        self.config_path = config_path
        self.ready_fd = ready_fd
        self.identity = identity if identity is not None else WorkerIdentity(new_instance_id(), 0, 1, os.getpid())
        self._load = load
        self.clock = clock
        self.loaded = self._checked(load(config_path))
        self.stop_event = asyncio.Event()
        self.server: GatewayServer | None = None
        self.access: AccessLog | None = None
        self.audit: AuditSink | None = None
        self.detectors: Detectors | None = None
        self.otel: OtelExporter | None = None
        self.services: Services | None = None
        #: Runtimes replaced by a reload, closed when their last exchange ends (at most
        #: RELOAD_GRACE later, or at stop, whichever first).
        self._retiring: dict[asyncio.Task[None], tuple[Runtime, Services | None]] = {}
        self._reloads: list[asyncio.Task[bool]] = []
        self._reloading = asyncio.Lock()

    def _checked(self, loaded: LoadedConfig) -> LoadedConfig:
        issue = check_backends(loaded, self.identity.workers)
        if issue is not None:
            raise ConfigError([issue])
        return loaded

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT (SIGHUP reloads), then drain and stop."""
        await self.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
        if self.ready_fd is not None:
            # Tell the supervisor this worker is listening (for /ready).
            os.write(self.ready_fd, b"1")
            os.close(self.ready_fd)
            self.ready_fd = None
        await self.stop_event.wait()
        await self.stop()

    async def start(self) -> None:
        """Build the services, start the stages, then listen."""
        loaded = self.loaded
        listen = loaded.config.listen
        services = self.services = self._build_services(loaded)
        await services.check()
        try:
            self.audit = self._start_audit(loaded)
        except OSError as exc:
            await services.close()
            raise WorkerStartError(f"the audit log cannot start: {exc}") from None
        runtime = Runtime(loaded)
        try:
            await runtime.start_stages(services)
        except StageStartError as exc:
            await self._stop_audit()
            await services.close()
            raise WorkerStartError(str(exc)) from None
        runtime.start()
        self.access = AccessLog(loaded.config.access_log.path if loaded.config.access_log.enabled else None)
        # Every exchange's record goes to these, in this order (docs/concepts.md: record sinks).
        audit = [self.audit] if self.audit is not None else []
        detectors = [self._start_detectors(loaded, services)] if loaded.config.detectors.enabled else []
        otel = [self._start_otel(loaded, services)] if self.audit is not None and loaded.config.audit.otel else []
        sinks = RecordSinks(
            [ReleaseInFlight(), CountMetrics(), self.access, *audit, *detectors, *otel],
            EvidenceRedactor(loaded.config.access_log.redact_fields),
        )
        self.server = GatewayServer(runtime, sinks)
        await self.server.start(
            listen_socket(listen.host, listen.port), tls_context(loaded), handshake_timeout=listen.timeouts.handshake
        )
        METRICS.start(os.environ.get("BASTION_METRICS_DIR"))
        log.info("worker ready on %s:%d", listen.host, listen.port)

    async def stop(self) -> None:
        """Drain the listener, close every stage and pool, then the services."""
        if self.server is not None:
            await self.server.drain(grace=self.loaded.config.listen.timeouts.drain)
        if self.detectors is not None:  # before the services close: it counts in their state backend
            if self.audit is not None:  # the last losses are logged and counted, not alerted
                self.audit.on_loss = None
            detectors, self.detectors = self.detectors, None
            await detectors.close()
        if self.otel is not None:  # before the services close: it exports with their HTTP client
            otel, self.otel = self.otel, None
            await otel.close()
        await self.shut_down()
        if self.access is not None:
            self.access.close()
        await self._stop_audit()
        METRICS.stop()

    def _start_detectors(self, loaded: LoadedConfig, services: Services) -> Detectors:
        """The detectors' sink, its task started on this loop (and told of audit records lost)."""
        detectors = self.detectors = Detectors(loaded.config.detectors, services)
        detectors.start()
        if self.audit is not None:
            loop = asyncio.get_running_loop()

            def lost(count: int) -> None:
                loop.call_soon_threadsafe(detectors.audit_loss, count)

            self.audit.on_loss = lost
        return detectors

    def _start_otel(self, loaded: LoadedConfig, services: Services) -> OtelExporter:
        """The OpenTelemetry exporter's sink, its task started on this loop."""
        settings = loaded.config.audit.otel
        assert settings is not None
        self.otel = OtelExporter(settings, self.identity, services.http, route_templates(loaded.routes))
        self.otel.start()
        return self.otel

    def _start_audit(self, loaded: LoadedConfig) -> AuditSink | None:
        """The audit sink, its files open and its writer started (``None``: no audit log)."""
        config = loaded.config
        if not config.audit.enabled:
            return None
        audit = AuditSink(config.audit, config.store, self.identity)
        audit.start()
        return audit

    async def _stop_audit(self) -> None:
        """Every queued audit record written (to the spool, the output and the store)."""
        if self.audit is not None:
            audit, self.audit = self.audit, None
            await asyncio.to_thread(audit.close)

    async def shut_down(self) -> None:
        """After the drain: close every runtime's stages and pools, then the services."""
        for reload in self._reloads:
            reload.cancel()
        await asyncio.gather(*self._reloads, return_exceptions=True)
        if self.server is not None:
            await self.server.runtime.close()
        retiring = list(self._retiring.items())
        self._retiring.clear()
        for task, (old, old_services) in retiring:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await old.close()
            if old_services is not None:
                await old_services.close()
        if self.services is not None:
            await self.services.close()

    def _build_services(self, loaded: LoadedConfig) -> Services:
        config = loaded.config
        return build_services(config.backends, self.identity, self.clock, config.store, config.consumers)

    def reload(self) -> None:
        """SIGHUP: load the config again, in a task (stages start asynchronously)."""
        task = asyncio.get_running_loop().create_task(self.apply_reload())
        self._reloads.append(task)
        task.add_done_callback(self._reloads.remove)

    async def apply_reload(self) -> bool:
        """Load the config again; on any error keep serving the current one. Tell whether
        the new configuration now serves."""
        async with self._reloading:  # one at a time, in the order asked
            return await self._apply_reload()

    async def _apply_reload(self) -> bool:
        assert self.server is not None and self.services is not None
        try:
            loaded = self._checked(self._load(self.config_path))
            runtime = Runtime(loaded)
        except ConfigError as exc:
            METRICS.inc("bastion_config_reloads", ("rejected",))
            log.error("reload rejected, still serving the previous configuration:\n%s", exc)
            return False
        except Exception:
            METRICS.inc("bastion_config_reloads", ("rejected",))
            log.exception("reload failed, still serving the previous configuration")
            return False
        # The services outlive the configuration (state survives a reload), unless the
        # backends themselves changed: then the new configuration gets the new backends.
        new_services: Services | None = None
        old_config = self.loaded.config
        if (loaded.config.backends, loaded.config.store) != (old_config.backends, old_config.store):
            new_services = self._build_services(loaded)
            await new_services.check()
        elif loaded.config.consumers != old_config.consumers:
            try:
                await self.services.sync_consumers(loaded.config.consumers)
            except Exception as exc:  # StoreError, or the driver's: the consumers must not drift
                METRICS.inc("bastion_config_reloads", ("rejected",))
                log.error("reload rejected, still serving the previous configuration: consumers: %s", exc)
                return False
        try:
            await runtime.start_stages(new_services or self.services)
        except StageStartError as exc:
            if new_services is not None:
                await new_services.close()
            METRICS.inc("bastion_config_reloads", ("rejected",))
            log.error("reload rejected, still serving the previous configuration: %s", exc)
            return False
        old_listen = self.loaded.config.listen
        new_listen = loaded.config.listen
        if (new_listen.host, new_listen.port, new_listen.tls, new_listen.timeouts.handshake) != (
            old_listen.host,
            old_listen.port,
            old_listen.tls,
            old_listen.timeouts.handshake,
        ):
            log.warning("listen address and TLS changes take effect only after a restart")
        audit = loaded.config.audit
        if audit != old_config.audit or (audit.enabled and loaded.config.store != old_config.store):
            log.warning("audit log changes (and its store's) take effect only after a restart")
        if loaded.config.detectors != old_config.detectors:
            log.warning("detectors changes take effect only after a restart")
        runtime.start()
        old = self.server.swap_runtime(runtime)
        old_services: Services | None = None
        if new_services is not None:
            log.warning("backends changed: the new configuration uses new ones (memory state starts empty)")
            old_services, self.services = self.services, new_services
            if self.detectors is not None:  # the old services close once retired
                self.detectors.use(new_services)
        self.loaded = loaded
        METRICS.inc("bastion_config_reloads", ("applied",))
        log.info("configuration reloaded (%d routes)", len(loaded.routes))
        task = asyncio.get_running_loop().create_task(self._retire(old, old_services))
        self._retiring[task] = (old, old_services)
        task.add_done_callback(self._retired)
        return True

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.pop(task, None)

    @staticmethod
    async def _retire(old: Runtime, old_services: Services | None) -> None:
        # Requests that started on the old runtime still use its stages and pools: close it
        # when the last of them ends, or after RELOAD_GRACE for one that never does.
        if not await old.wait_idle(RELOAD_GRACE):
            log.warning(
                "%d requests still ran on the replaced configuration after %.0f s; closing its stages and "
                "upstream connections",
                old.exchanges,
                RELOAD_GRACE,
            )
        await old.close()
        if old_services is not None:
            await old_services.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bastion-worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--ready-fd", type=int, default=None)
    # Who this worker is (services.identity): set by the supervisor.
    parser.add_argument("--instance", default=None)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    identity = WorkerIdentity(args.instance or new_instance_id(), args.index, args.workers, os.getpid())
    try:
        worker = Worker(args.config, args.ready_fd, identity=identity)
    except ConfigError as exc:
        print(f"bastion: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    try:
        uvloop.run(worker.run())
    except WorkerStartError as exc:
        print(f"bastion: cannot start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"bastion: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
