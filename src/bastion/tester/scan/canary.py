"""A tiny HTTP listener on 127.0.0.1 that records which tokens were requested (SSRF callbacks).

A check hands the API ``http://127.0.0.1:PORT/c/<token>``; if the API fetches it, the listener
counts a hit for ``<token>``. It answers every request with a short 200 and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter


class CanaryListener:
    """Start with :meth:`start`, stop with :meth:`stop`; :meth:`hits` counts requests per token."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._hits: Counter[str] = Counter()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def url(self, token: str) -> str:
        return f"http://{self.host}:{self.port}/c/{token}"

    def hits(self, token: str) -> int:
        return self._hits[token]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            parts = line.decode("latin-1").split()
            if len(parts) >= 2:
                path = parts[1].split("?", 1)[0]
                segments = [s for s in path.split("/") if s]
                if len(segments) >= 2 and segments[0] == "c":
                    self._hits[segments[1]] += 1
            with contextlib.suppress(TimeoutError):  # drain the headers, bounded
                for _ in range(100):
                    header = await asyncio.wait_for(reader.readline(), 2)
                    if header in (b"\r\n", b"\n", b""):
                        break
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            )
            await writer.drain()
        except (OSError, TimeoutError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
