"""The on-disk cache of compiled hyperscan databases: a second start loads what the first
compiled, and a cache that is corrupt, foreign, shared or unwritable only costs a compile,
never a rule."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.stages.detection import dbcache
from bastion.stages.detection.matcher import HyperscanBackend
from bastion.stages.detection.rules import Rule, Severity

pytest.importorskip("hyperscan")

RULES = [
    Rule(90001, "cmdi", 1, Severity.CRITICAL, r"probe-[0-9]{3}-marker", "test rule"),
    Rule(90002, "sqli", 1, Severity.CRITICAL, r"\bunion\s+select\b", "test rule"),
]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private XDG cache home; the folder the databases go to."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(dbcache.DISABLE_ENV, raising=False)
    return tmp_path / "xdg" / "bastion" / "hyperscan"


def files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.hsdb")) if folder.exists() else []


def finds_both(backend: HyperscanBackend) -> bool:
    found = {rule_id for rule_id, _ in backend.scan(b"x probe-123-marker y 1 UNION  select 2")}
    return found == {90001, 90002} and backend.scan(b"an ordinary sentence") == []


def test_a_second_backend_loads_the_database_the_first_compiled(cache: Path) -> None:
    """The first build compiles and writes one private file; the second, same rules, loads it
    and matches exactly as the compiled one does."""
    first = HyperscanBackend(RULES)
    assert not first.from_cache
    [path] = files(cache)
    assert path.stat().st_mode & 0o777 == 0o600
    assert cache.stat().st_mode & 0o777 == 0o700
    second = HyperscanBackend(RULES)
    assert second.from_cache
    assert finds_both(first) and finds_both(second)


def test_other_rules_are_another_database(cache: Path) -> None:
    """A changed pattern list is a new file, never the old database under the old name."""
    HyperscanBackend(RULES)
    other = HyperscanBackend(RULES[:1])
    assert not other.from_cache
    assert len(files(cache)) == 2
    assert {rule_id for rule_id, _ in other.scan(b"union select probe-123-marker")} == {90001}


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[:-200] + bytes(x ^ 0xFF for x in b[-200:-190]) + b[-190:],  # payload bytes flipped
        lambda b: b"not a cache file",
        lambda b: b"",
    ],
)
def test_a_corrupt_file_is_ignored_and_replaced(cache: Path, damage: Callable[[bytes], bytes]) -> None:
    """A damaged file means compiling (the rules still match) and writing a sound file."""
    HyperscanBackend(RULES)
    [path] = files(cache)
    sound = path.read_bytes()
    path.write_bytes(damage(sound))
    rebuilt = HyperscanBackend(RULES)
    assert not rebuilt.from_cache and finds_both(rebuilt)
    assert path.read_bytes() == sound


def test_bytes_hyperscan_refuses_are_ignored(cache: Path) -> None:
    """A file whose digest is right but whose payload is not a database (another tool's
    bytes, a future format) is compiled over, not trusted."""
    HyperscanBackend(RULES)
    [path] = files(cache)
    junk = b"\x00" * 4096
    path.write_bytes(dbcache.MAGIC + hashlib.sha256(junk).digest() + junk)
    os.chmod(path, 0o600)
    rebuilt = HyperscanBackend(RULES)
    assert not rebuilt.from_cache and finds_both(rebuilt)


def test_a_file_others_can_write_is_not_loaded(cache: Path) -> None:
    """A database file writable by the group or by others is ignored: someone else's bytes
    must not become the rules."""
    HyperscanBackend(RULES)
    [path] = files(cache)
    os.chmod(path, 0o666)
    rebuilt = HyperscanBackend(RULES)
    assert not rebuilt.from_cache and finds_both(rebuilt)


def test_an_unwritable_cache_folder_only_costs_a_compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the cache folder cannot be created (its parent is a file), every build compiles
    and matches; nothing is raised."""
    blocker = tmp_path / "xdg"
    blocker.write_text("a file where the cache folder's parent should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.delenv(dbcache.DISABLE_ENV, raising=False)
    for _ in range(2):
        backend = HyperscanBackend(RULES)
        assert not backend.from_cache and finds_both(backend)


def test_the_cache_can_be_turned_off(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``BASTION_HYPERSCAN_CACHE=off`` neither reads nor writes a file."""
    monkeypatch.setenv(dbcache.DISABLE_ENV, "off")
    HyperscanBackend(RULES)
    assert not HyperscanBackend(RULES).from_cache
    assert files(cache) == []


def test_a_relative_xdg_cache_home_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The XDG specification says a relative ``XDG_CACHE_HOME`` is invalid: the default
    under the home folder is used instead of a folder relative to the working directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(dbcache.DISABLE_ENV, raising=False)
    assert dbcache.cache_dir() == tmp_path / ".cache" / "bastion" / "hyperscan"
