"""`bastion consumers` and `bastion keys`, run as a user would (a real process, real files),
against a SQLite store and a real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.config.model import StoreSettings
from bastion.testing import free_port

SERVICE = "services: [{name: api, upstream: 'http://127.0.0.1:9', routes: [{path: /, prefix: true, public: true}]}]\n"


def bastion(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False,
        env=env,
    )


@pytest.fixture
def folder(tmp_path: Path, store_settings: StoreSettings) -> Path:
    """A folder with a bastion.yaml using the test's store (SQLite or PostgreSQL), one
    declared consumer (alice) and one the CLI made (bob)."""
    (tmp_path / "bastion.yaml").write_text(
        f"store: {{url: '{store_settings.url}', pepper_file: bastion.pepper}}\n"
        "consumers: [{name: alice, roles: [user]}]\n" + SERVICE
    )
    assert bastion("consumers", "create", "bob", "--roles", "user,admin", cwd=tmp_path).returncode == 0
    return tmp_path


def test_the_key_is_printed_once_as_the_last_line(folder: Path) -> None:
    """`keys create` prints the key as the last line of its output and nowhere else; no later
    command (list, revoke) prints it or its secret part, and neither does a rotation."""
    created = bastion("keys", "create", "alice", "--scopes", "books:read,books:write", "--expires", "90d", cwd=folder)
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[-1]
    assert key.startswith("bst_") and len(key) == 54
    assert (created.stdout + created.stderr).count(key[12:47]) == 1
    assert "books:read books:write" in created.stdout and "expires: 20" in created.stdout
    listed = bastion("keys", "list", cwd=folder)
    assert listed.returncode == 0
    (line,) = [ln for ln in listed.stdout.splitlines() if ln.startswith(key[4:12])]
    assert f"{key[:12]}…" in line and "alice" in line and "books:read,books:write" in line and "active" in line
    rotated = bastion("keys", "rotate", key, "--overlap", "1h", cwd=folder)  # the whole key names it too
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.splitlines()[-1]
    assert new != key and new.startswith("bst_")
    later = [bastion("keys", "list", "alice", cwd=folder), bastion("consumers", "list", cwd=folder)]
    for result in (listed, rotated, *later):
        assert key[12:47] not in result.stdout + result.stderr
    assert new[12:47] not in bastion("keys", "list", cwd=folder).stdout


def test_consumers_list_shows_where_each_comes_from(folder: Path) -> None:
    """Declared consumers are listed as from the config, the CLI's as from the store; a
    declared one cannot be deleted here, the CLI's can (with its keys)."""
    listed = bastion("consumers", "list", cwd=folder).stdout.splitlines()
    assert listed[0].split() == ["NAME", "ROLES", "PLAN", "SOURCE", "CREATED"]
    assert listed[1].split()[:4] == ["alice", "user", "-", "config"]
    assert listed[2].split()[:4] == ["bob", "user,admin", "-", "store"]
    refused = bastion("consumers", "delete", "alice", cwd=folder)
    assert refused.returncode == 1
    assert "the consumer 'alice' is declared in the configuration" in refused.stderr
    assert bastion("keys", "create", "bob", cwd=folder).returncode == 0
    deleted = bastion("consumers", "delete", "bob", cwd=folder)
    assert deleted.returncode == 0 and "deleted consumer bob and its 1 API key(s)" in deleted.stdout


FINGERPRINT = "sha256:" + ":".join(["AB"] * 32)


def test_certificates_of_a_store_consumer(folder: Path) -> None:
    """`consumers certs add` maps a fingerprint, a subject and a SAN to bob (one of each,
    listed as the store's); the same fingerprint spelt another way is already his; `remove`
    takes one away by any spelling the gateway would match, and the list shows the rest."""
    for option, value in (("--fingerprint", FINGERPRINT), ("--subject", "CN=bob,O=Example"), ("--san", "Bob.Internal")):
        added = bastion("consumers", "certs", "add", "bob", option, value, cwd=folder)
        assert added.returncode == 0, added.stderr
        assert "added certificate" in added.stdout and "to consumer bob" in added.stdout
    again = bastion("consumers", "certs", "add", "bob", "--fingerprint", "sha256:" + "ab" * 32, cwd=folder)
    assert again.returncode == 0 and f"consumer bob already has certificate fingerprint {'sha256:' + 'ab' * 32}" in (
        again.stdout
    )
    listed = bastion("consumers", "certs", "list", "bob", cwd=folder).stdout.splitlines()
    assert [line.split() for line in listed] == [
        ["CONSUMER", "MATCHER", "VALUE", "SOURCE"],
        ["bob", "fingerprint", FINGERPRINT, "store"],
        ["bob", "subject", "CN=bob,O=Example", "store"],
        ["bob", "san", "Bob.Internal", "store"],
    ]
    removed = bastion("consumers", "certs", "remove", "bob", "--san", "bob.internal", cwd=folder)
    assert removed.returncode == 0 and "removed certificate san 'Bob.Internal' from consumer bob" in removed.stdout
    listed = bastion("consumers", "certs", "list", cwd=folder).stdout.splitlines()
    assert [line.split()[1] for line in listed[1:]] == ["fingerprint", "subject"]


