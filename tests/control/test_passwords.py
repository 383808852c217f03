"""The decoy hash an unknown account name is verified against: the same work as a real
account's hash, and none at import."""

from __future__ import annotations

import subprocess
import sys

from bastion.control.accounts import passwords


def test_the_decoy_has_the_hashers_parameters() -> None:
    """The fixed decoy needs no rehash under the hasher's settings: an unknown name costs the
    same argon2 work as a wrong password, and the module keeps the fixed decoy (no fallback)."""
    assert not passwords.needs_rehash(passwords._DECOY)
    assert passwords._DECOY.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_an_unknown_account_is_refused_whatever_the_password() -> None:
    """No account (``None``) is refused after verifying against the decoy, for any password."""
    assert not passwords.verify_password(None, "")
    assert not passwords.verify_password(None, "correct horse battery staple")


def test_importing_the_module_hashes_nothing() -> None:
    """Importing it (as every gateway and store command does) computes no argon2 hash: in a
    fresh interpreter where hashing raises, the import still succeeds."""
    code = (
        "import argon2\n"
        "def refuse(self, password, *, salt=None): raise AssertionError('hashed at import')\n"
        "argon2.PasswordHasher.hash = refuse\n"
        "import bastion.control.accounts.passwords\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
