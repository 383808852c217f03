"""The JWKS cache against a real endpoint: loaded at start, rotated keys picked up (by the
background refresh, and by an unknown kid at most once per interval), fail closed while no
keys ever loaded, stale keys kept for a bounded time while the endpoint fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from bastion.services import Services
from bastion.stages.auth.jwt.config import JwtSettings
from bastion.stages.auth.jwt.jwks import JwksCache, JwksError, max_age, parse_jwks
from bastion.stages.auth.jwt.verify import JwtVerifier
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.testing import free_port
from bastion.types import Principal

from .idp import AUDIENCE, ISSUER, MovableClock, Provider, SigningKey, claims, serve, services


def verifier(url: str, **timing: Any) -> JwtVerifier:
    entry = {"issuer": ISSUER, "jwks_url": url, "audiences": [AUDIENCE], "algorithms": ["RS256", "ES256"]}
    return JwtVerifier.from_settings(JwtSettings.model_validate({"issuers": [entry], **timing}))


async def outcome(verdict: Verdict | Awaitable[Verdict]) -> tuple[str, Verdict]:
    """('now', v) for an immediate verdict, ('awaited', v) for one that had to wait."""
    if isinstance(verdict, (Principal, AuthFailure)):
        return "now", verdict
    return "awaited", await verdict


def test_unknown_kid_refetches_at_most_once_per_interval() -> None:
    """A key added to the JWKS is found by the first token naming it once the interval since
    the last fetch has passed (one refetch, awaited); random kids after that are refused at
    once without calling the provider until the interval has passed again, then one more
    refetch is allowed."""
    old, new = SigningKey.generate("ES256"), SigningKey.generate("ES256")
    provider = Provider(keys=[old])
    clock = MovableClock()

    async def scenario(url: str) -> None:
        v = verifier(url, jwks_unknown_kid_interval=10)
        svc = services(clock=clock)
        await v.start(svc)
        try:
            assert provider.jwks_hits == 1
            assert isinstance((await outcome(v.verify(old.sign(claims()))))[1], Principal)
            provider.keys = [old, new]  # rotation at the provider
            how, verdict = await outcome(v.verify(new.sign(claims())))
            assert how == "now" and isinstance(verdict, AuthFailure)  # the start's fetch was just now
            assert provider.jwks_hits == 1
            clock.offset += 10
            how, verdict = await outcome(v.verify(new.sign(claims())))
            assert (how, isinstance(verdict, Principal)) == ("awaited", True)
            assert provider.jwks_hits == 2
            for i in range(20):  # random kids: refused at once, the provider is not called
                how, verdict = await outcome(v.verify(new.sign(claims(), kid=f"random-{i}")))
                assert how == "now" and isinstance(verdict, AuthFailure) and verdict.reason == "auth.kid_unknown"
            assert provider.jwks_hits == 2
            clock.offset += 10
            how, verdict = await outcome(v.verify(new.sign(claims(), kid="random-again")))
            assert how == "awaited" and isinstance(verdict, AuthFailure) and verdict.reason == "auth.kid_unknown"
            assert provider.jwks_hits == 3
        finally:
            await v.close()
            await svc.close()

    with serve(provider) as base:
        asyncio.run(scenario(base + "/jwks"))


def test_concurrent_unknown_kids_share_one_refetch() -> None:
    """Fifty requests with the new kid at the same moment cause one fetch, not fifty."""
    old, new = SigningKey.generate("RS256"), SigningKey.generate("RS256")
    provider = Provider(keys=[old])

    async def scenario(url: str) -> None:
        v = verifier(url, jwks_unknown_kid_interval=0.01)
        svc = services()
        await v.start(svc)
        try:
            await asyncio.sleep(0.02)
            provider.keys = [old, new]
            tokens = [new.sign(claims()) for _ in range(50)]
            verdicts = await asyncio.gather(*(outcome(v.verify(t)) for t in tokens))
            assert all(isinstance(vd, Principal) for _, vd in verdicts)
            assert provider.jwks_hits == 2
        finally:
            await v.close()
            await svc.close()

    with serve(provider) as base:
        asyncio.run(scenario(base + "/jwks"))


def test_background_refresh_follows_a_rotation() -> None:
    """With max-age 1 (and jwks_min_refresh 1), the background task refetches: a key removed
    from the JWKS stops verifying its tokens, cached ones included, and the new key works
    without any unknown-kid refetch."""
    old, new = SigningKey.generate("ES256"), SigningKey.generate("ES256")
    provider = Provider(keys=[old], cache_control="public, max-age=1")

    async def scenario(url: str) -> None:
        v = verifier(url, jwks_min_refresh=1, jwks_unknown_kid_interval=3600)
        svc = services()
        await v.start(svc)
        try:
            old_token = old.sign(claims())
            assert isinstance(v.verify(old_token), Principal)  # now cached
            provider.keys = [new]
            for _ in range(60):
                await asyncio.sleep(0.1)
                if provider.jwks_hits >= 2:
                    break
            await asyncio.sleep(0.1)
            assert provider.jwks_hits >= 2
            _, refused = await outcome(v.verify(old_token))
            assert isinstance(refused, AuthFailure) and refused.reason == "auth.kid_unknown"
            assert isinstance(v.verify(new.sign(claims())), Principal)
        finally:
            await v.close()
            await svc.close()

    with serve(provider) as base:
        asyncio.run(scenario(base + "/jwks"))


def test_unreachable_at_start_fails_closed_until_loaded() -> None:
    """A JWKS endpoint that answers 500 at start: the worker starts, tokens are refused with
    503 (not 401, and never accepted), without calling the endpoint again within the
    interval; once the endpoint works, the next token after the interval loads the keys."""
    key = SigningKey.generate("RS256")
    provider = Provider(keys=[key], jwks_status=500)
    clock = MovableClock()

    async def scenario(url: str) -> None:
        v = verifier(url, jwks_unknown_kid_interval=5)
        svc = services(clock=clock)
        await v.start(svc)
        try:
            how, verdict = await outcome(v.verify(key.sign(claims())))
            assert isinstance(verdict, AuthFailure)
            assert (verdict.reason, verdict.status) == ("auth.jwks_unavailable", 503)
            assert provider.jwks_hits == 1
            provider.jwks_status = 200
            how, verdict = await outcome(v.verify(key.sign(claims())))
            assert how == "now" and isinstance(verdict, AuthFailure) and verdict.status == 503  # within the interval
            clock.offset += 5
            how, verdict = await outcome(v.verify(key.sign(claims())))
            assert how == "awaited" and isinstance(verdict, Principal)
        finally:
            await v.close()
            await svc.close()

    with serve(provider) as base:
        asyncio.run(scenario(base + "/jwks"))


def test_no_server_at_all_fails_closed() -> None:
    """Nothing listening on the JWKS port: start() completes, tokens get 503."""
    key = SigningKey.generate("ES256")

    async def scenario() -> None:
        v = verifier(f"http://127.0.0.1:{free_port()}/jwks")
        svc = services()
        await v.start(svc)
        try:
            _, verdict = await outcome(v.verify(key.sign(claims())))
            assert isinstance(verdict, AuthFailure) and verdict.status == 503
        finally:
            await v.close()
            await svc.close()

    asyncio.run(scenario())


def test_stale_keys_keep_working_for_max_stale_then_fail_closed() -> None:
    """Keys loaded once keep verifying while every refresh fails, until jwks_max_stale
    seconds after the last successful fetch; then tokens are refused with 503."""
    key = SigningKey.generate("ES256")
    provider = Provider(keys=[key])
    clock = MovableClock()

    async def scenario(url: str) -> None:
        v = verifier(url, jwks_min_refresh=1, jwks_max_refresh=10, jwks_max_stale=100,
                     jwks_unknown_kid_interval=1000)
        svc = services(clock=clock)
        await v.start(svc)
        try:
            provider.jwks_status = 503
            clock.offset += 99
            assert isinstance(v.verify(key.sign(claims())), Principal)
            clock.offset += 2
            _, verdict = await outcome(v.verify(key.sign(claims())))
            assert isinstance(verdict, AuthFailure)
            assert (verdict.reason, verdict.status) == ("auth.jwks_unavailable", 503)
        finally:
            await v.close()
            await svc.close()

    with serve(provider) as base:
        asyncio.run(scenario(base + "/jwks"))


def test_one_cache_per_url_shared_and_refcounted() -> None:
    """Two verifiers (two routes, or a reload) of the same URL share one cache and one fetch;
    the refresh task runs until the last of them closes."""
    key = SigningKey.generate("RS256")
    provider = Provider(keys=[key])

    async def scenario(url: str) -> None:
        svc = services()
        a, b = verifier(url), verifier(url)
        await a.start(svc)
        await b.start(svc)
        cache = svc.shared("jwks:" + url, lambda: None)
        assert isinstance(cache, JwksCache) and provider.jwks_hits == 1
        await a.close()
        assert cache._task is not None and not cache._task.done()
        assert isinstance(b.verify(key.sign(claims())), Principal)
        await b.close()
        assert cache._task is None
        await svc.close()

    with serve(provider) as base:
        asyncio.run(scenario(base + "/jwks"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("max-age=600", 600.0), ("public, max-age=60, must-revalidate", 60.0), ('max-age="30"', 30.0),
     ("no-store", 0.0), ("s-maxage=5", None), ("private", None)],
)
def test_max_age(header: str | None, expected: float | None) -> None:
    """Cache-Control's max-age is read (not s-maxage); no-store means as often as allowed."""
    assert max_age(header) == expected


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"keys": {}}', b'{"keys": []}', b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'],
)
def test_unusable_jwks_documents_are_errors(body: bytes) -> None:
    """A document without a usable signing key is a failed fetch (the previous keys stay)."""
    with pytest.raises(JwksError):
        parse_jwks(body, "https://idp.test/jwks")


