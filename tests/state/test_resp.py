"""The lean Redis client (``bastion.state.resp``): its reply parser, and its connection
against a real redis-server (password, database, large replies) or a server that never
answers.
"""

from __future__ import annotations

import asyncio
import enum
import socket
from collections.abc import Iterator

import pytest
import uvloop
from redis.exceptions import NoScriptError, ResponseError

from bastion.errors import DependencyUnavailable
from bastion.state.redis import RedisBackend
from bastion.state.resp import IncompleteReply, encode, parse

from .redisproc import RedisProcess, require_redis

#: Every kind of reply, one after the other, with what each parses to.
STREAM = (
    b":42\r\n$5\r\nhello\r\n$-1\r\n+OK\r\n-ERR wrong\r\n*3\r\n:1\r\n*2\r\n$0\r\n\r\n:-7\r\n$-1\r\n"
    b"*-1\r\n-NOSCRIPT No matching script\r\n$4\r\na\r\nb\r\n"
)


def parse_all(data: bytes) -> list[object]:
    replies, pos = [], 0
    while pos < len(data):
        reply, pos = parse(data, pos)
        replies.append(reply)
    return replies


def test_parse_every_reply_kind() -> None:
    """Integers, bulk strings (empty, null, holding CR LF), status, errors (NOSCRIPT as its
    own class), nested arrays and null arrays parse to what redis-py gives."""
    replies = parse_all(STREAM)
    assert replies[:4] == [42, b"hello", None, b"OK"]
    assert type(replies[4]) is ResponseError and str(replies[4]) == "ERR wrong"
    assert replies[5] == [1, [b"", -7], None]
    assert replies[6] is None
    assert isinstance(replies[7], NoScriptError)
    assert replies[8] == b"a\r\nb"


def test_parse_waits_for_a_whole_reply() -> None:
    """Every strict prefix of a reply is incomplete (so a reply cut anywhere by the network
    waits for the rest), and the whole stream parses the same fed in any two parts."""
    for cut in range(len(STREAM)):
        head = STREAM[:cut]
        pos, seen = 0, 0
        while True:
            try:
                _, pos = parse(head, pos)
                seen += 1
            except IncompleteReply:
                break
            if pos == len(head):
                break
        assert seen <= 9
    with pytest.raises(IncompleteReply):
        parse(b"*2\r\n:1\r\n", 0)
    with pytest.raises(IncompleteReply):
        parse(b"$5\r\nhel", 0)


def test_encode_is_resp_bulk_strings() -> None:
    """Commands go as arrays of bulk strings: text as UTF-8, numbers as their digits; a
    boolean (no Redis meaning) is refused."""
    assert encode(("SET", "k\u00e9", b"\x00v", 12, 1.5)) == (
        b"*5\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$2\r\n\x00v\r\n$2\r\n12\r\n$3\r\n1.5\r\n"
    )
    with pytest.raises(TypeError):
        encode(("SET", "k", True))


def test_encode_takes_subclasses_as_their_values() -> None:
    """A subclass of str, bytes or int (an enum member, say) goes as the value it holds, the
    same bytes as the plain type; a bool, though an int, is still refused."""

    class Kind(enum.IntEnum):
        SEVEN = 7

    class Name(str):
        pass

    class Raw(bytes):
        pass

    assert encode((Name("GET"), Raw(b"k"), Kind.SEVEN)) == encode(("GET", b"k", 7))
    with pytest.raises(TypeError):
        encode((False,))


def test_integer_arrays_parse_like_any_array() -> None:
    """An array of integers (a rate limit's answer: read item by item in place) gives the
    same as integers alone, mixed with other kinds, negative or large, and waits when cut
    inside any of its items."""
    data = b"*5\r\n:1\r\n:-5\r\n$2\r\nok\r\n:99999999999999\r\n*1\r\n:0\r\n"
    assert parse(data, 0) == ([1, -5, b"ok", 99999999999999, [0]], len(data))
    for cut in range(len(data)):
        with pytest.raises(IncompleteReply):
            parse(data[:cut], 0)