def test_certificate_mistakes_are_refused_clearly(folder: Path) -> None:
    """A declared consumer's certificates are read-only here (its file is their source); a
    certificate another consumer has is refused (it would identify nobody); a matcher that is
    not one, none or two of them, an unknown consumer or certificate: one message each, exit
    1 or 2, no traceback, nothing changed."""
    assert bastion("consumers", "certs", "add", "bob", "--subject", "CN=shared", cwd=folder).returncode == 0
    assert bastion("consumers", "create", "carol", cwd=folder).returncode == 0
    for args, code, message in (
        (["add", "alice", "--san", "a.internal"], 1,
         "error: the consumer 'alice' is declared in the configuration (consumers:); change it there, not here"),
        (["remove", "alice", "--san", "a.internal"], 1, "the consumer 'alice' is declared in the configuration"),
        (["add", "carol", "--subject", "CN=shared"], 1,
         "error: subject 'CN=shared' already identifies the consumer 'bob'"),
        (["add", "bob", "--fingerprint", "ab12"], 2, "'ab12' is not a certificate fingerprint"),
        (["add", "bob"], 2, "give exactly one of --fingerprint, --subject or --san"),
        (["add", "bob", "--san", "x", "--subject", "CN=x"], 2, "give exactly one of"),
        (["add", "mallory", "--san", "x"], 1, "error: no consumer is named 'mallory'"),
        (["remove", "bob", "--san", "nowhere"], 1, "error: the consumer 'bob' has no certificate san 'nowhere'"),
    ):
        result = bastion("consumers", "certs", *args, cwd=folder)
        assert result.returncode == code, (args, result.stderr)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)
        assert "Traceback" not in result.stderr
    listed = bastion("consumers", "certs", "list", cwd=folder).stdout.splitlines()
    assert [line.split() for line in listed[1:]] == [["bob", "subject", "CN=shared", "store"]]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["keys", "create", "mallory"], 1, "error: no consumer is named 'mallory'"),
        (["keys", "create", "alice", "--expires", "90days"], 2, "'90days' is not a duration"),
        (["keys", "create", "alice", "--scopes", 'a"b'], 2, "is not a scope"),
        (["keys", "revoke", "nosuchid"], 1, "error: no API key has the id 'nosuchid'"),
        (["keys", "rotate", "nosuchid", "--overlap", "soon"], 2, "'soon' is not a duration"),
        (["consumers", "create", "alice"], 1, "error: a consumer named 'alice' exists already"),
        (["consumers", "create", "bad name"], 2, "error: 'bad name' is not a consumer name"),
    ],
)
def test_clear_errors(folder: Path, args: list[str], code: int, message: str) -> None:
    """Each mistake exits non-zero with one message saying what is wrong, no traceback."""
    result = bastion(*args, cwd=folder)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_store_that_cannot_be_opened(tmp_path: Path) -> None:
    """A SQLite file in a missing folder, or a PostgreSQL server that is not there: the error
    names the store (never its password) and what is wrong; exit 1, no traceback."""
    (tmp_path / "bastion.yaml").write_text("store: {url: 'sqlite:///missing/gw.db'}\n" + SERVICE)
    result = bastion("keys", "list", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"the folder '{tmp_path.resolve()}/missing' does not exist" in result.stderr
    port = free_port()
    (tmp_path / "bastion.yaml").write_text(
        f"store: {{url: 'postgresql://gw:${{BASTION_TEST_PGPASSWORD}}@127.0.0.1:{port}/gw', pepper_file: p}}\n"
        + SERVICE
    )
    result = bastion("consumers", "list", cwd=tmp_path, env={**os.environ, "BASTION_TEST_PGPASSWORD": "hunter2-pw"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: the store postgresql://gw:***@127.0.0.1:{port}/gw cannot be opened" in result.stderr
    assert "hunter2-pw" not in result.stderr