def test_unusable_keys_are_skipped() -> None:
    """Encryption keys and unsupported curves are skipped; the usable key remains."""
    good = SigningKey.generate("EdDSA").jwk()
    enc = {**SigningKey.generate("RS256").jwk(), "use": "enc", "kid": "enc"}
    p384 = {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"}
    keys, _ = parse_jwks(__import__("json").dumps({"keys": [enc, p384, good]}).encode(), "u")
    assert [k.kid for k in keys.keys] == [good["kid"]]


def test_services_close_stops_the_refresh() -> None:
    """Closing the worker's services stops a cache's task even if a verifier was not closed."""
    provider = Provider(keys=[SigningKey.generate("ES256")])

    async def scenario(url: str) -> None:
        svc: Services = services()
        v = verifier(url)
        await v.start(svc)
        cache = svc.shared("jwks:" + url, lambda: None)
        assert isinstance(cache, JwksCache)
        task = cache._task
        await svc.close()
        assert task is not None and task.done()

    with serve(provider) as base:
        asyncio.run(scenario(base + "/jwks"))


def test_one_verifier_shared_by_routes_is_started_and_closed_by_count() -> None:
    """A verifier started by two routes keeps its JWKS refresh until both closed it."""
    provider = Provider(keys=[SigningKey.generate("ES256")])

    async def scenario(url: str) -> None:
        svc = services()
        v = verifier(url)
        await v.start(svc)
        await v.start(svc)
        cache = svc.shared("jwks:" + url, lambda: None)
        assert isinstance(cache, JwksCache) and provider.jwks_hits == 1
        await v.close()
        assert cache._task is not None and not cache._task.done()
        await v.close()
        assert cache._task is None
        await svc.close()

    with serve(provider) as base:
        asyncio.run(scenario(base + "/jwks"))

