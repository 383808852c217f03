"""The API key verifier on a real store (SQLite and PostgreSQL), with keys made by the
store's own functions (what `bastion keys` calls): verified, refused, and failing closed."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from bastion.config.model import StoreSettings
from bastion.services import Clock, Services, WorkerIdentity
from bastion.stages.auth import keyformat
from bastion.stages.auth.apikey import (
    HASH_CACHE_SIZE,
    KEY_EXPIRED,
    KEY_UNKNOWN,
    MALFORMED,
    STORE_UNAVAILABLE,
    ApiKeyVerifier,
)
from bastion.state.memory import MemoryBackend
from bastion.store import Store, consumers, keys, open_store
from bastion.store.models import utcnow
from bastion.testing import free_port
from bastion.types import Principal

IDENTITY = WorkerIdentity("test", 0, 1, os.getpid())


class MovableClock(Clock):
    """Real time, which a test may move ahead (wall and monotonic apart)."""

    def __init__(self) -> None:
        self.monotonic_ahead = 0.0
        self.wall_ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.monotonic_ahead

    def wall(self) -> float:
        return time.time() + self.wall_ahead


@pytest.fixture
def store(store_settings: StoreSettings) -> Iterator[Store]:
    """A store with alice (role user), as the CLI makes her; closed after the test."""
    store = open_store(store_settings)
    with store.write() as session:
        consumers.create(session, "alice", roles=["user"])
    try:
        yield store
    finally:
        store.close()


def new_key(store: Store, scopes: tuple[str, ...] = ("books:read",), **kwargs: object) -> keys.NewKey:
    with store.write() as session:
        return keys.create(session, store.pepper, "alice", scopes, **kwargs)  # type: ignore[arg-type]


def run(settings: StoreSettings, scenario: Callable[[ApiKeyVerifier, Services, MovableClock], Awaitable[None]]) -> None:
    """Start a verifier on fresh worker services over ``settings``, run ``scenario``, close."""
    clock = MovableClock()

    async def main() -> None:
        services = Services(MemoryBackend(), IDENTITY, clock, settings)
        verifier = ApiKeyVerifier(max_staleness=30)
        await verifier.start(services)
        try:
            await scenario(verifier, services, clock)
        finally:
            await verifier.close()
            await services.close()

    asyncio.run(main())


async def until(check: Callable[[], bool], what: str, within: float = 10) -> None:
    """Wait (a few polls at most) until ``check()`` holds; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not seen within {within:g} s: {what}")
        await asyncio.sleep(0.05)


def test_a_key_verifies_to_its_principal_and_its_use_is_recorded(
    store: Store, store_settings: StoreSettings
) -> None:
    """A key made by the store verifies synchronously to alice's principal: her id and
    name, the key's id, its scopes and her roles; when it was used reaches the store when
    the worker closes, not on the request path."""
    made = new_key(store, ("books:read", "books:write"))
    with store.read() as session:
        alice_id = consumers.get(session, "alice").id

    async def scenario(verifier: ApiKeyVerifier, services: Services, clock: MovableClock) -> None:
        verdict = verifier.verify(made.secret)
        assert verdict == Principal(
            consumer_id=alice_id,
            consumer_name="alice",
            credential_id=made.record.id,
            scopes=frozenset({"books:read", "books:write"}),
            roles=frozenset({"user"}),
        )
        with store.read() as session:
            assert keys.get(session, made.record.id).last_used_at is None

    run(store_settings, scenario)
    with store.read() as session:
        used = keys.get(session, made.record.id).last_used_at
    assert used is not None and abs((utcnow() - used).total_seconds()) < 60


def test_a_typo_is_refused_by_its_checksum_without_a_lookup(tmp_path: Path) -> None:
    """With a store that was never read (so any lookup could only fail closed, 503), a key
    with one character wrong is still refused as malformed (401): the checksum decided,
    without the store. A well-formed key gets the 503 there."""
    unreachable = StoreSettings(
        url=f"postgresql://nobody@127.0.0.1:{free_port()}/none", pepper_file=tmp_path / "pepper"
    )
    key = keyformat.generate()
    typo = key[:20] + ("a" if key[20] != "a" else "b") + key[21:]

    async def scenario(verifier: ApiKeyVerifier, services: Services, clock: MovableClock) -> None:
        assert verifier.snapshot is not None and verifier.snapshot.poller is not None
        assert verifier.snapshot.poller.failures >= 1
        assert verifier.verify(typo) is MALFORMED
        assert verifier.verify("bst_short") is MALFORMED
        assert verifier.verify(key) is STORE_UNAVAILABLE and STORE_UNAVAILABLE.status == 503

    run(unreachable, scenario)


