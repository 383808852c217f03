"""The ``store`` and ``consumers`` sections: defaults beside the config file, precise errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bastion.config import ConfigError, load_config

SERVICE = """\
services:
  - name: api
    upstream: http://127.0.0.1:9001
    routes: [{path: "/", prefix: true, public: true}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bastion.yaml"
    path.write_text(textwrap.dedent(text) + SERVICE)
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(i).replace(f"{path.parent}/", "") for i in info.value.issues]


def test_sqlite_beside_the_config_by_default(tmp_path: Path) -> None:
    """Without a store section the store is bastion.db and the pepper bastion.pepper, both in
    the config file's folder (absolute, whatever the current folder)."""
    store = load_config(write(tmp_path, "")).config.store
    assert store.url == f"sqlite:///{tmp_path.resolve()}/bastion.db"
    assert store.pepper_file == tmp_path.resolve() / "bastion.pepper"


def test_relative_sqlite_and_pepper_resolve_against_the_config(tmp_path: Path) -> None:
    """A relative SQLite path and pepper file are taken from the config file's folder."""
    store = load_config(write(tmp_path, "store: {url: 'sqlite:///data/gw.db', pepper_file: secrets/p}\n")).config.store
    assert store.url == f"sqlite:///{tmp_path.resolve()}/data/gw.db"
    assert store.pepper_file == tmp_path / "secrets" / "p"


def test_postgresql_without_a_pepper_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL store is shared by instances, which must share the pepper: without a
    pepper_file or BASTION_PEPPER the configuration is refused, naming the field."""
    monkeypatch.delenv("BASTION_PEPPER", raising=False)
    path = write(tmp_path, "store: {url: 'postgresql://bastion@db.internal/bastion'}\n")
    assert errors_of(path) == [
        "bastion.yaml:1: store.pepper_file: a PostgreSQL store needs a pepper every instance shares: "
        "set pepper_file, or the environment variable BASTION_PEPPER"
    ]
    monkeypatch.setenv("BASTION_PEPPER", "x" * 32)
    assert load_config(path).config.store.pepper_file is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/bastion", "expected a sqlite:///path or postgresql://user@host/db URL, got 'mysql://db/bastion'"),
        ("sqlite:///:memory:", "an in-memory SQLite database forgets every key when the process ends; name a file"),
        ("postgresql://u:${BASTION_TEST_PGPASSWORD}@db", "the URL 'postgresql://u:***@db' names no database (postgresql://user@host/bastion)"),
    ],
)
def test_bad_store_urls(tmp_path: Path, url: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store URL Bastion cannot use is refused with what is wrong (a password never shown)."""
    monkeypatch.setenv("BASTION_TEST_PGPASSWORD", "pw")
    assert errors_of(write(tmp_path, f"store: {{url: '{url}', pepper_file: p}}\n")) == [
        f"bastion.yaml:1: store.url: {message}"
    ]


def test_consumers_are_validated(tmp_path: Path) -> None:
    """Declared consumers: names unique, CIDRs valid, one certificate field each."""
    path = write(
        tmp_path,
        """\
        consumers:
          - {name: alice, roles: [user], ip_allow: [10.0.0.0/8]}
          - {name: bob, ip_deny: [not-a-cidr]}
          - {name: carol, certificates: [{subject: CN=a, san: a.internal}]}
        """,
    )
    errors = errors_of(path)
    assert errors[0].startswith("bastion.yaml:3: consumers[1].ip_deny[0]: Input is not a valid IPv4 network")
    assert errors[-1] == "bastion.yaml:4: consumers[2].certificates[0]: give exactly one of fingerprint, subject or san"
    assert not any("consumers[0]" in e for e in errors)
    path = write(tmp_path, "consumers: [{name: alice}, {name: alice}]\n")
    assert errors_of(path) == ["bastion.yaml:1: consumers: two consumers are named 'alice'; names must be unique"]
