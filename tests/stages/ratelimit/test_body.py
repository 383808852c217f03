"""Limits keyed on a body member (``by: body:/username``) through a real gateway: clients on
several loopback addresses, real HTTP, a scripted upstream that records what reached it.

A brute force on one account is stopped whatever address it comes from; the value is read
the way a lenient backend might read it (case, Unicode forms, form bodies, JSON sent as
text/plain), a body naming the account twice gets no fresh budget, and a body without the
member is counted by client IP. Head-keyed limits still decide before the body is read.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.config import load_config
from bastion.proxy.worker import Worker
from bastion.stages.ratelimit import RateLimitBodyStage, RateLimitStage
from bastion.stages.ratelimit.body import AMBIGUOUS, body_member
from bastion.types import Request
from tests.proxy.scripted import ScriptedUpstream
from tests.stages.ratelimit.test_gateway import ManualClock, identity, run, serving, signed_in, write_config

LOGIN = [{"limit": 3, "window": "1h", "by": "body:$.username", "name": "per-account"}]


async def post_from(address: str, url: str, body: bytes, content_type: str = "application/json") -> int:
    """POST ``body`` from the loopback address ``address`` (a client of its own)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport) as client:
        answer = await client.post(url, content=body, headers={"content-type": content_type})
        return answer.status_code


def login(user: str) -> bytes:
    return json.dumps({"username": user, "password": "guess"}).encode()


def test_a_brute_force_on_one_account_is_stopped_from_any_address(tmp_path: Path,
                                                                   upstream: ScriptedUpstream) -> None:
    """3 attempts per hour per account: six clients on six addresses guessing alice's
    password get 3 answers and 3 refusals between them; ``ALICE``, alice in full-width letters, a
    form body and JSON sent as text/plain are alice too; bob, from an address alice's
    attackers used, still gets in; only the admitted attempts reached the upstream."""
    path, port = write_config(tmp_path, upstream, LOGIN)
    worker = Worker(str(path), identity=identity(), load=signed_in, clock=ManualClock())
    url = f"http://127.0.0.1:{port}/login-brute"

    async def scenario(_: httpx.AsyncClient) -> dict[str, list[int]]:
        spread = [await post_from(f"127.0.0.{n}", url, login("alice")) for n in range(2, 8)]
        variants = [
            await post_from("127.0.0.8", url, login("ALICE")),
            await post_from("127.0.0.9", url, login("\uff41\uff4c\uff49\uff43\uff45")),
            await post_from("127.0.0.10", url, b"username=alice&password=x", "application/x-www-form-urlencoded"),
            await post_from("127.0.0.11", url, login("alice"), "text/plain"),
        ]
        bob = [await post_from("127.0.0.2", url, login("bob"))]
        return {"spread": spread, "variants": variants, "bob": bob}

    codes = run(lambda: serving([worker], scenario))
    assert codes["spread"] == [200, 200, 200, 429, 429, 429]
    assert codes["variants"] == [429, 429, 429, 429]
    assert codes["bob"] == [200]
    assert len(upstream.records("/login-brute")) == 4


def test_a_body_naming_the_account_twice_shares_one_budget(tmp_path: Path, upstream: ScriptedUpstream) -> None:
    """A JSON object with ``username`` twice, or a form with the field twice, could mean
    either account to the backend: such bodies, whatever the accounts they name, share one
    budget of 3 instead of each getting a fresh one."""
    path, port = write_config(tmp_path, upstream, LOGIN)
    worker = Worker(str(path), identity=identity(), load=signed_in, clock=ManualClock())
    url = f"http://127.0.0.1:{port}/login-twice"

    async def scenario(_: httpx.AsyncClient) -> list[int]:
        codes = []
        for n in range(5):
            body = b'{"username": "u%d", "username": "alice", "password": "x"}' % n
            codes.append(await post_from(f"127.0.0.{20 + n}", url, body))
        codes.append(await post_from("127.0.0.30", url, b"username=z&username=alice",
                                     "application/x-www-form-urlencoded"))
        return codes

    assert run(lambda: serving([worker], scenario)) == [200, 200, 200, 429, 429, 429]


def test_a_body_without_the_member_is_counted_by_client_ip(tmp_path: Path, upstream: ScriptedUpstream) -> None:
    """No ``username`` (or one that is not a string or number, or a body that is not JSON):
    counted per client address, 3 each, so leaving the field out escapes nothing."""
    path, port = write_config(tmp_path, upstream, LOGIN)
    worker = Worker(str(path), identity=identity(), load=signed_in, clock=ManualClock())
    url = f"http://127.0.0.1:{port}/login-none"
    bodies = [b'{"user": "alice"}', b'{"username": {"$ne": null}}', b"not json", b'{"username": true}']

    async def scenario(_: httpx.AsyncClient) -> tuple[list[int], list[int]]:
        one = [await post_from("127.0.0.40", url, body) for body in bodies]
        other = [await post_from("127.0.0.41", url, body) for body in bodies[:1]]
        return one, other

    one, other = run(lambda: serving([worker], scenario))
    assert one == [200, 200, 200, 429]
    assert other == [200]


