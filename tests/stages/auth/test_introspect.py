"""Opaque tokens checked at a real RFC 7662 endpoint on loopback: active tokens become
principals, inactive or expired ones are refused, answers are cached no longer than the
token lives, concurrent checks share one call, and an unreachable or failing endpoint
refuses with 503 (fail closed) without caching the failure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.services import Services
from bastion.stages.auth.introspect import IntrospectionVerifier
from bastion.stages.auth.jwt.config import IntrospectionSettings
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.testing import free_port
from bastion.types import Principal

from .idp import MovableClock, Provider, b64url, serve, services


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def url(provider: Provider) -> Iterator[str]:
    with serve(provider) as base:
        yield base + "/introspect"


@pytest.fixture
def secret_file(tmp_path: Path, provider: Provider) -> Path:
    path = tmp_path / "client.secret"
    path.write_text(provider.client[1] + "\n")
    return path


def make(url: str, secret_file: Path, **extra: Any) -> IntrospectionVerifier:
    return IntrospectionVerifier.from_settings(IntrospectionSettings.model_validate(
        {"url": url, "client_id": "bastion", "client_secret_file": str(secret_file), **extra}))


async def settle(verdict: Verdict | Awaitable[Verdict]) -> Verdict:
    return verdict if isinstance(verdict, (Principal, AuthFailure)) else await verdict


def active(**extra: Any) -> dict[str, Any]:
    return {"active": True, "sub": "svc-7", "scope": "books:read", "exp": int(time.time()) + 600,
            "client_id": "c1", "roles": ["robot"], **extra}


def run(v: IntrospectionVerifier, scenario: Any, svc: Services | None = None) -> None:
    async def main() -> None:
        s = svc or services()
        await v.start(s)
        try:
            await scenario()
        finally:
            await v.close()
            await s.close()

    asyncio.run(main())


def test_active_token_is_a_principal_and_cached(provider: Provider, url: str, secret_file: Path) -> None:
    """An active token gives its subject, scopes and roles; the second use is answered at
    once from the cache (no second call); the client authenticated with HTTP Basic."""
    provider.introspection["opaque-1"] = active()
    v = make(url, secret_file)

    async def scenario() -> None:
        first = await settle(v.verify("opaque-1"))
        assert isinstance(first, Principal)
        assert (first.consumer_id, first.scopes, first.roles) == ("svc-7", {"books:read"}, {"robot"})
        second = v.verify("opaque-1")
        assert second is first and provider.introspection_hits == 1

    run(v, scenario)


def test_cache_does_not_outlive_the_token(provider: Provider, url: str, secret_file: Path) -> None:
    """An answer for a token expiring in 5 s is reused up to then and not after: past exp,
    the endpoint is asked again (and here says inactive)."""
    provider.introspection["short"] = active(exp=int(time.time()) + 5)
    clock = MovableClock()
    v = make(url, secret_file, cache_ttl=600)

    async def scenario() -> None:
        assert isinstance(await settle(v.verify("short")), Principal)
        clock.offset = 3
        assert isinstance(v.verify("short"), Principal)
        provider.introspection.pop("short")
        clock.offset = 6
        refused = await settle(v.verify("short"))
        assert isinstance(refused, AuthFailure) and refused.reason == "auth.inactive"
        assert provider.introspection_hits == 2

    run(v, scenario, services(clock=clock))


def test_cache_ttl_caps_long_lived_tokens(provider: Provider, url: str, secret_file: Path) -> None:
    """A token living an hour is asked about again after cache_ttl (a revocation at the
    server is seen within that bound)."""
    provider.introspection["long"] = active(exp=int(time.time()) + 3600)
    clock = MovableClock()
    v = make(url, secret_file, cache_ttl=30)

    async def scenario() -> None:
        assert isinstance(await settle(v.verify("long")), Principal)
        provider.introspection["long"] = {"active": False}
        clock.offset = 31
        refused = await settle(v.verify("long"))
        assert isinstance(refused, AuthFailure) and refused.reason == "auth.inactive"

    run(v, scenario, services(clock=clock))


@pytest.mark.parametrize(
    ("answer", "extra", "expected"),
    [
        ({"active": False}, {}, "auth.inactive"),
        (None, {}, "auth.inactive"),
        ({"active": True, "sub": "x", "exp": 1}, {}, "auth.token_expired"),
        ({"active": True}, {}, "auth.claims"),
        ({"active": True, "sub": "x", "iss": "https://other"}, {"issuer": "https://as.test"}, "auth.issuer"),
        ({"active": True, "sub": "x", "aud": "other"}, {"audiences": ["books"]}, "auth.audience"),
    ],
    ids=["inactive", "unknown", "expired", "no-sub", "wrong-iss", "wrong-aud"],
)
def test_refusals(
    provider: Provider, url: str, secret_file: Path, answer: dict[str, Any] | None, extra: dict[str, Any],
    expected: str,
) -> None:
    """Inactive, unknown, expired, subject-less, foreign-issuer and foreign-audience tokens
    are refused with 401 and the reason."""
    if answer is not None:
        provider.introspection["t"] = answer
    v = make(url, secret_file, **extra)

    async def scenario() -> None:
        refused = await settle(v.verify("t"))
        assert isinstance(refused, AuthFailure) and (refused.reason, refused.status) == (expected, 401)

    run(v, scenario)


def test_concurrent_checks_share_one_call(provider: Provider, url: str, secret_file: Path) -> None:
    """Twenty requests with the same new token cause one introspection call."""
    provider.introspection["same"] = active()
    v = make(url, secret_file)

    async def scenario() -> None:
        verdicts = await asyncio.gather(*(settle(v.verify("same")) for _ in range(20)))
        assert all(isinstance(x, Principal) for x in verdicts)
        assert provider.introspection_hits == 1

    run(v, scenario)


@pytest.mark.parametrize("failure", ["status-500", "wrong-client-secret", "not-introspection", "no-server"])
def test_endpoint_failures_fail_closed(
    provider: Provider, url: str, secret_file: Path, tmp_path: Path, failure: str
) -> None:
    """A 500, a rejected client (wrong secret), an answer without a boolean `active`, or no
    server at all: the token is refused with 503, and the failure is not cached (the next
    request asks again and passes once the endpoint is healthy)."""
    provider.introspection["t"] = active()
    target = url
    if failure == "status-500":
        provider.introspection_status = 500
    elif failure == "wrong-client-secret":
        secret_file = tmp_path / "wrong.secret"
        secret_file.write_text("not-the-secret")
    elif failure == "not-introspection":
        provider.introspection["t"] = {"ok": True}
    else:
        target = f"http://127.0.0.1:{free_port()}/introspect"
    v = make(target, secret_file)

    async def scenario() -> None:
        refused = await settle(v.verify("t"))
        assert isinstance(refused, AuthFailure)
        assert (refused.reason, refused.status) == ("auth.introspection_unavailable", 503)
        if failure == "status-500":
            provider.introspection_status = 200
            assert isinstance(await settle(v.verify("t")), Principal)

    run(v, scenario)


def test_client_secret_post(provider: Provider, url: str, secret_file: Path) -> None:
    """With client_secret_post the credentials travel in the form: the endpoint (which wants
    Basic) rejects them, so the token is refused with 503 -- the setting is really used."""
    provider.introspection["t"] = active()
    v = make(url, secret_file, client_auth="client_secret_post")

    async def scenario() -> None:
        refused = await settle(v.verify("t"))
        assert isinstance(refused, AuthFailure) and refused.status == 503

    run(v, scenario)


@pytest.mark.parametrize("token", ["", "has space", "x" * 5000, "new\nline", "é"])
def test_unsendable_tokens_are_malformed(url: str, secret_file: Path, provider: Provider, token: str) -> None:
    """Empty, huge or non-printable tokens are refused at once and never sent."""
    v = make(url, secret_file)

    async def scenario() -> None:
        refused = v.verify(token)
        assert isinstance(refused, AuthFailure) and refused.reason == "auth.malformed"
        assert provider.introspection_hits == 0

    run(v, scenario)


def test_a_certificate_bound_answer_names_its_certificate(provider: Provider, url: str, secret_file: Path) -> None:
    """RFC 8705 3.2: an active token whose introspection answer carries `cnf.x5t#S256` gives
    a principal bound to that certificate (SHA-256 hex; the auth stage checks the connection);
    a `cnf` of another confirmation method is refused, not taken as a bearer token."""
    digest = bytes(range(32))
    provider.introspection["bound"] = active(cnf={"x5t#S256": b64url(digest)})
    provider.introspection["dpop"] = active(cnf={"jkt": b64url(digest)})
    v = make(url, secret_file)

    async def scenario() -> None:
        bound = await settle(v.verify("bound"))
        assert isinstance(bound, Principal) and bound.bound_certificate == digest.hex()
        refused = await settle(v.verify("dpop"))
        assert isinstance(refused, AuthFailure) and refused.reason == "auth.claims"

    run(v, scenario)
