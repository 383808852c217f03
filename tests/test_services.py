"""The services a worker hands its stages: built from ``backends``, closed once."""

from __future__ import annotations

import asyncio
import os

import pytest

from bastion.config.model import Backends, Consumer, StoreSettings
from bastion.services import Clock, Services, WorkerIdentity, build_services
from bastion.state.memory import MemoryBackend
from bastion.store import consumers

from .proxy.scripted import ScriptedUpstream

IDENTITY = WorkerIdentity("test", 0, 1, os.getpid())


class SteppedClock(Clock):
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 50.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now


def test_memory_state_follows_the_injected_clock() -> None:
    """build_services gives the memory backend the services' clock, so a test that moves the
    clock expires state without waiting."""
    clock = SteppedClock()
    services = build_services(Backends(), IDENTITY, clock)
    assert isinstance(services.state, MemoryBackend)
    assert services.clock is clock and services.clock.wall() == 1_700_000_050.0

    async def scenario() -> tuple[bytes | None, bytes | None]:
        await services.state.set("k", b"v", ttl=10)
        clock.now += 9.9
        before = await services.state.get("k")
        clock.now += 0.2
        after = await services.state.get("k")
        await services.close()
        return before, after

    assert asyncio.run(scenario()) == (b"v", None)


def test_clock_readers_are_time_s_own_functions_unless_overridden() -> None:
    """Clock.readers gives per-request code module time's functions for the real clock (no
    Python frame per read), and a test clock's overriding methods, so moving it still moves
    what the readers return."""
    import time

    assert Clock().readers() == (time.monotonic, time.time)
    clock = SteppedClock()
    monotonic, wall = clock.readers()
    clock.now += 5
    assert (monotonic(), wall()) == (55.0, 1_700_000_055.0)

    class WallOnly(Clock):
        def wall(self) -> float:
            return 7.0

    monotonic, wall = WallOnly().readers()
    assert monotonic is time.monotonic and wall() == 7.0


def test_http_client_is_lazy_shared_and_closed_with_the_services() -> None:
    """The HTTP client is created on first use, on the running loop, the same object for
    every stage, reaches a real server, and is closed with the services (it cannot be
    taken again after that)."""
    services = Services(MemoryBackend(), IDENTITY)
    assert services._http is None

    async def scenario() -> int:
        with ScriptedUpstream() as upstream:
            client = services.http
            assert services.http is client
            status = (await client.get(upstream.url + "/status/204")).status_code
        await services.close()
        assert client.is_closed
        with pytest.raises(RuntimeError, match="services are closed"):
            _ = services.http
        await services.close()  # a second close is harmless
        return status

    assert asyncio.run(scenario()) == 204


def test_shared_objects_are_made_once_and_closed_with_the_worker() -> None:
    """``shared`` hands every caller the same object for a key (made once), and closing the
    services awaits each shared object's ``aclose``, even after one of them fails."""
    import asyncio

    from bastion.services import Services, WorkerIdentity
    from bastion.state.memory import MemoryBackend

    closed: list[str] = []

    class Thing:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        async def aclose(self) -> None:
            closed.append(self.name)
            if self.fail:
                raise RuntimeError("boom")

    async def main() -> None:
        services = Services(MemoryBackend(), WorkerIdentity("i", 0, 1, 1))
        made: list[int] = []
        first = services.shared("jwks:a", lambda: made.append(1) or Thing("a", fail=True))
        assert services.shared("jwks:a", lambda: made.append(1) or Thing("x")) is first
        services.shared("jwks:b", lambda: Thing("b"))
        assert made == [1]
        await services.close()
        assert sorted(closed) == ["a", "b"]

    asyncio.run(main())


def test_the_store_is_made_on_first_use_and_closed_with_the_services(store_settings: StoreSettings) -> None:
    """Services built with the configuration's store make it on first use (the same object
    after), with the declared consumers, which a reload's sync_consumers updates in the
    store; closing the services closes it, and it cannot be taken again."""
    services = build_services(Backends(), IDENTITY, None, store_settings, [Consumer(name="alice", roles=["user"])])
    assert services._store is None

    async def scenario() -> tuple[list[str], list[str]]:
        store = services.store
        assert services.store is store and store.url == store_settings.url

        def roles() -> list[str]:
            with store.read() as session:
                return consumers.get(session, "alice").roles

        before = await asyncio.to_thread(roles)
        await services.sync_consumers([Consumer(name="alice", roles=["admin"])])
        after = await asyncio.to_thread(roles)
        await services.close()
        return before, after

    assert asyncio.run(scenario()) == (["user"], ["admin"])
    with pytest.raises(RuntimeError, match="closed"):
        _ = services.store


def test_services_without_a_store_say_so() -> None:
    """Services built without store settings refuse to hand one out, with a reason."""
    with pytest.raises(RuntimeError, match="without a store"):
        _ = Services(MemoryBackend(), IDENTITY).store
