"""The audit log's JSON lines: standard output, or a file rotated by size.

Written by the audit writer thread only. Several workers append to the same file (each
write is one ``O_APPEND`` write of whole lines, so lines never interleave); the one that
finds it over ``rotate_bytes`` renames it under a lock file, and the others notice the
file they hold is no longer the one at the path (its inode changed) and reopen it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys


class JsonLinesOutput:
    """Where the audit writer's JSON lines go: ``"-"`` (standard output) or a file path."""

    def __init__(self, target: str, rotate_bytes: int, keep_files: int) -> None:
        self.target = target
        self.rotate_bytes = rotate_bytes
        self.keep_files = keep_files
        self._stdout = target == "-"
        self._fd = sys.stdout.fileno() if self._stdout else self._open()

    def _open(self) -> int:
        return os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, data: bytes) -> None:
        """Append ``data`` (whole lines); rotate the file once it is over its size."""
        if not self._stdout:
            self._follow_rotation()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if not self._stdout and os.fstat(self._fd).st_size > self.rotate_bytes:
            self._rotate()

    def _follow_rotation(self) -> None:
        """Reopen the path if another worker rotated the file this one holds."""
        try:
            current = os.stat(self.target).st_ino
        except FileNotFoundError:
            current = -1
        if current != os.fstat(self._fd).st_ino:
            os.close(self._fd)
            self._fd = self._open()

    def _rotate(self) -> None:
        """``audit.log`` -> ``audit.log.1`` -> ... -> ``audit.log.<keep_files>`` (dropped
        beyond), under a lock so that two workers never rotate the same file twice."""
        lock = os.open(self.target + ".lock", os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            st = os.stat(self.target)
            if st.st_ino == os.fstat(self._fd).st_ino and st.st_size > self.rotate_bytes:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.target}.{self.keep_files}")
                for k in range(self.keep_files - 1, 0, -1):
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(f"{self.target}.{k}", f"{self.target}.{k + 1}")
                os.rename(self.target, f"{self.target}.1")
            os.close(self._fd)
            self._fd = self._open()
        finally:
            os.close(lock)  # releases the lock

    def close(self) -> None:
        if not self._stdout:
            os.close(self._fd)


__all__ = ["JsonLinesOutput"]
