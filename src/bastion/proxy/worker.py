"""A data-plane worker process: one event loop, one listener, hot reload, graceful drain.

The supervisor starts N of these (``python -m bastion.proxy.worker``). Each binds the
data port with SO_REUSEPORT, so the kernel spreads connections over workers and one
worker's crash leaves the others serving.
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

import uvloop

from bastion.config import ConfigError, LoadedConfig, load_config
from bastion.logs import setup_logging
from bastion.proxy.accesslog import AccessLog
from bastion.proxy.metrics import METRICS
from bastion.proxy.runtime import Runtime
from bastion.proxy.server import GatewayServer
from bastion.proxy.tls import server_context

log = logging.getLogger("bastion.worker")

#: How long an old runtime (and its upstream connections) lives on after a reload.
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


class Worker:
    def __init__(self, config_path: str, ready_fd: int | None = None) -> None:
        self.config_path = config_path
        self.ready_fd = ready_fd
        self.loaded = load_config(config_path)
        self.stop_event = asyncio.Event()
        self.server: GatewayServer | None = None
        self._old: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        loaded = self.loaded
        listen = loaded.config.listen
        runtime = Runtime(loaded)
        runtime.start()
        access = AccessLog(loaded.config.access_log.path if loaded.config.access_log.enabled else None)
        self.server = GatewayServer(runtime, access)
        await self.server.start(
            listen_socket(listen.host, listen.port), tls_context(loaded), handshake_timeout=listen.timeouts.handshake
        )
        METRICS.start(os.environ.get("BASTION_METRICS_DIR"))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
        log.info("worker ready on %s:%d", listen.host, listen.port)
        if self.ready_fd is not None:
            # Tell the supervisor this worker is listening (for /ready).
            os.write(self.ready_fd, b"1")
            os.close(self.ready_fd)
            self.ready_fd = None
        await self.stop_event.wait()
        await self.server.drain(grace=listen.timeouts.drain)
        await self.server.runtime.close()
        access.close()
        METRICS.stop()

    def reload(self) -> None:
        """Load the config again; on any error keep serving the current one."""
        assert self.server is not None
        try:
            loaded = load_config(self.config_path)
            runtime = Runtime(loaded)
        except ConfigError as exc:
            METRICS.inc("bastion_config_reloads", ("rejected",))
            log.error("reload rejected, still serving the previous configuration:\n%s", exc)
            return
        except Exception:
            METRICS.inc("bastion_config_reloads", ("rejected",))
            log.exception("reload failed, still serving the previous configuration")
            return
        old_listen = self.loaded.config.listen
        new_listen = loaded.config.listen
        if (new_listen.host, new_listen.port, new_listen.tls, new_listen.timeouts.handshake) != (
            old_listen.host,
            old_listen.port,
            old_listen.tls,
            old_listen.timeouts.handshake,
        ):
            log.warning("listen address and TLS changes take effect only after a restart")
        runtime.start()
        old = self.server.swap_runtime(runtime)
        self.loaded = loaded
        METRICS.inc("bastion_config_reloads", ("applied",))
        log.info("configuration reloaded (%d routes)", len(loaded.routes))
        self._old.append(asyncio.get_running_loop().create_task(self._retire(old)))

    @staticmethod
    async def _retire(old: Runtime) -> None:
        # Requests that started on the old runtime may still use its pools.
        await asyncio.sleep(RELOAD_GRACE)
        await old.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bastion-worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        worker = Worker(args.config, args.ready_fd)
    except ConfigError as exc:
        print(f"bastion: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    try:
        uvloop.run(worker.run())
    except OSError as exc:
        print(f"bastion: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
