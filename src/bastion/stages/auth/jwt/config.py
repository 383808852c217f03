"""Settings of JWT verification (``policies.auth.jwt``) and of opaque-token introspection
(``policies.auth.introspection``), checked entirely at load.

Everything that can be wrong with an issuer is an error of the configuration, naming the
field: a key that does not parse, an HS256 secret that is missing or shorter than 32 bytes,
an algorithm list that mixes HS256 with a JWKS (an HMAC secret is never published), an
algorithm without a key to check it. Secrets are never part of the configuration file:
they come from an environment variable or a file, read when the configuration loads.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from bastion.stages.auth.jwt.keys import (
    FAMILY,
    MIN_HMAC_BYTES,
    Algorithm,
    UnusableKey,
    VerifyingKey,
    load_jwk,
    load_pem,
)


class Strict(BaseModel):
    # Not bastion.config.model.Strict: importing bastion.config from a stage's settings would
    # be an import cycle (the loader imports the stage registry).
    model_config = ConfigDict(extra="forbid", frozen=True)


Seconds = Annotated[float, Field(gt=0, le=86400)]

#: A secret file larger than this is not a secret but a mistake (a key bundle, a log).
MAX_SECRET_FILE_BYTES = 64 * 1024


def check_endpoint_url(value: str) -> str:
    """An https URL, or http to a loopback address (a sidecar, a test): tokens, client
    secrets and keys must not cross a network in clear text."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an https:// URL, got {value!r}")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError(f"{value!r} is plain http to a host that is not loopback; use https://")
    if parts.fragment:
        raise ValueError(f"the URL {value!r} must not have a fragment")
    return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_secret(env: str | None, file: Path | None, what: str) -> bytes:
    """The secret named by ``env`` or ``file`` (trailing newline dropped), or a ValueError
    saying where it was looked for; the value itself never appears in a message."""
    if env is not None:
        value = os.environ.get(env)
        if value is None or value == "":
            raise ValueError(f"the environment variable {env} ({what}) is not set")
        return value.encode()
    if file is not None:
        try:
            if file.stat().st_size > MAX_SECRET_FILE_BYTES:
                raise ValueError(f"{file} ({what}) is larger than {MAX_SECRET_FILE_BYTES} bytes")
            return file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read {file} ({what}): {exc.strerror}") from None
    raise ValueError(f"{what}: set secret_env or secret_file")


def _absolute(value: Path | None) -> Path | None:
    # Stage settings can come from OpenAPI documents and layered files: a relative path would
    # depend on the working directory of whoever loads it.
    if value is not None and not value.is_absolute():
        raise ValueError(f"{value} is a relative path; give an absolute path")
    return value


