"""An upstream connection paused for back-pressure is read again by its next exchange.

When a client stops reading just as the last piece of its download arrives, the upstream
connection goes back to the pool paused; the next request sent on it must still get its
answer (it used to wait for its deadline: a 504). A real loopback upstream, in process.
"""

from __future__ import annotations

import asyncio
import time

from bastion.config.model import Upstream
from bastion.proxy.upstream import UpstreamPool

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the gateway side closed the connection
    finally:
        writer.close()


async def _exchange(pool: UpstreamPool, conn_deadline: float) -> tuple[int, object]:
    target = pool.choose()
    conn = pool.pooled(target) or await pool.acquire(target, conn_deadline)
    conn.begin("GET", conn_deadline, 1.0)
    conn.write(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
    conn.end_request()
    head = await asyncio.wait_for(conn.response_head(), 5)
    body = await conn.read_body_into(None)
    return head.status, (conn, body)


def test_a_connection_released_while_paused_reads_its_next_exchange() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(_serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = UpstreamPool("svc", Upstream(targets=[f"http://127.0.0.1:{port}"]), None)
        try:
            status, (conn, body) = await _exchange(pool, time.monotonic() + 10)
            assert (status, body) == (200, b"ok")
            conn.pause_reading()  # the client of that exchange had stopped reading
            pool.release(conn)
            status, (again, body) = await _exchange(pool, time.monotonic() + 10)
            assert again is conn  # the same, pooled connection
            assert (status, body) == (200, b"ok")
        finally:
            await pool.close()
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(scenario(), 20))
