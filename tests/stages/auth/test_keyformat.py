"""The API key format: shape, checksum that catches typos, the keyed hash."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from bastion.stages.auth import keyformat


def test_generated_keys_have_the_documented_shape() -> None:
    """bst_, 43 base62 characters, _, a 6-character checksum; every one valid, none repeated."""
    made = {keyformat.generate() for _ in range(200)}
    assert len(made) == 200
    for key in made:
        assert len(key) == 54 and key.startswith("bst_") and key[47] == "_"
        assert all(c in keyformat.ALPHABET for c in key[4:47] + key[48:])
        assert keyformat.is_valid(key) and keyformat.looks_like_key(key)


def test_every_single_character_typo_fails_the_checksum() -> None:
    """Replacing any one character of the random part or checksum by any other base62
    character, or swapping two different neighbours, makes the key invalid."""
    key = keyformat.generate()
    for i in [*range(4, 47), *range(48, 54)]:
        for c in keyformat.ALPHABET:
            if c != key[i]:
                assert not keyformat.is_valid(key[:i] + c + key[i + 1 :]), (i, c)
    for i in range(4, 46):
        if key[i] != key[i + 1]:
            assert not keyformat.is_valid(key[:i] + key[i + 1] + key[i] + key[i + 2 :])


@pytest.mark.parametrize(
    "credential",
    ["", "bst_", "bst_x", "xst_" + "a" * 50, "bst_" + "a" * 43 + "-" + "a" * 6, "bst_" + "é" * 43 + "_" + "a" * 6],
)
def test_malformed_credentials_are_invalid(credential: str) -> None:
    """Wrong length, prefix, separator or characters (non-ASCII letters too): invalid."""
    assert not keyformat.is_valid(credential)


def test_the_hasher_is_hmac_sha256() -> None:
    """The prepared hasher gives what hmac gives, for short and for over-long peppers."""
    key = keyformat.generate()
    for pepper in (b"p" * 32, b"q" * 100):
        expected = hmac.new(pepper, key.encode(), hashlib.sha256).digest()
        assert keyformat.KeyHasher(pepper)(key) == expected == keyformat.key_hash(pepper, key)


def test_the_public_id_and_prefix() -> None:
    """The id is the first 8 characters of the random part; the prefix shows bst_ and the id."""
    key = keyformat.generate()
    assert keyformat.key_id(key) == key[4:12]
    assert keyformat.shown_prefix(key) == f"bst_{key[4:12]}…"