def test_head_limits_still_refuse_before_the_body_is_read(tmp_path: Path, upstream: ScriptedUpstream) -> None:
    """Beside a body-keyed limit, a limit by IP (1 per hour) refuses the address's second
    request at the head: a client that asks ``Expect: 100-continue`` gets the 429 instead of
    ``100 Continue``, and uploads nothing. The answers carry both limits' fields."""
    limits = [{"limit": 1, "window": "1h", "by": "ip", "name": "per-ip"}, *LOGIN]
    path, port = write_config(tmp_path, upstream, limits)
    worker = Worker(str(path), identity=identity(), load=signed_in, clock=ManualClock())

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, bytes]:
        first = await client.post(f"http://127.0.0.1:{port}/login-head", content=login("carol"))
        # A raw client on the worker's own loop: the head alone, then what the gateway says.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /login-head HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 40\r\nExpect: 100-continue\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
        return first, head

    first, head = run(lambda: serving([worker], scenario))
    assert first.status_code == 200
    assert first.headers["ratelimit"] == '"per-ip";r=0;t=3600, "per-account";r=2;t=1200'
    assert first.headers["ratelimit-policy"] == '"per-ip";q=1;w=3600, "per-account";q=3;w=3600'
    assert head.startswith(b"HTTP/1.1 429 ")
    assert b"100 Continue" not in head


def test_the_stage_takes_the_body_only_where_a_limit_needs_it(tmp_path: Path, upstream: ScriptedUpstream) -> None:
    """A route with only head-keyed limits keeps the head-only stage (its body is never
    buffered for the rate limit); a body-keyed limit makes it a body stage."""
    head_only, _ = write_config(tmp_path, upstream, {"limit": 1, "window": "1s"}, name="h.yaml")
    body, _ = write_config(tmp_path, upstream, LOGIN, name="b.yaml")
    [h] = [s for r in load_config(head_only).routes for s in r.built if isinstance(s, RateLimitStage)]
    [b] = [s for r in load_config(body).routes for s in r.built if isinstance(s, RateLimitStage)]
    assert not isinstance(h, RateLimitBodyStage) and not h.needs_request_body
    assert isinstance(b, RateLimitBodyStage) and b.needs_request_body and not b.head_limits


def request(body: bytes, content_type: str | None = "application/json", parsed: tuple[Any] | None = None) -> Request:
    headers = [] if content_type is None else [("content-type", content_type)]
    out = Request("POST", "/login", "/login", "", headers)
    out.body = body
    out.parsed_json = parsed
    return out


@pytest.mark.parametrize(("body", "content_type", "steps", "expected"), [
    (b'{"user": {"name": " Alice "}}', "application/json", ("user", "name"), "alice"),
    (b'{"users": [{"name": "x"}, {"name": "Y"}]}', None, ("users", "1", "name"), "y"),
    (b'{"id": 42}', "application/vnd.api+json", ("id",), "42"),
    (b'{"users": []}', "application/json", ("users", "0"), None),
    (b'{"username": ""}', "application/json", ("username",), None),
    (b'{"a": {"b": 1, "b": 2}}', "application/json", ("a", "b"), AMBIGUOUS),
    (b"", "application/json", ("username",), None),
    (b"user=a", "application/x-www-form-urlencoded", ("user", "x"), None),
])
def test_body_member_reads_what_a_lenient_backend_would(body: bytes, content_type: str | None,
                                                       steps: tuple[str, ...], expected: str | None) -> None:
    """Nested members and array items, numbers, any JSON media type or none, normalised
    values; an empty value, a missing item or a nested form path is no value; a repeated key
    anywhere is ambiguous."""
    assert body_member(request(body, content_type), steps) == expected


def test_body_member_reuses_a_body_an_earlier_stage_parsed() -> None:
    """Where ``access`` already parsed the JSON body (refusing repeated keys), its value is
    used as it is: the body is not parsed twice."""
    assert body_member(request(b"{}", parsed=({"username": "Dave"},)), ("username",)) == "dave"


def test_a_login_limit_as_a_sliding_window_admits_the_limit_in_any_hour(tmp_path: Path,
                                                                        upstream: ScriptedUpstream) -> None:
    """The login limit as a sliding window (3 per hour per account) on the memory backend,
    the worker's clock moved by the test: 3 attempts on alice's account are admitted, the
    fourth is refused with Retry-After 3600 (when the first leaves the hour); 40 minutes
    later still refused (a GCRA limit would have let one in every 20 minutes); one hour
    after them, the three have left the window together: 3 more admitted, then refused
    again; bob's account is apart throughout."""
    rule = [{**LOGIN[0], "algorithm": "sliding-window"}]
    path, port = write_config(tmp_path, upstream, rule)
    clock = ManualClock()
    worker = Worker(str(path), identity=identity(), load=signed_in, clock=clock)
    url = f"http://127.0.0.1:{port}/login-sliding"

    async def scenario(client: httpx.AsyncClient) -> tuple[list[int], str, list[int]]:
        async def attempt(user: str) -> httpx.Response:
            return await client.post(url, content=login(user), headers={"content-type": "application/json"})

        codes = [(await attempt("alice")).status_code for _ in range(3)]
        refused = await attempt("alice")
        codes.append(refused.status_code)
        codes.append((await attempt("bob")).status_code)
        later = []
        clock.now += 40 * 60
        later.append((await attempt("alice")).status_code)
        clock.now += 20 * 60
        later += [(await attempt("alice")).status_code for _ in range(4)]
        return codes, refused.headers.get("retry-after", ""), later

    codes, retry_after, later = run(lambda: serving([worker], scenario))
    assert codes == [200, 200, 200, 429, 200]
    assert retry_after == "3600"
    assert later == [429, 200, 200, 200, 429]
