"""The pepper: from BASTION_PEPPER or its file, made once (0600, 32 random bytes) when missing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bastion.config.model import StoreSettings
from bastion.store import StoreError
from bastion.store.pepper import load_pepper


def settings(path: Path | None) -> StoreSettings:
    return StoreSettings(url="sqlite:////unused.db", pepper_file=path)


def test_a_missing_pepper_file_is_made_once_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without BASTION_PEPPER, a missing pepper file is created with 32 random bytes, mode
    0600; workers racing to create it all end up with the same pepper, and it is read back."""
    monkeypatch.delenv("BASTION_PEPPER", raising=False)
    path = tmp_path / "bastion.pepper"
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda: got.append(load_pepper(settings(path)))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1 and len(got[0]) == 32
    assert path.read_bytes() == got[0] and path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bastion.pepper"]  # no temporary file left
    assert load_pepper(settings(path)) == got[0]


def test_the_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BASTION_PEPPER, when set, is the pepper, and no file is made."""
    monkeypatch.setenv("BASTION_PEPPER", "e" * 40)
    assert load_pepper(settings(tmp_path / "p")) == b"e" * 40
    assert not (tmp_path / "p").exists()


def test_short_or_unreadable_peppers_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pepper under 32 bytes (from the environment or a file), a pepper file in a missing
    folder, or no pepper at all: an error that says which and what to do."""
    monkeypatch.setenv("BASTION_PEPPER", "short")
    with pytest.raises(StoreError, match="BASTION_PEPPER is 5 bytes; the pepper needs at least 32"):
        load_pepper(settings(None))
    monkeypatch.delenv("BASTION_PEPPER")
    (tmp_path / "p").write_bytes(b"x" * 31)
    with pytest.raises(StoreError, match="holds 31 bytes; it needs at least 32"):
        load_pepper(settings(tmp_path / "p"))
    with pytest.raises(StoreError, match="cannot be created: No such file or directory"):
        load_pepper(settings(tmp_path / "missing" / "p"))
    with pytest.raises(StoreError, match=r"no pepper: set store\.pepper_file or the environment variable"):
        load_pepper(settings(None))