class JwtIssuer(Strict):
    """One identity provider whose tokens a route accepts."""

    issuer: str = Field(min_length=1, description="The exact `iss` claim of its tokens.")
    jwks_url: str | None = Field(
        None,
        description=(
            "Where its public keys are published (https, or http to loopback). Fetched when a worker "
            "starts, refreshed in the background as its Cache-Control allows, refetched on an unknown "
            "`kid` at most once per `jwks_unknown_kid_interval`."
        ),
    )
    keys: list[str | dict[str, Any]] | None = Field(
        None,
        description=(
            "Static public keys instead of a JWKS: PEM (`BEGIN PUBLIC KEY` or `BEGIN CERTIFICATE`) or "
            "JWK objects (RSA >= 2048 bits, EC P-256, Ed25519)."
        ),
    )
    secret_env: str | None = Field(
        None, description="Environment variable holding the HS256 secret (at least 32 bytes)."
    )
    secret_file: Path | None = Field(
        None, description="Absolute path of a file holding the HS256 secret (at least 32 bytes)."
    )
    algorithms: list[Algorithm] = Field(
        min_length=1,
        description=(
            "Algorithms accepted from this issuer; a key verifies only algorithms of its own family. "
            "HS256 needs secret_env or secret_file and cannot be combined with jwks_url."
        ),
    )
    audiences: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, description="A token's `aud` must name at least one of these."
    )
    consumer_claim: str = Field("sub", min_length=1, description="Claim naming the consumer (the principal's id).")
    scopes_claim: str = Field(
        "scope",
        min_length=1,
        description=(
            "Claim holding the scopes: a space-separated string or a list. With the default "
            "`scope`, a token without it is read from `scp` (a list) instead."
        ),
    )
    roles_claim: str | None = Field(
        "roles",
        description="Claim holding the roles (a list or a space-separated string); a dotted path reaches "
        "into objects (`realm_access.roles`). Null: no roles from tokens.",
    )

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        return None if value is None else check_endpoint_url(value)

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: list[str | dict[str, Any]] | None, info: ValidationInfo) -> list[str | dict[str, Any]] | None:
        if value is None:
            return None
        if info.data.get("jwks_url") is not None:
            raise ValueError("give jwks_url or keys, not both")
        if not value:
            raise ValueError("an empty list of keys verifies nothing")
        for i, key in enumerate(value):
            try:
                load_key(key, f"key {i}")
            except UnusableKey as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("secret_file")
    @classmethod
    def _secret_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("secret_env") is not None:
            raise ValueError("give secret_env or secret_file, not both")
        return _absolute(value)

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[Algorithm], info: ValidationInfo) -> list[Algorithm]:
        if len(set(value)) != len(value):
            raise ValueError("an algorithm is listed twice")
        if any(name not in info.data for name in ("jwks_url", "keys", "secret_env", "secret_file")):
            return value  # an earlier field is wrong (and reported): checking against it would mislead
        has_secret = info.data.get("secret_env") is not None or info.data.get("secret_file") is not None
        if "HS256" in value:
            if info.data.get("jwks_url") is not None:
                raise ValueError(
                    "HS256 cannot be combined with jwks_url: a JWKS publishes public keys, and an HMAC "
                    "secret is never public (declare a separate issuer entry with secret_env)"
                )
            if not has_secret:
                raise ValueError("HS256 needs the shared secret: set secret_env or secret_file")
            secret = read_secret(info.data.get("secret_env"), info.data.get("secret_file"), "the HS256 secret")
            if len(secret) < MIN_HMAC_BYTES:
                raise ValueError(
                    f"the HS256 secret has {len(secret)} bytes; at least {MIN_HMAC_BYTES} random bytes are "
                    "required (a shorter one can be guessed offline from any token)"
                )
        elif has_secret:
            raise ValueError("secret_env/secret_file is set but HS256 is not among the algorithms")
        asymmetric = [a for a in value if a != "HS256"]
        if asymmetric and info.data.get("jwks_url") is None and info.data.get("keys") is None:
            raise ValueError(f"{', '.join(asymmetric)} need public keys: set jwks_url or keys")
        return value

    @model_validator(mode="after")
    def _keys_match_algorithms(self) -> JwtIssuer:
        # Runs only when every field is valid, so the keys load.
        if self.keys is not None:
            families = {load_key(k, "key").family for k in self.keys}
            usable = {a for a in self.algorithms if a != "HS256"}
            unused = families - {FAMILY[a] for a in usable}
            if unused:
                raise ValueError(
                    f"keys of family {', '.join(sorted(unused))} match none of the algorithms "
                    f"{', '.join(self.algorithms)} (a key verifies only its own family)"
                )
        return self


def load_key(key: str | dict[str, Any], where: str) -> VerifyingKey:
    """A configured static key, loaded (for validation and for the verifier)."""
    return load_pem(key, where) if isinstance(key, str) else load_jwk(key, where)


