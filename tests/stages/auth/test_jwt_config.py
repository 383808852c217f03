"""Settings of JWT issuers and introspection: what loads, and every mistake refused at load
with the file, line and field that has it (through the real loader)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bastion.config import ConfigError, load_config
from bastion.stages.auth import auth_stage

from .idp import SigningKey

HEADER = """\
services:
  - name: shop
    upstream: http://127.0.0.1:9001
    routes:
      - path: /orders
        policies:
          auth:
"""


def write(tmp_path: Path, auth: str) -> Path:
    path = tmp_path / "bastion.yaml"
    path.write_text(HEADER + textwrap.indent(textwrap.dedent(auth), " " * 12))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(i) for i in info.value.issues]


def test_a_full_issuer_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An issuer with a JWKS, one with static keys and an HS256 secret from the environment,
    and an introspection endpoint load as the route's auth settings."""
    monkeypatch.setenv("IDP_HS", "x" * 32)
    monkeypatch.setenv("INTROSPECTION_SECRET", "s3cret")
    pem = SigningKey.generate("ES256").public_pem()
    path = write(tmp_path, f"""\
        jwt:
          leeway: 10
          issuers:
            - issuer: https://idp.example
              jwks_url: https://idp.example/.well-known/jwks.json
              audiences: [books-api]
              algorithms: [RS256, ES256]
            - issuer: https://legacy.example
              keys: [{pem!r}]
              secret_env: IDP_HS
              audiences: [books-api]
              algorithms: [ES256, HS256]
        introspection:
          url: https://as.example/introspect
          client_id: bastion
          client_secret_env: INTROSPECTION_SECRET
        """.replace("\\n", "\n"))
    route = load_config(path).routes[0]
    stage = auth_stage(route.built)
    assert stage is not None
    config = stage.config
    assert config.jwt is not None and [i.issuer for i in config.jwt.issuers] == [  # type: ignore[attr-defined]
        "https://idp.example", "https://legacy.example"]
    assert config.introspection is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("issuer", "field", "message"),
    [
        ("{issuer: https://a, audiences: [x], algorithms: [none]}", "algorithms[0]",
         "Input should be 'RS256', 'PS256', 'ES256', 'EdDSA' or 'HS256'"),
        ("{issuer: https://a, jwks_url: https://a/jwks, audiences: [x], algorithms: [RS256, HS256]}",
         "algorithms", "HS256 cannot be combined with jwks_url"),
        ("{issuer: https://a, audiences: [x], algorithms: [HS256]}", "algorithms",
         "HS256 needs the shared secret: set secret_env or secret_file"),
        ("{issuer: https://a, secret_env: SHORT_SECRET, audiences: [x], algorithms: [HS256]}", "algorithms",
         "the HS256 secret has 31 bytes; at least 32 random bytes are required"),
        ("{issuer: https://a, secret_env: UNSET_SECRET_XYZ, audiences: [x], algorithms: [HS256]}", "algorithms",
         "the environment variable UNSET_SECRET_XYZ (the HS256 secret) is not set"),
        ("{issuer: https://a, secret_file: relative.key, audiences: [x], algorithms: [HS256]}", "secret_file",
         "relative.key is a relative path; give an absolute path"),
        ("{issuer: https://a, audiences: [x], algorithms: [RS256]}", "algorithms",
         "RS256 need public keys: set jwks_url or keys"),
        ("{issuer: https://a, jwks_url: http://idp.example/jwks, audiences: [x], algorithms: [RS256]}",
         "jwks_url", "plain http to a host that is not loopback; use https://"),
        ("{issuer: https://a, jwks_url: https://a/j, audiences: [], algorithms: [RS256]}", "audiences",
         "List should have at least 1 item"),
        ("{issuer: https://a, jwks_url: https://a/j, audiences: [x], algorithms: []}", "algorithms",
         "List should have at least 1 item"),
        ("{issuer: https://a, keys: [not a pem], audiences: [x], algorithms: [RS256]}", "keys",
         "key 0 is not a PEM public key or certificate"),
        ("{issuer: https://a, keys: [{kty: oct, k: c2VjcmV0}], audiences: [x], algorithms: [RS256]}", "keys",
         "a symmetric key; HS256 secrets come from secret_env or secret_file only"),
        ("{issuer: https://a, jwks_url: https://a/j, keys: [{kty: oct}], audiences: [x], algorithms: [RS256]}",
         "keys", "give jwks_url or keys, not both"),
        ("{issuer: https://a, jwks_url: https://a/j, audiences: [x], algorithms: [RS256], alg: RS256}", "alg",
         "unknown field; expected one of: issuer, jwks_url, keys"),
    ],
    ids=["alg-none", "hs-with-jwks", "hs-no-secret", "hs-short", "hs-env-unset", "secret-relative",
         "no-keys", "jwks-plain-http", "no-audience", "no-algorithms", "bad-pem", "oct-jwk", "jwks-and-keys",
         "unknown-field"],
)
def test_issuer_mistakes_are_load_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, issuer: str, field: str, message: str
) -> None:
    """Each mistake is one error at the issuer's line, naming the field and what is wrong."""
    monkeypatch.setenv("SHORT_SECRET", "y" * 31)
    monkeypatch.delenv("UNSET_SECRET_XYZ", raising=False)
    errors = errors_of(write(tmp_path, f"jwt: {{issuers: [{issuer}]}}\n"))
    assert len(errors) == 1, errors
    assert f"bastion.yaml:8: services[0].routes[0].policies.auth.jwt.issuers[0].{field}: " in errors[0], errors
    assert message in errors[0], errors


