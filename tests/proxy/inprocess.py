"""A gateway in the test's process, so a test can put stages of its own in a route's chain
(or change the loaded configuration's stages) and look at its event loop; clients and
upstreams are still real sockets on 127.0.0.1. Its stages are started, as a worker's are,
with services over the memory backend."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from pathlib import Path
from typing import Any

import uvloop

from bastion.config import load_config
from bastion.config.loader import LoadedConfig
from bastion.pipeline.chain import Chain
from bastion.proxy.accesslog import AccessLog
from bastion.proxy.metrics import CountMetrics
from bastion.proxy.record import RecordSinks
from bastion.proxy.runtime import Runtime
from bastion.proxy.server import GatewayServer
from bastion.routing import Match
from bastion.services import Clock, Services, WorkerIdentity
from bastion.state.memory import MemoryBackend


class InProcessGateway:
    """A :class:`GatewayServer` on a uvloop event loop in a thread, the route matching
    ``/`` running ``stages`` instead of its configured chain (unless ``stages`` is ``None``);
    records go to the metrics, the access log, then ``sinks``. ``adjust`` may change the
    loaded configuration first (put stages built otherwise in its routes); ``clock`` is the
    services' (and the memory backend's) clock."""

    def __init__(
        self,
        config: dict[str, Any],
        folder: Path,
        stages: list[Any] | None,
        sinks: list[Any] | None = None,
        *,
        adjust: Callable[[LoadedConfig], LoadedConfig] | None = None,
        clock: Clock | None = None,
        files: dict[str, str] | None = None,
    ) -> None:
        self.extra_sinks = sinks or []
        for name, text in (files or {}).items():
            (folder / name).write_text(text)
        path = folder / "bastion.yaml"
        config = {**config, "access_log": {"path": str(folder / "access.log")}}
        path.write_text(json.dumps(config))
        loaded = load_config(path)
        if adjust is not None:
            loaded = adjust(loaded)
        self.runtime = Runtime(loaded)
        clock = clock or Clock()
        self.services = Services(MemoryBackend(clock.monotonic), WorkerIdentity("test", 0, 1, os.getpid()), clock)
        if stages is not None:
            match = self.runtime.router.match("", "/", "POST", None)
            assert isinstance(match, Match)
            match.route.chain = Chain(stages)
        self.access_path = folder / "access.log"
        self.loop = uvloop.new_event_loop()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        #: Tasks created on the gateway's loop (by anything) since it started.
        self.tasks_created = 0
        self.loop.set_task_factory(self._count_task)

    def _count_task(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any], **kw: Any
    ) -> asyncio.Task[Any]:
        self.tasks_created += 1
        return asyncio.Task(coro, loop=loop, **kw)

    def __enter__(self) -> InProcessGateway:
        self.thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def run(self, coro: Awaitable[Any]) -> Any:
        async def wrapped() -> Any:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(10)

    async def _start(self) -> None:
        self.runtime.start()
        await self.runtime.start_stages(self.services)
        self.access = AccessLog(str(self.access_path))
        self.server = GatewayServer(self.runtime, RecordSinks([CountMetrics(), self.access, *self.extra_sinks]))
        await self.server.start(self.sock)

    async def _stop(self) -> None:
        await self.server.drain(0.5)
        self.access.close()
        await self.runtime.close()
        await self.services.close()

    def access_records(self) -> list[dict[str, Any]]:
        async def flush() -> None:
            self.access.flush()

        self.run(flush())
        return [json.loads(line) for line in self.access_path.read_text().splitlines()]


__all__ = ["InProcessGateway"]
