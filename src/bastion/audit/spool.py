"""Each worker's spool: the audit records on their way to the store, in a local file.

The writer thread appends every batch here (and to the output) as soon as it takes it from
the queue, and hands the batch's rows to the store thread in memory; the store thread
inserts them and empties the file once the store has everything it holds. When the store
failed, or at start, the store thread reads the spool itself instead. The file is fsynced
at most once a second. So a worker killed with SIGKILL loses only what was still in its
queue, and a store that is down or slow loses nothing: the records wait in the spool, and
are written to the store (each once: the store ignores a record id it has) when it is
back, or when a worker next starts.

A spool belongs to a worker index (``worker-0.spool``) and is held with an exclusive
``flock`` while its worker runs (a worker that finds its index's spool held by another
process uses ``worker-<index>-<pid>.spool``). At start a worker also replays the spools no
running worker holds (those of an index the instance no longer runs, or of a process gone).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("bastion.audit")

#: The name of a spool a worker made for itself when its index's was held.
_PROCESS_SPOOL = re.compile(r"^worker-\d+-\d+\.spool$")
#: The spool is fsynced at most this often (seconds): what a crash of the machine may lose.
FSYNC_INTERVAL = 1.0


class Spool:
    """The spool file of worker ``index`` in ``folder``, held locked until :meth:`close`.

    Two threads share it: the writer appends batches, the store thread reads what follows
    its offset and, once the store took everything, empties the file (under :attr:`lock`,
    so that no batch is appended between its last read and the truncation)."""

    def __init__(self, folder: Path, index: int) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder = folder
        self.path = folder / f"worker-{index}.spool"
        self._fd = self._open_locked(self.path)
        self._own_name = False
        if self._fd < 0:
            # Held by another instance's worker on the same folder (a restart that overlaps
            # the old instance's drain), or being replayed: a spool of this process's own,
            # replayed as an orphan by a later start if anything is left in it.
            self.path = folder / f"worker-{index}-{os.getpid()}.spool"
            self._fd = self._open_locked(self.path)
            self._own_name = True
            if self._fd < 0:
                raise OSError(f"the audit spool {self.path} is locked by another process")
        self.lock = threading.Lock()
        self._synced = time.monotonic()
        self._dirty = False
        self._end_last_line()

    def _end_last_line(self) -> None:
        """A line a crash cut short stays a line of its own (skipped when read), instead of
        swallowing the first record appended after it."""
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")

    def append(self, data: bytes) -> tuple[int, int]:
        """Append ``data`` (whole lines); where it starts and ends in the file. The caller
        holds :attr:`lock`, so that what it notes of the batch goes with the bytes."""
        start = os.fstat(self._fd).st_size
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._dirty = True
        return start, start + len(data)

    def sync_if_due(self) -> None:
        if self._dirty and time.monotonic() - self._synced >= FSYNC_INTERVAL:
            self.sync()

    def sync(self) -> None:
        if self._dirty:
            self._dirty = False
            os.fsync(self._fd)
        self._synced = time.monotonic()

    def read_from(self, offset: int) -> bytes:
        """What the spool holds past ``offset`` (the caller holds :attr:`lock`)."""
        return os.pread(self._fd, os.fstat(self._fd).st_size - offset, offset)

    def stored(self, end: int) -> int:
        """The store took everything up to ``end``: empty the file if nothing came after
        it (the caller holds :attr:`lock`). Returns the offset the next read starts at."""
        if os.fstat(self._fd).st_size != end:
            return end
        os.ftruncate(self._fd, 0)
        self._dirty = False
        return 0

    @staticmethod
    def _open_locked(path: Path) -> int:
        """``path`` opened and locked for this process alone; -1 if another holds it."""
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return -1
        return fd

    def close(self) -> None:
        self.sync()
        if self._own_name and os.fstat(self._fd).st_size == 0:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)  # releases the lock

    @contextmanager
    def orphans(self) -> Iterator[list[tuple[Path, int]]]:
        """The other spools in the folder that no running worker holds, locked (and
        released at the end): their records are this worker's to replay."""
        held: list[tuple[Path, int]] = []
        try:
            for path in sorted(self.folder.glob("worker-*.spool")):
                if path == self.path:
                    continue
                try:
                    fd = os.open(path, os.O_RDWR)
                except FileNotFoundError:  # a process's own spool, removed as it stopped
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)  # its worker is running
                    continue
                held.append((path, fd))
            yield held
        finally:
            for path, fd in held:
                if _PROCESS_SPOOL.match(path.name) and os.fstat(fd).st_size == 0:
                    path.unlink(missing_ok=True)  # replayed: nobody will write it again
                os.close(fd)


def parse(data: bytes, source: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    skipped = 0
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            skipped += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
    if skipped:
        log.warning("skipped %d unreadable line(s) of the audit spool %s (cut short by a crash)", skipped, source)
    return rows


__all__ = ["FSYNC_INTERVAL", "Spool", "parse"]