class JwtSettings(Strict):
    """``policies.auth.jwt``: bearer JWTs of external identity providers, checked in process.

    A bearer token of three dot-separated parts is verified against these issuers.
    """

    issuers: list[JwtIssuer] = Field(min_length=1, description="The identity providers trusted on the route.")
    leeway: float = Field(
        30, ge=0, le=300, description="Seconds of clock skew tolerated on `exp`, `nbf` and `iat`."
    )
    cache_size: int = Field(
        10_000,
        ge=0,
        le=1_000_000,
        description=(
            "Verified tokens remembered (each under itself, or its hash beyond 2048 characters) until "
            "they expire, so a token's signature is checked once; revocations are checked on every use. "
            "0: no cache."
        ),
    )
    jwks_min_refresh: Seconds = Field(60, description="A JWKS is never refetched more often than this, "
                                      "whatever its Cache-Control says.")
    jwks_max_refresh: Seconds = Field(3600, description="A JWKS is refetched at least this often.")
    jwks_default_refresh: Seconds = Field(300, description="Refresh interval of a JWKS sent without max-age.")
    jwks_max_stale: Seconds = Field(
        21600,
        description=(
            "While its endpoint fails, a JWKS fetched earlier keeps verifying tokens for this many "
            "seconds after its last successful fetch; after that its tokens are refused (503)."
        ),
    )
    jwks_unknown_kid_interval: Seconds = Field(
        10,
        description=(
            "A token with an unknown `kid` refetches the JWKS at most once per this many seconds per URL "
            "(random kids cannot flood the provider); other such tokens are refused meanwhile."
        ),
    )

    @field_validator("issuers")
    @classmethod
    def _unique(cls, value: list[JwtIssuer]) -> list[JwtIssuer]:
        names = [i.issuer for i in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"issuer {twice[0]!r} is listed twice")
        return value

    @model_validator(mode="after")
    def _refresh_bounds(self) -> JwtSettings:
        if self.jwks_min_refresh > self.jwks_max_refresh:
            raise ValueError("jwks_min_refresh must not exceed jwks_max_refresh")
        if self.jwks_max_stale <= self.jwks_max_refresh:
            raise ValueError("jwks_max_stale must exceed jwks_max_refresh, or keys would lapse between refreshes")
        return self


class IntrospectionSettings(Strict):
    """``policies.auth.introspection``: opaque tokens, checked at an RFC 7662 endpoint.

    For bearer tokens of an external authorization server that Bastion cannot read itself.
    """

    url: str = Field(description="The introspection endpoint (https, or http to loopback).")
    client_id: str = Field(min_length=1, description="Bastion's client id at that server.")
    client_secret_env: str | None = Field(None, description="Environment variable holding the client secret.")
    client_secret_file: Path | None = Field(None, description="Absolute path of a file holding the client secret.")
    client_auth: Literal["client_secret_basic", "client_secret_post"] = Field(
        "client_secret_basic",
        description="How the client authenticates: `client_secret_basic` (HTTP Basic) or `client_secret_post`.",
    )
    issuer: str | None = Field(None, description="When set, an active token's `iss` must be this.")
    audiences: list[str] = Field(
        default_factory=list, description="When not empty, an active token's `aud` must name one of these."
    )
    consumer_claim: str = Field("sub", min_length=1, description="Member naming the consumer.")
    scopes_claim: str = Field("scope", min_length=1, description="Member holding the scopes (space-separated).")
    roles_claim: str | None = Field("roles", description="Member holding the roles; null: none.")
    cache_ttl: Seconds = Field(
        60, description="An active answer is reused for at most this long, and never past the token's `exp`."
    )
    negative_cache_ttl: float = Field(
        10, ge=0, le=3600, description="An inactive answer is reused this long (0: ask every time)."
    )
    cache_size: int = Field(10_000, ge=0, le=1_000_000, description="Answers remembered (by a hash of the token).")
    timeout: float = Field(
        3.0, gt=0, le=30, description="Seconds the endpoint may take before the request fails (503)."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_endpoint_url(value)

    @field_validator("client_secret_file")
    @classmethod
    def _secret_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("client_secret_env") is not None:
            raise ValueError("give client_secret_env or client_secret_file, not both")
        return _absolute(value)

    @model_validator(mode="after")
    def _secret(self) -> IntrospectionSettings:
        read_secret(self.client_secret_env, self.client_secret_file, "the introspection client secret")
        return self
