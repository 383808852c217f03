"""``bastion serve``: start N data-plane workers and the admin API, keep them running.

Workers are separate processes (``python -m bastion.proxy.worker``): a crash in one is
logged, its metrics are retired, and it is restarted while the others keep serving. The
supervisor validates every reload before any worker sees it, so a broken file is
reported once and never half-applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from bastion.config import ConfigError, LoadedConfig, load_config
from bastion.control.metrics import SnapshotCollector
from bastion.services import check_backends, new_instance_id

log = logging.getLogger("bastion.supervisor")

WATCH_INTERVAL = 1.0
RESTART_BACKOFF_MAX = 10.0


class _AdminServer(uvicorn.Server):
    """uvicorn without its own signal handling: the supervisor owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WorkerProcess:
    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.ready_fd: int | None = None
        self.restarts = 0
        self.started = 0.0


def _warn(loaded: LoadedConfig) -> None:
    """Log the deprecated settings a configuration uses (once per load, not per worker)."""
    for issue in loaded.warnings:
        log.warning("deprecated setting: %s", issue)


class Supervisor:
    def __init__(self, config_path: str | Path, workers: int, log_level: str = "info") -> None:
        self.config_path = str(config_path)
        self.nworkers = workers
        self.loaded: LoadedConfig = self._load()
        _warn(self.loaded)
        #: Names this gateway instance to its workers (services.identity), e.g. in Redis keys.
        self.instance = new_instance_id()
        self.log_level = log_level
        self.workers = [WorkerProcess(i) for i in range(workers)]
        self.stopping = False
        self._stop = asyncio.Event()
        self._mtimes = self._file_mtimes()
        self.metrics_dir = tempfile.mkdtemp(prefix="bastion-metrics-")
        self.collector = SnapshotCollector(self.metrics_dir)
        self._reserve: socket.socket | None = None

    def _load(self) -> LoadedConfig:
        """Load the file and check it fits the worker count (a per-process state backend
        is refused with several workers when a stage keeps state)."""
        loaded = load_config(self.config_path)
        issue = check_backends(loaded, self.nworkers)
        if issue is not None:
            raise ConfigError([issue])
        return loaded

    # -- admin API hooks --------------------------------------------------------------
    def workers_alive(self) -> tuple[int, int]:
        alive = sum(1 for w in self.workers if w.proc is not None and w.proc.poll() is None)
        return alive, self.nworkers

    def ready(self) -> bool:
        return not self.stopping and all(w.ready and w.proc is not None and w.proc.poll() is None for w in self.workers)

    def reload(self) -> list[str]:
        """Validate the file; if valid, tell every worker to reload. Returns the errors."""
        try:
            loaded = self._load()
        except ConfigError as exc:
            errors = [str(i) for i in exc.issues]
            log.error("reload rejected, the previous configuration keeps serving:\n%s", exc)
            return errors
        self.loaded = loaded
        _warn(loaded)
        self._mtimes = self._file_mtimes()
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGHUP)
        log.info("configuration valid (%d routes); workers reloading", len(loaded.routes))
        return []

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> int:
        listen = self.loaded.config.listen
        admin = self.loaded.config.admin
        from bastion.control.exposure import check_exposure

        check_exposure(self.loaded)
        # Bind once here, so "address in use" is one clear error instead of N worker crashes.
        try:
            self._reserve = _reserve_port(listen.host, listen.port)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {listen.host}:{listen.port}: {exc.strerror}") from None
        try:
            admin_sock = _admin_socket(admin.host, admin.port)
        except OSError as exc:
            self._reserve.close()
            raise OSError(exc.errno, f"cannot listen on {admin.host}:{admin.port} (admin): {exc.strerror}") from None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        for w in self.workers:
            self._spawn(w)
        from bastion.control.admin import create_admin_app

        app = create_admin_app(self, self.collector)
        tls = admin.tls
        server = _AdminServer(
            uvicorn.Config(app, host=admin.host, port=admin.port, log_level="warning", access_log=False, lifespan="off",
                           ssl_certfile=str(tls.cert) if tls else None, ssl_keyfile=str(tls.key) if tls else None)
        )
        admin_task = loop.create_task(server.serve(sockets=[admin_sock]))
        watch_task = loop.create_task(self._watch())
        print(
            f"bastion: gateway on {'https' if listen.tls else 'http'}://{listen.host}:{listen.port} "
            f"({self.nworkers} workers), admin on {'https' if admin.tls else 'http'}://{admin.host}:{admin.port}",
            file=sys.stderr,
            flush=True,
        )
        await self._stop.wait()
        self.stopping = True
        watch_task.cancel()
        await self._stop_workers(grace=listen.timeouts.drain + 5)
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await watch_task
        await admin_task
        app.state.ctx.close()
        if self._reserve is not None:
            self._reserve.close()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return 0

    def _spawn(self, w: WorkerProcess) -> None:
        read_fd, write_fd = os.pipe()
        cmd = [
            sys.executable,
            "-m",
            "bastion.proxy.worker",
            "--config",
            self.config_path,
            "--log-level",
            self.log_level,
            "--ready-fd",
            str(write_fd),
            "--instance",
            self.instance,
            "--index",
            str(w.slot),
            "--workers",
            str(self.nworkers),
        ]
        env = {**os.environ, "BASTION_METRICS_DIR": self.metrics_dir}
        w.proc = subprocess.Popen(cmd, pass_fds=(write_fd,), env=env)
        os.close(write_fd)
        w.ready = False
        w.started = time.monotonic()
        w.ready_fd = read_fd
        loop = asyncio.get_running_loop()
        loop.add_reader(read_fd, self._on_ready, w, read_fd)

    def _on_ready(self, w: WorkerProcess, fd: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            data = os.read(fd, 16)
        except OSError:
            data = b""
        loop.remove_reader(fd)
        os.close(fd)
        if w.ready_fd == fd:
            w.ready_fd = None
        w.ready = data.startswith(b"1")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.2 if any(not w.ready for w in self.workers) else WATCH_INTERVAL)
            for w in self.workers:
                if w.proc is None or w.proc.poll() is None:
                    continue
                code = w.proc.returncode
                self.collector.retire(w.proc.pid)
                uptime = time.monotonic() - w.started
                w.restarts = 0 if uptime > 30 else w.restarts + 1
                delay = min(RESTART_BACKOFF_MAX, 0.1 * 2**w.restarts)
                log.error("worker %d (pid %d) exited with %s; restarting in %.1fs", w.slot, w.proc.pid, code, delay)
                w.proc = None
                w.ready = False
                asyncio.get_running_loop().call_later(delay, self._respawn, w)
            mtimes = self._file_mtimes()
            if mtimes != self._mtimes:
                self._mtimes = mtimes
                log.info("configuration file changed; reloading")
                self.reload()

    def _respawn(self, w: WorkerProcess) -> None:
        if not self.stopping and w.proc is None:
            self._spawn(w)

    async def _stop_workers(self, grace: float) -> None:
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        # Popen offers nothing to await; polling a few processes every 50 ms is fine here.
        while time.monotonic() < deadline and any(w.proc is not None and w.proc.poll() is None for w in self.workers):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                log.error("worker %d did not stop in time; killing it", w.slot)
                w.proc.kill()
                w.proc.wait()

    def _file_mtimes(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for f in (Path(self.config_path), *self.loaded.files):
            try:
                out[str(f)] = f.stat().st_mtime
            except OSError:
                out[str(f)] = -1.0
        return out


def _admin_socket(host: str, port: int) -> socket.socket:
    """The admin API's listening socket, bound here so a conflict is reported before any worker starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _reserve_port(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
