"""Secrets at rest: values encrypted with the master key, decrypted when the file is read,
and secrets written in plain text refused with file, line and field (never the value)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.config import load_config
from bastion.config.secrets import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    MasterKeyError,
    decrypt,
    derive,
    encrypt,
    is_secret_field,
    load_master_key,
    new_master_key,
    plaintext_secrets,
)

from .util import errors_of as all_errors_of
from .util import write

MASTER = b"m" * 32
OTHER = b"o" * 32
SERVICE = "services: [{name: api, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]\n"
ADVICE = "write it as an ${ENV_VAR} reference or an encrypted value (bastion secrets encrypt)"


def errors_of(path: Path) -> list[str]:
    """The load errors of ``path``, its file named as the user wrote it (relative)."""
    return [e.replace(f"{path.parent}/", "") for e in all_errors_of(path)]


@given(st.text(max_size=200))
def test_encryption_round_trips_and_never_repeats(plaintext: str) -> None:
    """Any text comes back from its enc:v1: value; two encryptions of it differ (a fresh
    nonce each), and neither contains it."""
    one, two = encrypt(MASTER, plaintext), encrypt(MASTER, plaintext)
    assert one.startswith("enc:v1:") and one != two
    assert decrypt(MASTER, one) == plaintext == decrypt(MASTER, two)
    if len(plaintext) >= 4:
        assert plaintext not in one


def test_another_key_or_a_changed_value_is_refused() -> None:
    """AES-GCM authenticates: another master key, a flipped bit, or a truncated value is a
    MasterKeyError saying so, never garbage."""
    value = encrypt(MASTER, "hunter2-secret")
    with pytest.raises(MasterKeyError, match="cannot be decrypted with this master key"):
        decrypt(OTHER, value)
    raw = bytearray(base64.urlsafe_b64decode(value.removeprefix("enc:v1:") + "=="))
    raw[-1] ^= 1
    with pytest.raises(MasterKeyError, match="cannot be decrypted"):
        decrypt(MASTER, "enc:v1:" + base64.urlsafe_b64encode(bytes(raw)).decode())
    with pytest.raises(MasterKeyError, match="too short"):
        decrypt(MASTER, "enc:v1:AAAA")


def test_the_aes_key_is_derived_per_use() -> None:
    """The key that encrypts config values is HMAC-SHA-256(master, label), not the master key:
    other labels (the OAuth signing keys' password) give unrelated keys."""
    assert derive(MASTER, b"a") != derive(MASTER, b"b") and len(derive(MASTER, b"a")) == 32


def test_the_master_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    """BASTION_MASTER_KEY first, else the file BASTION_MASTER_KEY_FILE names (its newline
    dropped); too short a key or an unreadable file is an error naming where it looked."""
    assert load_master_key({}) is None
    key = new_master_key()
    assert len(key) == 43 and load_master_key({MASTER_KEY_ENV: key}) == key.encode()
    (tmp_path / "master.key").write_text(key + "\n")
    assert load_master_key({MASTER_KEY_FILE_ENV: str(tmp_path / "master.key")}) == key.encode()
    with pytest.raises(MasterKeyError, match=f"the environment variable {MASTER_KEY_ENV} holds 5 bytes"):
        load_master_key({MASTER_KEY_ENV: "short"})
    with pytest.raises(MasterKeyError, match="cannot be read"):
        load_master_key({MASTER_KEY_FILE_ENV: str(tmp_path / "missing")})


@pytest.mark.parametrize(
    ("name", "secret"),
    [("password", True), ("client_secret", True), ("webhook_secret", True), ("api_key", True),
     ("secret_env", False), ("client_secret_file", False), ("token_field", False), ("url", False)],
)
def test_secret_field_names(name: str, secret: bool) -> None:
    """Names that hold secrets are recognised; names that say where a secret is are not."""
    assert is_secret_field(name) is secret


def test_plaintext_passwords_in_urls_are_refused_with_file_line_and_field(tmp_path: Path) -> None:
    """A redis URL and a store URL with a password written in the file are config errors
    naming the field and line, and the message never shows the password."""
    path = write(tmp_path, "backends:\n  state: redis\n  redis: {url: 'redis://:hunter2@cache:6379/0'}\n"
                 "store: {url: 'postgresql://gw:hunter3@db/gw', pepper_file: p}\n" + SERVICE)
    errors = errors_of(path)
    assert errors == [
        f"bastion.yaml:3: backends.redis.url: a URL with a password in plain text: {ADVICE}",
        f"bastion.yaml:4: store.url: a URL with a password in plain text: {ADVICE}",
    ]
    assert not any("hunter" in e for e in errors)


def test_a_default_in_the_file_is_plain_text_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``${REDIS_PW:-hunter2}`` keeps the password in the file: refused, even when the
    variable is set; ``${REDIS_PW}`` (and an empty default) is accepted."""
    monkeypatch.setenv("BASTION_TEST_REDIS_PW", "from-the-env")
    url = "redis://:${BASTION_TEST_REDIS_PW:-hunter2}@cache:6379/0"
    path = write(tmp_path, f"backends: {{state: redis, redis: {{url: '{url}'}}}}\n" + SERVICE)
    assert errors_of(path) == [f"bastion.yaml:1: backends.redis.url: a URL with a password in plain text: {ADVICE}"]
    for url in ("redis://:${BASTION_TEST_REDIS_PW}@cache:6379/0", "redis://u:${BASTION_TEST_REDIS_PW:-}@cache/0"):
        path = write(tmp_path, f"backends: {{state: redis, redis: {{url: '{url}'}}}}\n" + SERVICE)
        assert load_config(path).config.backends.redis is not None


def test_an_encrypted_value_is_decrypted_when_the_file_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole URL written enc:v1: loads with the master key in the environment, as the
    plaintext; without the key, or with another, it is an error naming the field."""
    url = "redis://:hunter2@cache:6379/0"
    path = write(tmp_path, f"backends: {{state: redis, redis: {{url: '{encrypt(MASTER, url)}'}}}}\n" + SERVICE)
    monkeypatch.setenv(MASTER_KEY_ENV, MASTER.decode())
    redis = load_config(path).config.backends.redis
    assert redis is not None and redis.url == url
    monkeypatch.setenv(MASTER_KEY_ENV, OTHER.decode())
    assert errors_of(path) == [
        "bastion.yaml:1: backends.redis.url: the encrypted value cannot be decrypted with this master key "
        "(encrypted with another key, or changed)"
    ]
    monkeypatch.delenv(MASTER_KEY_ENV)
    assert errors_of(path) == [
        f"bastion.yaml:1: backends.redis.url: an encrypted value needs the master key: set {MASTER_KEY_ENV} or "
        f"{MASTER_KEY_FILE_ENV}"
    ]


def _bastion(*args: str, cwd: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bastion", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60, check=False, input=stdin, env={**os.environ, **env})


def test_the_cli_encrypts_what_bastion_check_then_accepts(tmp_path: Path) -> None:
    """`bastion secrets new-key`, then `bastion secrets encrypt` (the secret on stdin) print
    a value that `bastion check` accepts with that key and refuses (exit 2, the field named)
    without it; the plaintext appears in no output."""
    key = _bastion("secrets", "new-key", cwd=tmp_path, env={}).stdout.strip()
    assert len(key) == 43
    env = {MASTER_KEY_ENV: key}
    encrypted = _bastion("secrets", "encrypt", cwd=tmp_path, env=env, stdin="redis://:hunter2@cache:6379/0\n")
    assert encrypted.returncode == 0, encrypted.stderr
    value = encrypted.stdout.strip()
    assert value.startswith("enc:v1:") and "hunter2" not in value
    (tmp_path / "bastion.yaml").write_text(f"backends: {{state: redis, redis: {{url: '{value}'}}}}\n" + SERVICE)
    checked = _bastion("check", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    refused = _bastion("check", cwd=tmp_path, env={MASTER_KEY_ENV: ""})
    assert refused.returncode == 2
    assert "backends.redis.url: an encrypted value needs the master key" in refused.stderr
    assert "hunter2" not in refused.stdout + refused.stderr + checked.stdout + checked.stderr
    missing = _bastion("secrets", "encrypt", cwd=tmp_path, env={MASTER_KEY_ENV: ""}, stdin="x")
    assert missing.returncode == 2 and "no master key" in missing.stderr


def test_a_secret_field_of_the_schema_must_be_a_reference_or_encrypted() -> None:
    """A schema field named like a secret is refused in plain text (and with a default in
    the file), accepted as one reference or encrypted; a free-form key that is no schema
    field (a type named in redact.actions) is not a secret field."""
    fields = frozenset({"password", "url"})
    data = {"upstream": {"password": "hunter2"}, "a": {"password": "${PW}"}, "b": {"password": "${PW:-x}"},
            "c": {"password": "plain-after-decrypt"}, "actions": {"private_key": "remove"}}
    written = {("a", "password"): "${PW}", ("b", "password"): "${PW:-x}", ("c", "password"): "enc:v1:AAAA"}
    assert sorted(plaintext_secrets(data, written, fields)) == [
        (("b", "password"), "a secret in plain text"),
        (("upstream", "password"), "a secret in plain text"),
    ]
