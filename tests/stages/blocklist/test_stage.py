"""The ``blocklist`` stage over a real memory backend: what a detector put on the block
list is refused (IP at the head; credential or consumer once signed in), an answer is
reused for a moment and read again after it, and the loader puts the stage on every
route exactly when a detector blocks."""

from __future__ import annotations

import asyncio
import inspect
import os
from pathlib import Path

from bastion.config import load_config
from bastion.services import Clock, Services, WorkerIdentity, check_backends
from bastion.stages.blocklist import BlocklistConfig, BlocklistStage, block_key
from bastion.stages.blocklist.stage import CACHE_SECONDS
from bastion.state.memory import MemoryBackend
from bastion.types import Block, Exchange, Principal, Request
from tests.config.util import write


class MovingClock(Clock):
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def exchange(ip: str, principal: Principal | None = None) -> Exchange:
    ex = Exchange(Request("GET", "/orders", "/orders", "", [], client_ip=ip), "r1")
    ex.principal = principal
    return ex


async def decide(outcome: object) -> object:
    return await outcome if inspect.isawaitable(outcome) else outcome


def test_blocked_ip_credential_and_consumer_are_refused() -> None:
    """A blocked IP is refused at the head with 403 ``blocked.<detector>``; a blocked
    credential or consumer at the request hook; anyone else passes."""

    async def go() -> None:
        state = MemoryBackend()
        services = Services(state, WorkerIdentity("t", 0, 1, os.getpid()))
        stage = BlocklistStage(BlocklistConfig())
        await stage.start(services)
        await state.set(block_key("ip", "203.0.113.5"), "scanner", 60)
        await state.set(block_key("credential", "key-1"), "token_sharing", 60)
        await state.set(block_key("consumer", "c-9"), "enumeration", 60)
        refused = await decide(stage.on_request_head(exchange("203.0.113.5")))
        assert isinstance(refused, Block)
        assert (refused.status, refused.reason) == (403, "blocked.scanner")
        assert await decide(stage.on_request_head(exchange("192.0.2.1"))) is None
        shared = exchange("192.0.2.1", Principal("c-1", "alice", "key-1"))
        assert getattr(await decide(stage.on_request(shared)), "reason", None) == "blocked.token_sharing"
        walker = exchange("192.0.2.1", Principal("c-9", "mallory", "key-9"))
        assert getattr(await decide(stage.on_request(walker)), "reason", None) == "blocked.enumeration"
        assert await decide(stage.on_request(exchange("192.0.2.1", Principal("c-2", "bob", "key-2")))) is None
        await services.close()

    asyncio.run(go())


def test_an_answer_is_reused_briefly_then_read_again() -> None:
    """A block set after an IP was looked up is seen once the cached answer is older than
    ``CACHE_SECONDS`` (so within a second everywhere), not before; within that time the
    answer comes at once, without waiting on the backend."""

    async def go() -> None:
        clock = MovingClock()
        state = MemoryBackend(clock.monotonic)
        services = Services(state, WorkerIdentity("t", 0, 1, os.getpid()), clock)
        stage = BlocklistStage(BlocklistConfig())
        await stage.start(services)
        assert await decide(stage.on_request_head(exchange("203.0.113.7"))) is None
        await state.set(block_key("ip", "203.0.113.7"), "brute_force", 60)
        assert stage.on_request_head(exchange("203.0.113.7")) is None  # cached, answered at once
        clock.now += CACHE_SECONDS
        refused = await decide(stage.on_request_head(exchange("203.0.113.7")))
        assert getattr(refused, "reason", None) == "blocked.brute_force"
        await services.close()

    asyncio.run(go())


def test_the_stage_is_on_every_route_exactly_when_a_detector_blocks(tmp_path: Path) -> None:
    """Detectors that only alert leave the block list out (no cost); one detector with
    ``action: block`` puts it on every route, first after ``cors``."""
    service = ("services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}, "
               "{path: /b, public: true}]}]\n")
    alerting = load_config(write(tmp_path, service + "detectors: {enabled: true}\n"))
    assert all("blocklist" not in [s.name for s in r.built] for r in alerting.routes)
    blocking = load_config(write(tmp_path, service + "detectors: {enabled: true, brute_force: {action: block}}\n"))
    for route in blocking.routes:
        assert route.built[0].name == "blocklist"


def test_blocking_with_the_memory_backend_needs_one_worker(tmp_path: Path) -> None:
    """A block kept in one worker's memory would not hold in the others: with a detector that
    blocks and the memory backend, several workers are refused, naming the fix."""
    path = write(tmp_path, "services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]\n"
                           "detectors: {enabled: true, scanner: {action: block}}\n")
    loaded = load_config(path)
    issue = check_backends(loaded, 2)
    assert issue is not None and "the stage blocklist" in str(issue) and "--workers 1" in str(issue)
    assert check_backends(loaded, 1) is None
