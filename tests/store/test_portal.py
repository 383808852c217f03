"""Developer-portal accounts in a real store (SQLite and PostgreSQL): invitations kept as
keyed hashes, spent once, lapsing; one login per consumer; registration on a plan."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from bastion.config.model import StoreSettings
from bastion.control.accounts import passwords
from bastion.store import Store, consumers, open_store
from bastion.store import portal as accounts
from bastion.store.errors import StoreError, UnknownConsumer
from bastion.store.models import PortalAccount, utcnow


@pytest.fixture
def store(store_settings: StoreSettings) -> Iterator[Store]:
    """A store with the consumers acme and globex."""
    store = open_store(store_settings)
    with store.write() as session:
        consumers.create(session, "acme")
        consumers.create(session, "globex")
    try:
        yield store
    finally:
        store.close()


def test_an_invitation_is_a_keyed_hash_spent_once(store: Store) -> None:
    """The token is found by its keyed hash only (the row holds no token), the login is
    normalised, the placeholder password matches nothing anyone knows, a second invitation
    replaces the first, and a spent invitation finds nothing."""
    with store.write() as session:
        account, first = accounts.invite(session, store.pepper, "acme", "  Dev@Acme.Test ", timedelta(hours=1))
        assert account.login == "dev@acme.test" and account.invite_hash is not None
        assert first.encode() not in account.invite_hash and account.must_change_password
        assert not passwords.verify_password(account.password_hash, "")
        again, second = accounts.invite(session, store.pepper, "acme", "dev@acme.test", timedelta(hours=1))
        assert again.id == account.id and second != first
    now = utcnow()
    with store.write() as session:
        assert accounts.by_invitation(session, store.pepper, first, now) is None
        found = accounts.by_invitation(session, store.pepper, second, now)
        assert found is not None and found.login == "dev@acme.test"
        accounts.spend_invitation(found)
    with store.read() as session:
        assert accounts.by_invitation(session, store.pepper, second, now) is None


def test_an_invitation_lapses_and_belongs_to_one_consumer(store: Store) -> None:
    """An invitation is refused once lapsed; its lifetime is bounded; a login of acme cannot be
    invited for globex; an unknown consumer or a malformed login is an error that says so."""
    with store.write() as session:
        _, token = accounts.invite(session, store.pepper, "acme", "dev@acme.test", timedelta(minutes=5))
    with store.read() as session:
        assert accounts.by_invitation(session, store.pepper, token, utcnow() + timedelta(minutes=6)) is None
        assert accounts.by_invitation(session, store.pepper, token, utcnow()) is not None
    with store.write() as session:
        with pytest.raises(StoreError, match="at most 30 days"):
            accounts.invite(session, store.pepper, "acme", "x@acme.test", timedelta(days=31))
        with pytest.raises(accounts.AccountExists, match="belongs to another consumer"):
            accounts.invite(session, store.pepper, "globex", "dev@acme.test", timedelta(hours=1))
        with pytest.raises(UnknownConsumer):
            accounts.invite(session, store.pepper, "nobody", "dev@nobody.test", timedelta(hours=1))
        with pytest.raises(StoreError, match="is not a portal login"):
            accounts.invite(session, store.pepper, "acme", "two words", timedelta(hours=1))


def test_registration_makes_a_consumer_on_the_plan(store: Store) -> None:
    """Registration checks the password policy, makes a consumer named after the login (on
    the plan given) with its account, and refuses a login or consumer name already taken."""
    with store.write() as session:
        with pytest.raises(StoreError, match="at least 12 characters"):
            accounts.register(session, "new@dev.test", "short", "starter")
        account = accounts.register(session, "New+x@Dev.test", "correct horse battery", "starter")
        consumer = accounts.consumer_of(session, account)
        assert (account.login, consumer.name, consumer.plan) == ("new+x@dev.test", "new-x@dev.test", "starter")
        assert passwords.verify_password(account.password_hash, "correct horse battery")
        assert not account.must_change_password and account.invite_hash is None
    with store.write() as session:
        with pytest.raises(accounts.AccountExists, match="taken"):
            accounts.register(session, "new+x@dev.test", "correct horse battery", None)
        with pytest.raises(accounts.AccountExists, match="taken"):
            accounts.register(session, "acme", "correct horse battery", None)
    with store.read() as session:
        assert len(session.execute(select(PortalAccount.id)).all()) == 1
