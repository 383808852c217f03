"""Learned ownership: the create operation's response teaches the ledger, reads decide from
its cache or the repository in a thread, writes go in the background, a store that is down
fails closed."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from bastion.errors import DependencyUnavailable
from bastion.pipeline.stage import RequestStage, ResponseStage
from bastion.services import Services, WorkerIdentity
from bastion.stages.access import LEDGER_KEY, AccessStage, MemoryOwnership, OwnershipLedger
from bastion.stages.access.ledger import Entry
from bastion.state.memory import MemoryBackend
from bastion.types import Exchange, Response

from .util import compile_stage, exchange, principal, refused, route

ALICE = principal("alice")
BOB = principal("bob")
ADMIN = principal("root", roles=("admin",))
KEY = "shop/books"


def services(repository: MemoryOwnership) -> Services:
    svc = Services(MemoryBackend(), WorkerIdentity("test", 0, 1, 0))
    svc.shared(LEDGER_KEY, lambda: OwnershipLedger(repository))
    return svc


def creator(id_from: str) -> AccessStage:
    return compile_stage(
        {"learn_ownership": {"kind": "books", "id_from": id_from}},
        route(path="/books/{id}" if id_from.startswith("path") else "/books", methods=frozenset({"POST", "PUT"})),
    )


def reader(**extra: Any) -> AccessStage:
    return compile_stage({"learned_owner": {"kind": "books", "param": "id", **extra}}, route(path="/books/{id}"))


def created(stage: AccessStage, who: Any, response: Response, params: dict[str, str] | None = None) -> Exchange:
    ex = exchange("POST", "/books", who=who, params=params or {})
    ex.response = response
    assert stage.on_response(ex) is None
    return ex


async def decide(stage: AccessStage, book: str, who: Any) -> object:
    outcome: object = stage.on_request_head(exchange(path=f"/books/{book}", who=who, params={"id": book}))
    if inspect.isawaitable(outcome):
        outcome = await outcome
    return outcome


def test_learning_routes_get_a_response_hook_that_needs_the_body_only_for_a_body_id() -> None:
    """The create operation has a response hook (and no body hook); only ``body:`` ids make
    the proxy hold the response body."""
    body, header, path = creator("body:$.id"), creator("header:Location"), creator("path:id")
    for stage in (body, header, path):
        assert isinstance(stage, ResponseStage) and not isinstance(stage, RequestStage)
    assert body.needs_response_body and not header.needs_response_body and not path.needs_response_body
    assert not isinstance(reader(), ResponseStage)


@pytest.mark.parametrize(
    ("id_from", "response", "params", "learned"),
    [
        ("body:$.id", Response(201, [("content-type", "application/json")], b'{"id": "b-1"}'), None, "b-1"),
        ("body:$.book.id", Response(200, [], b'{"book": {"id": 7}}'), None, "7"),
        ("header:Location", Response(201, [("location", "https://api.test/books/b%2D2/")], b""), None, "b-2"),
        ("path:id", Response(204, [], b""), {"id": "b-3"}, "b-3"),
        ("body:$.id", Response(409, [], b'{"id": "b-4"}'), None, None),  # not created
        ("body:$.id", Response(201, [], b"not json"), None, None),
        ("header:Location", Response(201, [], b""), None, None),
    ],
)
def test_the_create_response_teaches_the_ledger(id_from: str, response: Response, params: dict[str, str] | None,
                                                learned: str | None) -> None:
    """The new object's id is read where ``id_from`` says, on 2xx only; the record (cached at
    once, written in the background) names the creator's consumer id; the fact says what was
    learned, or why nothing was."""
    repository = MemoryOwnership()

    async def run() -> Exchange:
        svc = services(repository)
        stage = creator(id_from)
        await stage.start(svc)
        ex = created(stage, ALICE, response, params)
        await svc.close()  # closing the ledger writes what is pending
        return ex

    ex = asyncio.run(run())
    if learned is None:
        assert repository.rows == {}
        assert ex.facts.get("access", {"learned": None})["learned"] is None  # type: ignore[index]
    else:
        assert repository.rows == {(KEY, learned): "id-alice"}
        assert ex.facts["access"] == {"learned": KEY, "object": learned}


def test_an_anonymous_create_teaches_nothing() -> None:
    """Without a principal there is no creator to remember."""
    repository = MemoryOwnership()

    async def run() -> None:
        svc = services(repository)
        stage = creator("body:$.id")
        await stage.start(svc)
        created(stage, None, Response(201, [], b'{"id": "b-1"}'))
        await svc.close()

    asyncio.run(run())
    assert repository.rows == {}


def test_only_the_creator_reaches_a_learned_object() -> None:
    """After alice creates a book, she reaches it (from the cache, synchronously), bob is
    refused 403 ``access.owner``, an admin bypasses, and a request without the id is refused."""

    async def run() -> None:
        svc = services(MemoryOwnership())
        make, use = creator("body:$.id"), reader()
        await make.start(svc)
        await use.start(svc)
        created(make, ALICE, Response(201, [], b'{"id": "b-1"}'))
        assert use.on_request_head(exchange(path="/books/b-1", who=ALICE, params={"id": "b-1"})) is None  # sync
        assert refused(await decide(use, "b-1", BOB)) == "access.owner"
        assert await decide(use, "b-1", ADMIN) is None
        assert refused(use.on_request_head(exchange(path="/books", who=ALICE, params={}))) == "access.owner"
        await svc.close()

    asyncio.run(run())


def test_another_worker_reads_the_record_from_the_store() -> None:
    """A worker that did not see the create asks the repository (in a thread), then caches."""
    repository = MemoryOwnership()
    repository.record([(KEY, "b-9", "id-alice")])
    calls: list[str] = []
    original = repository.owner_of

    def counted(key: str, object_id: str) -> str | None:
        calls.append(threading.current_thread().name)
        return original(key, object_id)

    repository.owner_of = counted  # type: ignore[method-assign]

    async def run() -> None:
        svc = services(repository)
        use = reader()
        await use.start(svc)
        assert await decide(use, "b-9", ALICE) is None
        assert refused(await decide(use, "b-9", BOB)) == "access.owner"  # from the cache now
        await svc.close()

    asyncio.run(run())
    assert len(calls) == 1 and calls[0] != threading.main_thread().name


@pytest.mark.parametrize(("unknown", "allowed"), [("deny", False), ("allow", True)])
def test_an_unknown_object(unknown: str, allowed: bool) -> None:
    """An object the gateway never saw created is refused by default, or allowed when set."""

    async def run() -> object:
        svc = services(MemoryOwnership())
        use = reader(unknown=unknown)
        await use.start(svc)
        outcome = await decide(use, "never-seen", ALICE)
        await svc.close()
        return outcome

    outcome = asyncio.run(run())
    assert (outcome is None) == allowed
    if not allowed:
        assert refused(outcome) == "access.owner"


def test_a_store_that_is_down_fails_closed() -> None:
    """When the repository cannot answer, the hook raises DependencyUnavailable (the chain
    turns it into 503 under failure_mode closed); what is cached still decides."""
    repository = MemoryOwnership()

    async def run() -> None:
        svc = services(repository)
        make, use = creator("path:id"), reader()
        await make.start(svc)
        await use.start(svc)
        created(make, ALICE, Response(201, [], b""), {"id": "b-1"})
        repository.down = True
        with pytest.raises(DependencyUnavailable):
            await decide(use, "b-2", ALICE)
        assert await decide(use, "b-1", ALICE) is None
        repository.down = False
        await svc.close()

    asyncio.run(run())


def test_writes_are_retried_and_the_first_creator_wins() -> None:
    """A failed write stays pending and goes once the repository is back; an object already
    recorded keeps its first creator (a later 'create' of the same id does not steal it)."""
    repository = MemoryOwnership()
    written: list[Sequence[Entry]] = []
    original = repository.record

    def counted(entries: Sequence[Entry]) -> None:
        written.append(list(entries))
        original(entries)

    repository.record = counted  # type: ignore[method-assign]

    async def run() -> None:
        svc = services(repository)
        make = creator("path:id")
        await make.start(svc)
        repository.down = True
        created(make, ALICE, Response(201, [], b""), {"id": "b-1"})
        await asyncio.sleep(0.05)
        assert repository.rows == {}
        repository.down = False
        created(make, BOB, Response(201, [], b""), {"id": "b-1"})  # known to this worker: ignored
        ledger = svc.shared(LEDGER_KEY, lambda: OwnershipLedger(repository))
        assert await ledger.flush()
        repository.record([(KEY, "b-1", "id-bob")])
        await svc.close()

    asyncio.run(run())
    assert repository.rows == {(KEY, "b-1"): "id-alice"}


def test_without_a_store_a_learning_stage_cannot_start() -> None:
    """Services without a store refuse to start a stage that needs one (a clear message)
    instead of letting it learn nothing."""

    async def run() -> None:
        svc = Services(MemoryBackend(), WorkerIdentity("test", 0, 1, 0))
        with pytest.raises(RuntimeError, match="without a store"):
            await reader().start(svc)
        await svc.close()

    asyncio.run(run())


def test_a_head_hook_before_start_fails_closed() -> None:
    """Used without being started (never in a worker), the hook raises rather than allows."""
    with pytest.raises(DependencyUnavailable):
        reader().on_request_head(exchange(path="/books/b-1", who=ALICE, params={"id": "b-1"}))


def test_long_consumer_and_object_ids() -> None:
    """A consumer id longer than the store's column (a token's ``sub``) is recorded as its
    digest and still recognised; an object id longer than the column is not learned, and
    such an object is unknown (refused by default)."""
    from bastion.types import Principal

    long_sub = Principal("auth0|" + "7" * 60, "carol", roles=frozenset({"user"}))
    repository = MemoryOwnership()

    async def run() -> None:
        svc = services(repository)
        make, use = creator("path:id"), reader()
        await make.start(svc)
        await use.start(svc)
        created(make, long_sub, Response(201, [], b""), {"id": "b-1"})
        ex = created(make, ALICE, Response(201, [], b""), {"id": "y" * 256})
        assert ex.facts["access"]["learned"] is None  # type: ignore[index]
        await svc.close()

    asyncio.run(run())
    (stored,) = repository.rows.values()
    assert len(stored) == 36 and stored.startswith("sha256:")

    async def again() -> None:
        svc = services(repository)  # a fresh worker: decided from the store
        use = reader()
        await use.start(svc)
        assert await decide(use, "b-1", long_sub) is None
        assert refused(await decide(use, "b-1", ALICE)) == "access.owner"
        assert refused(await decide(use, "y" * 256, ALICE)) == "access.owner"
        await svc.close()

    asyncio.run(again())


def test_a_learned_object_named_in_the_query() -> None:
    """``in: query`` reads the id from the (decoded) query string; a second, different value
    of it is refused rather than guessed."""

    async def run() -> None:
        svc = services(MemoryOwnership())
        make = creator("path:id")
        use = compile_stage({"learned_owner": {"kind": "books", "param": "book", "in": "query"}}, route(path="/loans"))
        await make.start(svc)
        await use.start(svc)
        created(make, ALICE, Response(201, [], b""), {"id": "b 1"})
        mine = exchange(path="/loans", query="book=b%201", who=ALICE, params={})
        assert use.on_request_head(mine) is None
        theirs = exchange(path="/loans", query="book=b%201", who=BOB, params={})
        assert refused(use.on_request_head(theirs)) == "access.owner"
        polluted = exchange(path="/loans", query="book=b%201&book=other", who=ALICE, params={})
        assert refused(use.on_request_head(polluted)) == "access.owner"
        await svc.close()

    asyncio.run(run())
