"""The structured access log: JSON lines, batched and written off the request path.

It is a sink of exchange records: each request's (read-only) record is appended to a list;
a timer turns the batch into JSON lines and writes them with one write. Batches are small
and frequent (every 20 ms or 256 records) so that encoding one never stalls the event loop
for long. A failing write is reported on stderr and retried at the next flush; only
if the disk stays broken beyond ``MAX_PENDING_BYTES`` is the backlog dropped, and the
number of bytes lost is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from typing import Any

import orjson

from bastion.types import ExchangeRecord

FLUSH_INTERVAL = 0.02
MAX_BATCH = 256
MAX_PENDING_BYTES = 64 * 1024 * 1024
#: ".000Z" to ".999Z": a time's last part, looked up instead of formatted for every line.
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


class AccessLog:
    name = "access_log"

    def __init__(self, path: str | None) -> None:
        self._fd: int | None = None
        if path == "-":
            self._fd = sys.stdout.fileno()
        elif path:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._owned = path not in (None, "-")
        self._records: list[ExchangeRecord] = []
        self._pending = b""
        self._handle: asyncio.TimerHandle | None = None
        self._second = -1
        self._second_text = ""

    def __call__(self, record: ExchangeRecord) -> None:
        """Queue ``record``; it is written with the next batch."""
        if self._fd is None:
            return
        self._records.append(record)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)
        elif len(self._records) == MAX_BATCH:
            # Flush soon, after the current callbacks, not inside this request's handling.
            self._handle.cancel()
            self._handle = asyncio.get_running_loop().call_later(0, self.flush)

    def flush(self) -> None:
        self._handle = None
        if self._fd is None:
            return
        if self._records:
            records, self._records = self._records, []
            dumps = orjson.dumps
            newline = orjson.OPT_APPEND_NEWLINE
            lines = []
            for record in records:
                # The line and its ISO time are built here, in the batch, not on the request path.
                r: dict[str, Any] = record.as_dict()
                ts = record.ts
                second = int(ts)
                if second != self._second:
                    self._second = second
                    self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
                r["time"] = self._second_text + _MILLIS[int(ts * 1000) % 1000]
                lines.append(dumps(r, option=newline))
            self._pending += b"".join(lines)
        while self._pending:
            try:
                written = os.write(self._fd, self._pending)
            except BlockingIOError:
                break
            except OSError as exc:
                print(f"bastion: cannot write the access log: {exc}", file=sys.stderr)
                if len(self._pending) > MAX_PENDING_BYTES:
                    # Bound memory if the disk stays broken; say how much was lost.
                    print(f"bastion: dropped {len(self._pending)} bytes of access log", file=sys.stderr)
                    self._pending = b""
                break
            self._pending = self._pending[written:]
        if self._pending and self._handle is None:
            # Outside a running loop (final close) there is nothing left to retry with.
            with contextlib.suppress(RuntimeError):
                self._handle = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self.flush()
        if self._fd is not None and self._owned:
            os.close(self._fd)
        self._fd = None
