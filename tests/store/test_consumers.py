"""Consumers in the store: created by the CLI, or declared in the configuration and synced."""

from __future__ import annotations

import pytest

from bastion.config.model import Consumer as DeclaredSettings
from bastion.config.model import StoreSettings
from bastion.store import ConsumerExists, DeclaredConsumer, UnknownConsumer, consumers, open_store


def test_declared_consumers_are_synced_and_read_only(store_settings: StoreSettings) -> None:
    """A consumer declared in the configuration appears in the store, marked declared, with
    its roles, plan, metadata, IP lists and certificates; deleting it there is refused."""
    declared = DeclaredSettings.model_validate(
        {
            "name": "alice",
            "roles": ["user"],
            "plan": "free",
            "metadata": {"team": "x"},
            "ip_allow": ["10.0.0.0/8"],
            "certificates": [{"san": "svc.internal"}],
        }
    )
    store = open_store(store_settings, [declared])
    try:
        with store.read() as session:
            alice = consumers.get(session, "alice")
            assert alice.declared and alice.roles == ["user"] and alice.plan == "free"
            assert alice.meta == {"team": "x"} and alice.ip_allow == ["10.0.0.0/8"] and alice.ip_deny == []
            assert alice.certificates == [{"san": "svc.internal"}]
        with pytest.raises(DeclaredConsumer), store.write() as session:
            consumers.delete_by_name(session, "alice")
    finally:
        store.close()


def test_sync_follows_the_configuration(store_settings: StoreSettings) -> None:
    """Opening with a changed declaration updates the consumer and bumps the generation;
    opening with the same one changes nothing; a consumer no longer declared stays (with its
    keys) but becomes deletable."""
    store = open_store(store_settings, [DeclaredSettings(name="alice", roles=["user"])])
    first = store.generation()
    store.close()
    store = open_store(store_settings, [DeclaredSettings(name="alice", roles=["user"])])
    assert store.generation() == first
    store.close()
    store = open_store(store_settings, [DeclaredSettings(name="alice", roles=["admin"])])
    try:
        assert store.generation() == first + 1
        with store.read() as session:
            assert consumers.get(session, "alice").roles == ["admin"]
    finally:
        store.close()
    store = open_store(store_settings, [])
    try:
        with store.write() as session:
            assert not consumers.get(session, "alice").declared
            consumers.delete_by_name(session, "alice")
        with store.read() as session:
            assert consumers.find(session, "alice") is None
    finally:
        store.close()


def test_create_list_delete(store_settings: StoreSettings) -> None:
    """The CLI's consumers: created once per name, listed by name, deleted; every change
    bumps the generation, and an unknown name is an error that names it."""
    store = open_store(store_settings)
    try:
        with store.write() as session:
            consumers.create(session, "bob", roles=["user"], plan="pro", metadata={"a": 1})
            consumers.create(session, "alice")
        assert store.generation() == 2
        with pytest.raises(ConsumerExists, match="'bob' exists already"), store.write() as session:
            consumers.create(session, "bob")
        with store.read() as session:
            assert [c.name for c in consumers.list_all(session)] == ["alice", "bob"]
        with store.write() as session:
            consumers.delete_by_name(session, "bob")
        assert store.generation() == 3
        with pytest.raises(UnknownConsumer, match="no consumer is named 'bob'"), store.write() as session:
            consumers.delete_by_name(session, "bob")
    finally:
        store.close()
