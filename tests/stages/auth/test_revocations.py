"""Revoked jtis shared through the state backend: published once, honoured by every worker
(of every instance sharing a Redis) within a second, loaded by workers that start later,
and refused with 503 -- not forgotten -- while the subscription is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from bastion.services import Services
from bastion.stages.auth.jwt.config import JwtSettings
from bastion.stages.auth.jwt.verify import JwtVerifier
from bastion.stages.auth.methods import AuthFailure
from bastion.stages.auth.revocations import (
    MAX_STALENESS,
    SHARED_KEY,
    Revocations,
    load_revoked,
    publish_revocation,
)
from bastion.state.interface import StateBackend
from bastion.state.memory import MemoryBackend
from bastion.types import Principal
from tests.state.redisproc import RedisProcess, require_redis

from .idp import AUDIENCE, ISSUER, SigningKey, claims, services

KEY = SigningKey.generate("EdDSA")


@pytest.fixture
def redis() -> Iterator[RedisProcess]:
    """A redis-server of this test alone (skipped without redis-server, unless required)."""
    require_redis()
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.stop()


def redis_backend(server: RedisProcess) -> StateBackend:
    from bastion.state.redis import RedisBackend

    return RedisBackend(server.url, timeout=0.5)


def verifier() -> JwtVerifier:
    return JwtVerifier.from_settings(JwtSettings.model_validate({"issuers": [
        {"issuer": ISSUER, "keys": [KEY.jwk()], "audiences": [AUDIENCE], "algorithms": ["EdDSA"]}]}))


async def until(condition: object, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        await asyncio.sleep(0.01)
    return False


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_scripts_agree_on_both_backends(backend: str, request: pytest.FixtureRequest) -> None:
    """The revoked set's scripts keep the later expiry of a jti revoked twice, list only what
    has not expired, and behave the same on the memory backend and on Redis."""
    state: StateBackend = MemoryBackend() if backend == "memory" else redis_backend(request.getfixturevalue("redis"))

    async def scenario() -> dict[str, float]:
        now = time.time()
        await publish_revocation(state, "a", now + 100, now)
        await publish_revocation(state, "a", now + 50, now)  # the later expiry stays
        await publish_revocation(state, "b", now + 10, now)
        await publish_revocation(state, "old", now - 1, now)  # already expired: nothing to do
        found = await load_revoked(state, now + 20)  # b has expired by then
        await state.close()
        return {k: round(v - now) for k, v in found.items()}

    assert asyncio.run(scenario()) == {"a": 100}


def test_revocation_reaches_a_running_worker_and_a_later_one() -> None:
    """On the memory backend: a revocation published while a worker runs is honoured on its
    next use of the token; a verifier started afterwards loads it."""
    c = claims()
    token = KEY.sign(c)

    async def scenario() -> None:
        svc = services()
        v = verifier()
        await v.start(svc)
        assert isinstance(v.verify(token), Principal)
        await publish_revocation(svc.state, c["jti"], c["exp"], time.time())
        assert await until(lambda: isinstance(v.verify(token), AuthFailure), within=5.0)
        later = verifier()
        await later.start(svc)
        refused = later.verify(token)
        assert isinstance(refused, AuthFailure) and refused.reason == "auth.revoked"
        await v.close()
        await later.close()
        await svc.close()

    asyncio.run(scenario())


def test_two_instances_sharing_redis_honour_a_revocation_within_a_second(redis: RedisProcess) -> None:
    """Two workers of two instances (own services, one Redis): a token revoked through one is
    refused by both within a second; other tokens keep passing; a third worker that starts
    later refuses it from the start."""
    c = claims()
    token, other = KEY.sign(c), KEY.sign(claims())

    async def scenario() -> None:
        a, b = services(redis_backend(redis)), services(redis_backend(redis))
        va, vb = verifier(), verifier()
        await va.start(a)
        await vb.start(b)
        assert isinstance(va.verify(token), Principal) and isinstance(vb.verify(token), Principal)
        await publish_revocation(a.state, c["jti"], c["exp"], time.time())
        both = await until(lambda: isinstance(va.verify(token), AuthFailure)
                           and isinstance(vb.verify(token), AuthFailure), within=5.0)
        assert both
        refused = vb.verify(token)
        assert isinstance(refused, AuthFailure) and refused.reason == "auth.revoked"
        assert isinstance(va.verify(other), Principal) and isinstance(vb.verify(other), Principal)
        c3 = services(redis_backend(redis))
        v3 = verifier()
        await v3.start(c3)
        late = v3.verify(token)
        assert isinstance(late, AuthFailure) and late.reason == "auth.revoked"
        for v, s in ((va, a), (vb, b), (v3, c3)):
            await v.close()
            await s.close()

    asyncio.run(scenario())


def test_lost_subscription_fails_closed_for_revocable_tokens(redis: RedisProcess) -> None:
    """When Redis dies, tokens with a jti are refused with 503 once the set is more than
    MAX_STALENESS old (a revocation could be missed); tokens without a jti still pass. When
    Redis is back, the worker resubscribes and accepts them again."""
    with_jti, without = KEY.sign(claims()), KEY.sign(claims(jti=None))

    async def scenario() -> None:
        svc: Services = services(redis_backend(redis))
        v = verifier()
        await v.start(svc)
        revocations = svc.shared(SHARED_KEY, lambda: None)
        assert isinstance(revocations, Revocations)
        assert isinstance(v.verify(with_jti), Principal)
        redis.kill()
        assert await until(lambda: isinstance(v.verify(with_jti), AuthFailure), within=MAX_STALENESS + 4)
        refused = v.verify(with_jti)
        assert isinstance(refused, AuthFailure) and (refused.reason, refused.status) == (
            "auth.revocations_unavailable", 503)
        assert isinstance(v.verify(without), Principal)
        redis.start()
        assert await until(lambda: isinstance(v.verify(with_jti), Principal), within=10)
        await v.close()
        await svc.close()

    asyncio.run(scenario())