def test_unknown_and_mistyped_keys_are_refused(store: Store, store_settings: StoreSettings) -> None:
    """A well-formed key the store never made is unknown (401); a one-character typo of a
    real key is malformed (401); both proofs of nothing."""
    made = new_key(store)
    typo = made.secret[:30] + ("Z" if made.secret[30] != "Z" else "Y") + made.secret[31:]

    async def scenario(verifier: ApiKeyVerifier, services: Services, clock: MovableClock) -> None:
        assert verifier.verify(keyformat.generate()) is KEY_UNKNOWN
        assert verifier.verify(typo) is MALFORMED
        assert KEY_UNKNOWN.status == MALFORMED.status == 401

    run(store_settings, scenario)


def test_a_key_presented_again_comes_from_a_bounded_cache_that_holds_no_key(
    store: Store, store_settings: StoreSettings
) -> None:
    """A key presented again gets the same answer (alice's principal, unknown, malformed)
    as the first time; what is remembered is each well-formed key's HMAC under its BLAKE2s,
    never the key itself, and a malformed key is not remembered at all; a flood of new
    keys empties the cache instead of growing it, and the real key still verifies."""
    made = new_key(store)
    unknown = keyformat.generate()
    typo = made.secret[:30] + ("Z" if made.secret[30] != "Z" else "Y") + made.secret[31:]

    async def scenario(verifier: ApiKeyVerifier, services: Services, clock: MovableClock) -> None:
        first = verifier.verify(made.secret)
        assert isinstance(first, Principal)
        for _ in range(2):
            assert verifier.verify(made.secret) == first
            assert verifier.verify(unknown) is KEY_UNKNOWN
            assert verifier.verify(typo) is MALFORMED
        remembered = verifier._hashes
        assert set(remembered) == {hashlib.blake2s(k.encode()).digest() for k in (made.secret, unknown)}
        assert not any(made.secret.encode() in value for value in remembered.values())
        for _ in range(HASH_CACHE_SIZE + 1):
            verifier.verify(keyformat.generate())
        assert len(verifier._hashes) <= HASH_CACHE_SIZE
        assert verifier.verify(made.secret) == first

    run(store_settings, scenario)


def test_revocation_and_new_keys_reach_a_running_verifier(store: Store, store_settings: StoreSettings) -> None:
    """A key revoked in the store while the verifier runs is refused once its running poll
    has loaded the generation of that write; a key created meanwhile is accepted then too."""
    made = new_key(store)

    async def scenario(verifier: ApiKeyVerifier, services: Services, clock: MovableClock) -> None:
        assert isinstance(verifier.verify(made.secret), Principal)
        snapshot = verifier.snapshot
        assert snapshot is not None and snapshot.poller is not None
        poller = snapshot.poller
        with store.write() as session:
            keys.revoke(session, made.record.id)
        later = new_key(store)
        written = store.generation()
        assert poller.generation < written  # nothing awaited since the writes: not seen yet
        # The event itself, however long a loaded machine makes a poll wait for its thread;
        # the deadline only ends a wait for a poll that never comes.
        await until(lambda: poller.generation >= written, f"a poll loading generation {written}", within=120)
        assert verifier.verify(made.secret) is KEY_UNKNOWN
        assert isinstance(verifier.verify(later.secret), Principal)

    run(store_settings, scenario)


def test_an_expired_key_is_refused(store: Store, store_settings: StoreSettings) -> None:
    """A key with an expiry verifies before it and is refused (key_expired) after it,
    without waiting for the store."""
    made = new_key(store, expires_at=utcnow() + timedelta(hours=1))

    async def scenario(verifier: ApiKeyVerifier, services: Services, clock: MovableClock) -> None:
        assert isinstance(verifier.verify(made.secret), Principal)
        clock.wall_ahead = 3601
        assert verifier.verify(made.secret) is KEY_EXPIRED

    run(store_settings, scenario)