@pytest.fixture
def password_redis() -> Iterator[RedisProcess]:
    """A redis-server of this test alone that requires a password."""
    require_redis()
    server = RedisProcess(("--requirepass", "p@ss word")).start()
    try:
        yield server
    finally:
        server.stop()


def test_password_and_database_from_the_url(redis_url: str) -> None:
    """The database of the URL is the one used (keys in /1 are not in /0), and a large
    value (4 MiB, many socket reads) comes back whole."""
    base = redis_url.rsplit("/", 1)[0]

    async def scenario() -> None:
        zero = RedisBackend(base + "/0", timeout=2.0)
        one = RedisBackend(base + "/1", timeout=2.0)
        try:
            big = bytes(range(256)) * 16384
            await one.set("k", big)
            assert await one.get("k") == big
            assert await zero.get("k") is None
            assert await one.delete("k") is True
        finally:
            await zero.close()
            await one.close()

    uvloop.run(scenario())


def test_password_from_the_url(password_redis: RedisProcess) -> None:
    """The URL's password (percent-encoded) is sent with AUTH before any command; a wrong
    one is DependencyUnavailable saying AUTH was refused, never showing the password."""
    good = password_redis.url.replace("redis://", "redis://:p%40ss%20word@")
    bad = password_redis.url.replace("redis://", "redis://:n0t-the-password@")

    async def scenario() -> str:
        s, wrong = RedisBackend(good, timeout=2.0), RedisBackend(bad, timeout=2.0)
        try:
            assert await s.incr("n") == 1
            with pytest.raises(DependencyUnavailable) as caught:
                await wrong.get("n")
            return str(caught.value)
        finally:
            await s.close()
            await wrong.close()

    message = uvloop.run(scenario())
    assert "refused AUTH" in message
    assert "n0t-the-password" not in message


def test_a_server_that_never_answers_times_out() -> None:
    """A server that accepts the connection and never answers: the commands pending fail
    with DependencyUnavailable after the timeout (no hang), and so does the next one on
    the connection opened again."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        listener.setblocking(False)

        async def accept() -> None:
            while True:
                conn, _ = await loop.sock_accept(listener)
                accepted.append(conn)

        acceptor = loop.create_task(accept())
        s = RedisBackend(f"redis://127.0.0.1:{port}/0", timeout=0.3)
        messages = []
        try:
            results = await asyncio.gather(s.incr("a"), s.get("b"), return_exceptions=True)
            for result in results:
                assert isinstance(result, DependencyUnavailable)
                messages.append(str(result))
            with pytest.raises(DependencyUnavailable):
                await s.get("c")
        finally:
            await s.close()
            acceptor.cancel()
        return messages

    try:
        messages = uvloop.run(scenario())
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
    assert all("no answer within 0.3 s" in m for m in messages)
    assert len(accepted) == 2  # the timed-out connection was dropped, a new one opened


def test_a_server_that_stops_answering_times_out() -> None:
    """A server that answers one command, then none: a command sent while the first one's
    deadline timer is still armed (it stays armed once nothing is pending) fails after its
    own timeout, not never, and not at the first one's deadline with a reply still due."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    async def scenario() -> str:
        loop = asyncio.get_running_loop()
        listener.setblocking(False)

        async def serve() -> None:
            conn, _ = await loop.sock_accept(listener)
            accepted.append(conn)
            await loop.sock_recv(conn, 65536)
            await loop.sock_sendall(conn, b"+PONG\r\n")  # the first command's answer, then silence

        server = loop.create_task(serve())
        s = RedisBackend(f"redis://127.0.0.1:{port}/0", timeout=0.3)
        try:
            await s.ping()
            await asyncio.sleep(0.2)  # within the first command's 0.3 s: its timer is still armed
            with pytest.raises(DependencyUnavailable) as caught:
                await s.get("b")
        finally:
            await s.close()
            server.cancel()
        return str(caught.value)

    try:
        message = uvloop.run(scenario())
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
    assert "no answer within 0.3 s" in message
