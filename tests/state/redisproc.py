"""A real ``redis-server`` for the tests: on a free loopback port, no persistence, stopped by PID.

Tests that need Redis are skipped with a reason when ``redis-server`` is not installed,
unless ``BASTION_REQUIRE_REDIS=1`` (set by ``.ci/run``), which makes them fail instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

from bastion.testing import free_port

REDIS_SERVER = shutil.which("redis-server")


def require_redis() -> None:
    """Skip the calling test (or fail under BASTION_REQUIRE_REDIS=1) without redis-server."""
    import pytest

    if REDIS_SERVER is not None:
        return
    if os.environ.get("BASTION_REQUIRE_REDIS") == "1":
        raise RuntimeError("BASTION_REQUIRE_REDIS=1 but redis-server is not installed (apt-get install redis-server)")
    pytest.skip("redis-server is not installed (apt-get install redis-server)")


class RedisProcess:
    """One redis-server on 127.0.0.1:``port``, which a test may kill and start again."""

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        #: More redis-server arguments (e.g. ``("--requirepass", "...")``).
        self.extra = extra
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--protected-mode", "yes", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} on port {self.port}")
            if self._pong():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                # A server with a password answers NOAUTH: it is up all the same.
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: Redis vanishes mid-conversation, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(16).startswith(b"+OK")