def test_a_rotated_key_works_until_its_overlap_ends(store: Store, store_settings: StoreSettings) -> None:
    """After a rotation with a one-hour overlap both keys verify; past the overlap the old
    key is refused and the new one still verifies."""
    old = new_key(store)

    async def scenario(verifier: ApiKeyVerifier, services: Services, clock: MovableClock) -> None:
        with store.write() as session:
            new = keys.rotate(session, store.pepper, old.record.id, timedelta(hours=1), None)
        await until(lambda: isinstance(verifier.verify(new.secret), Principal), "the new key accepted")
        assert isinstance(verifier.verify(old.secret), Principal)
        clock.wall_ahead = 3601
        assert verifier.verify(old.secret) is KEY_EXPIRED
        assert isinstance(verifier.verify(new.secret), Principal)

    run(store_settings, scenario)


def test_fails_closed_when_the_snapshot_is_too_old(store: Store, store_settings: StoreSettings) -> None:
    """When the store stops answering, keys keep verifying from the snapshot up to
    max_staleness; beyond it every key gets 503 auth.store_unavailable."""
    made = new_key(store)

    async def scenario(verifier: ApiKeyVerifier, services: Services, clock: MovableClock) -> None:
        snapshot = verifier.snapshot
        assert snapshot is not None
        with store.engine.begin() as conn:  # the store breaks: its counter is gone
            conn.execute(text("DROP TABLE generation"))
        poller = snapshot.poller
        assert poller is not None
        await until(lambda: poller.failures >= 1, "a failed poll")
        assert isinstance(verifier.verify(made.secret), Principal)
        clock.monotonic_ahead = 31
        assert verifier.verify(made.secret) is STORE_UNAVAILABLE

    run(store_settings, scenario)


def test_every_route_shares_one_snapshot(store: Store, store_settings: StoreSettings) -> None:
    """Two verifiers (two routes) started on one worker's services use the same snapshot,
    kept under apikeys:<store url>, which the services close."""

    async def scenario(verifier: ApiKeyVerifier, services: Services, clock: MovableClock) -> None:
        other = ApiKeyVerifier()
        await other.start(services)
        assert other.snapshot is verifier.snapshot
        assert services.shared("apikeys:" + str(store_settings.url), lambda: None) is verifier.snapshot

    run(store_settings, scenario)


def test_api_keys_and_certificates_follow_the_store_with_one_poller(
    store: Store, store_settings: StoreSettings
) -> None:
    """API keys and the mTLS certificate map started on one worker share one store poller
    (under store-poller:<url>): one poll reads the generation counter once and, after a key
    was created and a certificate mapped, brings both to the worker; a poll that finds no
    change reads the counter only. When the store breaks, the failure is counted once and
    both fail closed (503) past their limit."""
    from bastion.stages.auth.mtls import STORE_UNAVAILABLE as CERT_STORE_UNAVAILABLE
    from bastion.stages.auth.mtls import CertificateVerifier
    from bastion.state.poller import StorePoller
    from bastion.types import ClientCertificate

    certificate = ClientCertificate(fingerprint="ab" * 32, subject="CN=alice", sans=())
    reads: list[int] = []
    counter = store.generation

    def counted() -> int:
        reads.append(1)
        return counter()

    async def scenario(verifier: ApiKeyVerifier, services: Services, clock: MovableClock) -> None:
        mtls = CertificateVerifier(max_staleness=30)
        await mtls.start(services)
        try:
            snapshot = verifier.snapshot
            poller = services.shared("store-poller:" + str(store_settings.url), lambda: None)
            assert isinstance(poller, StorePoller) and snapshot is not None and snapshot.poller is poller
            await poller.aclose()  # no background polls: each refresh below is one poll
            poller.store.generation = counted  # type: ignore[method-assign]
            made = new_key(store)
            with store.write() as session:
                consumers.add_certificate(session, "alice", {"fingerprint": "sha256:" + "AB" * 32})
            assert verifier.verify(made.secret) is KEY_UNKNOWN
            await poller.refresh()
            assert len(reads) == 1
            assert isinstance(verifier.verify(made.secret), Principal)
            assert isinstance(mtls.verify_certificate(certificate), Principal)
            await poller.refresh()
            assert len(reads) == 2 and poller.failures == 0
            with store.engine.begin() as conn:  # the store breaks: its counter is gone
                conn.execute(text("DROP TABLE generation"))
            await poller.refresh()
            assert poller.failures == 1
            assert isinstance(verifier.verify(made.secret), Principal)  # within its limit
            clock.monotonic_ahead = 31
            assert verifier.verify(made.secret) is STORE_UNAVAILABLE
            assert mtls.verify_certificate(certificate) is CERT_STORE_UNAVAILABLE
        finally:
            await mtls.close()

    run(store_settings, scenario)