def test_weak_and_mismatched_static_keys(tmp_path: Path) -> None:
    """An RSA key under 2048 bits, a private key, and an Ed25519 key with only RS256 allowed
    are refused; the private key's material is not echoed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    small_pem = small.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    private_pem = small.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    ed_pem = SigningKey.generate("EdDSA").public_pem()
    for pem, message in [
        (small_pem, "an RSA key of 1024 bits; at least 2048 are required"),
        (private_pem, "key 0 is a private key: give the public key"),
        (ed_pem, "keys of family Ed25519 match none of the algorithms RS256"),
    ]:
        issuer = f"{{issuer: https://a, keys: [{pem!r}], audiences: [x], algorithms: [RS256]}}".replace("\\n", "\n")
        errors = errors_of(write(tmp_path, f"jwt: {{issuers: [{issuer}]}}\n"))
        assert len(errors) == 1 and message in errors[0], errors
        assert "MII" not in errors[0]  # no key material in the message


def test_duplicate_issuer_and_refresh_bounds(tmp_path: Path) -> None:
    """The same issuer twice, and a max staleness not above the max refresh, are refused."""
    one = "{issuer: https://a, jwks_url: https://a/j, audiences: [x], algorithms: [RS256]}"
    errors = errors_of(write(tmp_path, f"jwt: {{issuers: [{one}, {one}]}}\n"))
    assert len(errors) == 1 and "jwt.issuers: " in errors[0] and "'https://a' is listed twice" in errors[0], errors
    errors = errors_of(write(tmp_path, f"jwt: {{issuers: [{one}], jwks_max_refresh: 600, jwks_max_stale: 600}}\n"))
    assert len(errors) == 1 and "jwks_max_stale must exceed jwks_max_refresh" in errors[0], errors


def test_introspection_mistakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Introspection needs an https (or loopback) endpoint and a client secret from the
    environment or a file."""
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    errors = errors_of(write(tmp_path, "introspection: {url: 'http://as.example/i', client_id: b, "
                                       "client_secret_env: NO_SUCH_SECRET}\n"))
    joined = "\n".join(errors)
    assert "policies.auth.introspection.url: " in joined and "use https://" in joined, errors
    errors = errors_of(write(tmp_path, "introspection: {url: 'https://as.example/i', client_id: b, "
                                       "client_secret_env: NO_SUCH_SECRET}\n"))
    assert len(errors) == 1 and "policies.auth.introspection: " in errors[0], errors
    assert "the environment variable NO_SUCH_SECRET (the introspection client secret) is not set" in errors[0]
