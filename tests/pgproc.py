"""A real PostgreSQL server for the tests: initdb in a temporary folder, on a free loopback
port, stopped by PID.

PostgreSQL refuses to run as root, and the tests run as root on CI: then initdb and the
server run as the ``postgres`` user (the Debian package creates it), in a folder given to
it. Tests that need PostgreSQL are skipped with a reason when it is not installed, unless
``BASTION_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which makes them fail instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bastion.testing import free_port


def postgres_bin() -> Path | None:
    """The folder of the newest installed PostgreSQL's initdb and postgres, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def require_postgres() -> Path:
    """The PostgreSQL binaries' folder; skip the calling test (or fail under
    BASTION_REQUIRE_POSTGRES=1) when PostgreSQL is not installed."""
    import pytest

    found = postgres_bin()
    if found is not None:
        return found
    if os.environ.get("BASTION_REQUIRE_POSTGRES") == "1":
        raise RuntimeError("BASTION_REQUIRE_POSTGRES=1 but PostgreSQL is not installed (apt-get install postgresql)")
    pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")


class PostgresProcess:
    """One PostgreSQL server on 127.0.0.1:``port`` with trust authentication for ``postgres``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="bastion-pg-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            # setpriv execs (runuser would fork), so the PID we hold is the server's own.
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as_postgres = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresProcess:
        data = self.folder / "data"
        subprocess.run(
            [*self._as_postgres, str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
             "--no-sync", "-E", "UTF8", "--locale=C"],
            check=True, capture_output=True,
        )
        self.proc = subprocess.Popen(
            [*self._as_postgres, str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.folder), "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode} on port {self.port}")
            if self._accepts():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"postgres did not accept connections on port {self.port}")

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, stop
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        with contextlib.suppress(OSError):
            shutil.rmtree(self.folder)
