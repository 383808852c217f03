"""API keys in the store: made once, kept only as a keyed hash, revoked, rotated, expired."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from bastion.config.model import StoreSettings
from bastion.stages.auth import keyformat
from bastion.store import Store, StoreError, UnknownConsumer, UnknownKey, consumers, keys, open_store
from bastion.store.models import ApiKey, utcnow


@pytest.fixture
def store(store_settings: StoreSettings) -> Iterator[Store]:
    store = open_store(store_settings)
    with store.write() as session:
        consumers.create(session, "alice", roles=["user"])
    try:
        yield store
    finally:
        store.close()


def make_key(store: Store, scopes: tuple[str, ...] = ("books:read",), **kwargs: object) -> keys.NewKey:
    with store.write() as session:
        return keys.create(session, store.pepper, "alice", scopes, **kwargs)  # type: ignore[arg-type]


def active_ids(store: Store) -> set[str]:
    with store.read() as session:
        return {k.key_id for k in keys.active(session)}


def test_a_new_key_is_well_formed_and_stored_as_its_keyed_hash(store: Store) -> None:
    """The key created is bst_<43>_<6> with a valid checksum; the store keeps its id, prefix
    and HMAC-SHA-256 under the pepper, and the active snapshot names its consumer and scopes."""
    new = make_key(store, ("books:write", "books:read"))
    assert keyformat.is_valid(new.secret) and len(new.secret) == 54
    with store.read() as session:
        row = session.execute(select(ApiKey)).scalar_one()
        assert row.id == new.secret[4:12] and row.prefix == new.secret[:12] + "…"
        assert row.hash == keyformat.key_hash(store.pepper, new.secret)
        assert row.scopes == ["books:read", "books:write"]
        (snapshot,) = keys.active(session)
    assert snapshot.consumer_name == "alice" and snapshot.roles == ("user",)
    assert (snapshot.ip_allow, snapshot.ip_deny) == ((), ())
    assert snapshot.scopes == ("books:read", "books:write")


def _every_value(store: Store) -> Iterator[str]:
    meta = MetaData()
    with store.engine.connect() as conn:
        meta.reflect(conn)
        for table in meta.tables.values():
            for row in conn.execute(table.select()):
                yield from (repr(v) for v in row)


def test_the_secret_is_never_stored(store: Store, store_settings: StoreSettings) -> None:
    """Neither the key nor its secret part is in any column of any table; on SQLite, not
    anywhere in the database's files either (its write-ahead log included)."""
    new = make_key(store)
    secret_part = new.secret[12:47]
    assert not any(secret_part in value for value in _every_value(store))
    if store_settings.url is not None and store_settings.url.startswith("sqlite"):
        db = Path(store_settings.url.removeprefix("sqlite:///"))
        files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
        assert files
        for path in files:
            assert secret_part.encode() not in path.read_bytes()


def test_unknown_consumer_and_past_expiry_are_refused(store: Store) -> None:
    """A key for a consumer that does not exist, or expiring in the past, is not made."""
    with pytest.raises(UnknownConsumer), store.write() as session:
        keys.create(session, store.pepper, "mallory", [])
    with pytest.raises(StoreError, match="expired already"):
        make_key(store, expires_at=utcnow() - timedelta(seconds=1))
    assert active_ids(store) == set()


def test_revoked_and_expired_keys_leave_the_snapshot(store: Store) -> None:
    """A revoked key is no longer active at once, and the generation moved; a key whose
    expiry has passed is not active either."""
    kept, revoked = make_key(store), make_key(store)
    before = store.generation()
    with store.write() as session:
        assert keys.revoke(session, revoked.record.id)
        assert not keys.revoke(session, revoked.record.id)  # twice: nothing more to do
    assert store.generation() == before + 1
    assert active_ids(store) == {kept.record.id}
    with store.write() as session:
        session.get(ApiKey, kept.record.id).expires_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
    assert active_ids(store) == set()
    with pytest.raises(UnknownKey), store.write() as session:
        keys.revoke(session, "nosuchid")


def test_rotation_keeps_the_old_key_for_the_overlap_only(store: Store) -> None:
    """Rotating makes a new key with the same consumer and scopes; the old one stays active
    during the overlap (expiring at its end) and is marked replaced; rotating it again, or a
    revoked key, is refused."""
    old = make_key(store, ("a", "b"))
    with store.write() as session:
        new = keys.rotate(session, store.pepper, old.record.id, timedelta(hours=1), None)
    assert new.secret != old.secret and new.record.scopes == ["a", "b"]
    assert active_ids(store) == {old.record.id, new.record.id}
    with store.read() as session:
        row = keys.get(session, old.record.id)
    assert row.replaced_by == new.record.id and row.expires_at is not None
    assert timedelta(minutes=59) < row.expires_at - utcnow() <= timedelta(hours=1)
    with pytest.raises(StoreError, match="rotated already"), store.write() as session:
        keys.rotate(session, store.pepper, old.record.id, timedelta(0), None)
    with store.write() as session:
        keys.rotate(session, store.pepper, new.record.id, timedelta(0), None)
    assert new.record.id not in active_ids(store)  # no overlap: gone at once
    with store.write() as session:
        keys.revoke(session, old.record.id)
    with pytest.raises(StoreError, match="is revoked"), store.write() as session:
        keys.rotate(session, store.pepper, old.record.id, timedelta(0), None)


def test_last_use_is_recorded_without_going_back(store: Store) -> None:
    """A batch of last uses is written; an older time (another instance's) does not
    overwrite a newer one, and recording does not bump the generation."""
    new = make_key(store)
    gen = store.generation()
    now = utcnow()
    with store.write() as session:
        keys.record_last_used(session, {new.record.id: now})
    with store.write() as session:
        keys.record_last_used(session, {new.record.id: now - timedelta(minutes=5)})
    with store.read() as session:
        assert keys.get(session, new.record.id).last_used_at == now
    assert store.generation() == gen


def test_deleting_a_consumer_deletes_its_keys(store: Store) -> None:
    """A consumer deleted takes its keys with it: none stays active."""
    make_key(store)
    with store.write() as session:
        assert consumers.delete_by_name(session, "alice") == 1
    assert active_ids(store) == set()


def test_two_rotations_of_one_key_at_once_make_one_new_key(store: Store) -> None:
    """Two rotations of the same key racing (two admins, two terminals): the key is locked
    while one rotates it, so exactly one succeeds and the other is told it was rotated."""
    import threading

    old = make_key(store)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def rotate() -> None:
        barrier.wait()
        try:
            with store.write() as session:
                keys.rotate(session, store.pepper, old.record.id, timedelta(hours=1), None)
            outcomes.append("rotated")
        except StoreError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("rotated") == 1
    assert any("was rotated already" in outcome for outcome in outcomes)
    assert len(active_ids(store)) == 2  # the old key (in its overlap) and one new key


def test_the_snapshot_carries_a_declared_consumers_networks(store_settings: StoreSettings) -> None:
    """A declared consumer's ip_allow and ip_deny reach the active-key snapshot as written,
    for the access stage to enforce on every route."""
    from bastion.config.model import Consumer as DeclaredSettings

    declared = DeclaredSettings.model_validate({"name": "svc", "ip_allow": ["10.0.0.0/8"], "ip_deny": ["10.9.0.0/16"]})
    store = open_store(store_settings, [declared])
    try:
        with store.write() as session:
            keys.create(session, store.pepper, "svc", [])
        with store.read() as session:
            (active,) = keys.active(session)
        assert (active.ip_allow, active.ip_deny) == (("10.0.0.0/8",), ("10.9.0.0/16",))
    finally:
        store.close()
