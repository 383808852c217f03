"""Signing keys over time, on a real store (SQLite and PostgreSQL): made, published ahead,
rotated, kept while their tokens live, deleted; and the gateway's own tokens verified with
the worker's key ring (the adapter the auth stage uses), revocation included."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from bastion.config.model import ClientAuthLimit, StoreSettings
from bastion.oauth.keys import SigningKey, UnusableKey, load_key, new_key
from bastion.oauth.server import DELETE_AFTER, PUBLISH_AHEAD, OAuthServer, ServerSettings
from bastion.oauth.sqlstore import SqlOAuthStore
from bastion.oauth.tokens import issue
from bastion.oauth.verify import OwnTokenVerifier, WithOwnTokens
from bastion.services import Clock, Services, WorkerIdentity
from bastion.stages.auth.jwt.config import JwtIssuer, JwtSettings
from bastion.stages.auth.jwt.verify import JwtVerifier
from bastion.stages.auth.methods import AuthFailure
from bastion.stages.auth.revocations import publish_revocation
from bastion.state.memory import MemoryBackend
from bastion.store import open_store
from bastion.types import Principal

START = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
ISSUER = "https://auth.example"


class MovableClock(Clock):
    def __init__(self) -> None:
        self.now = START.timestamp()

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


def settings(algorithm: str = "ES256") -> ServerSettings:
    return ServerSettings(ISSUER, ISSUER, 300, "ES256" if algorithm == "ES256" else "EdDSA",
                          timedelta(hours=1), ClientAuthLimit())


def make_services(clock: MovableClock) -> Services:
    return Services(MemoryBackend(clock.monotonic), WorkerIdentity("test", 0, 1, 1), clock)


def stored_kids(store_settings: StoreSettings) -> set[str]:
    store = open_store(store_settings)
    try:
        return {k.kid for k in SqlOAuthStore(store).signing_keys()}
    finally:
        store.close()


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_keys_rotate_publish_ahead_and_expire(store_settings: StoreSettings, algorithm: str) -> None:
    """Started on an empty store the server makes a key that signs at once; shortly before it
    retires the next one is made and published (not signing yet); after the rotation the new
    key signs and the old one stays published until its last token expired; a day later the
    old one is deleted from the store."""

    async def scenario() -> None:
        clock = MovableClock()
        services = make_services(clock)
        server = OAuthServer(settings(algorithm), lambda: SqlOAuthStore(open_store(store_settings)))
        await server.start(services)
        try:
            first = server.signing_key()
            assert first.algorithm == algorithm
            assert [k["kid"] for k in server.ring.keys.jwks(START)["keys"]] == [first.kid]
            clock.now = (first.retire_after - PUBLISH_AHEAD / 2).timestamp()
            await server.refresh()
            assert server.signing_key().kid == first.kid
            now = datetime.fromtimestamp(clock.now, UTC)
            published = [k["kid"] for k in server.ring.keys.jwks(now)["keys"]]
            assert len(published) == 2 and first.kid in published
            second_kid = next(k for k in published if k != first.kid)
            clock.now = first.retire_after.timestamp() + 1
            await server.refresh()
            assert server.signing_key().kid == second_kid
            now = datetime.fromtimestamp(clock.now, UTC)
            assert first.kid in {k["kid"] for k in server.ring.keys.jwks(now)["keys"]}
            clock.now = (first.not_after + timedelta(seconds=1)).timestamp()
            await server.refresh()
            now = datetime.fromtimestamp(clock.now, UTC)
            assert first.kid not in {k["kid"] for k in server.ring.keys.jwks(now)["keys"]}
            assert first.kid in stored_kids(store_settings)  # unpublished, not deleted yet
            clock.now = (first.not_after + DELETE_AFTER + timedelta(seconds=1)).timestamp()
            await server.refresh()
            assert first.kid not in stored_kids(store_settings)
        finally:
            await server.close()
            await services.close()

    asyncio.run(scenario())


def test_a_second_instance_signs_with_the_key_the_first_made(store_settings: StoreSettings) -> None:
    """Two servers on one store: the second makes no key of its own but loads the first's,
    and the private key kept in the store is encrypted (a copy without the pepper mints
    nothing)."""

    async def scenario() -> None:
        clock = MovableClock()
        one, two = make_services(clock), make_services(clock)
        a = OAuthServer(settings(), lambda: SqlOAuthStore(open_store(store_settings)))
        b = OAuthServer(settings(), lambda: SqlOAuthStore(open_store(store_settings)))
        await a.start(one)
        await b.start(two)
        try:
            assert a.signing_key().kid == b.signing_key().kid
            assert stored_kids(store_settings) == {a.signing_key().kid}
            store = open_store(store_settings)
            try:
                (row,) = SqlOAuthStore(store).signing_keys()
            finally:
                store.close()
            assert "ENCRYPTED PRIVATE KEY" in row.private_pem
            with pytest.raises(UnusableKey, match="pepper"):
                load_key(row, b"another pepper of thirty-two bytes!")
        finally:
            await a.close()
            await b.close()
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_own_tokens_verify_through_the_jwt_verifier_across_rotation_until_revoked(tmp_path: Path) -> None:
    """The gateway's own tokens, checked by the JWT verifier with the worker's keys: a valid
    token gives its consumer and scopes; after a rotation the new key's tokens verify too;
    a revocation (published through the state backend) refuses it; an expired one, a
    tampered one, one signed by a stranger's key and an HS256 one keyed with nothing of
    ours are refused with their reasons."""
    store_settings = StoreSettings(url=f"sqlite:///{tmp_path / 'bastion.db'}", pepper_file=tmp_path / "pepper")

    async def scenario() -> None:
        clock = MovableClock()
        services = make_services(clock)
        server = OAuthServer(settings(), lambda: SqlOAuthStore(open_store(store_settings)))
        await server.start(services)
        verifier = OwnTokenVerifier()
        await verifier.start(services)
        try:
            def mint(ttl: int = 300, key: SigningKey | None = None) -> tuple[str, str]:
                issued = issue(key or server.signing_key(), issuer=ISSUER, audience=ISSUER, subject="billing-svc",
                               client_id="billing", scopes=("books:read", "books:write"), ttl=ttl, now=clock.now)
                return issued.token, issued.jti

            async def verdict(token: str) -> Principal | AuthFailure:
                found = verifier.verify(token)
                if isinstance(found, (Principal, AuthFailure)):
                    return found
                return await found

            token, jti = mint()
            principal = await verdict(token)
            assert isinstance(principal, Principal)
            assert (principal.consumer_name, principal.credential_id) == ("billing-svc", jti)
            assert principal.scopes == frozenset({"books:read", "books:write"})
            first = server.signing_key()
            clock.now = first.retire_after.timestamp() + 1
            await server.refresh()
            assert server.signing_key().kid != first.kid
            rotated, rotated_jti = mint()
            assert isinstance(await verdict(rotated), Principal)
            await publish_revocation(services.state, rotated_jti, clock.now + 600, clock.now)
            deadline = time.monotonic() + 5
            while await verdict(rotated) != AuthFailure("auth.revoked"):  # pub/sub: delivered soon
                assert time.monotonic() < deadline, "the revocation never reached the verifier"
                await asyncio.sleep(0.01)
            expiring, _ = mint(ttl=60)
            clock.now += 60 + 31
            assert await verdict(expiring) == AuthFailure("auth.token_expired")
            head, body, sig = mint()[0].split(".")
            tampered = jwt.utils.base64url_encode(
                jwt.utils.base64url_decode(body).replace(b"books:read", b"books:rite")).decode()
            assert await verdict(f"{head}.{tampered}.{sig}") == AuthFailure("auth.signature")
            stranger = new_key("ES256", datetime.fromtimestamp(clock.now, UTC), timedelta(hours=1),
                               timedelta(minutes=5), b"p" * 32)
            assert await verdict(mint(key=load_key(stranger, b"p" * 32))[0]) == AuthFailure("auth.kid_unknown")
            hs = jwt.encode({"iss": ISSUER, "sub": "x", "aud": ISSUER, "exp": int(clock.now) + 60}, "k" * 32,
                            algorithm="HS256")
            assert await verdict(hs) == AuthFailure("auth.algorithm")
        finally:
            await verifier.close()
            await server.close()
            await services.close()

    asyncio.run(scenario())


def test_a_route_takes_the_servers_tokens_beside_an_external_issuers(tmp_path: Path) -> None:
    """WithOwnTokens in a route's JWT slot: a token of the built-in server (its kid is one of
    the server's keys) is verified with the server's keys, a token of the route's external
    issuer by the route's JWT verifier, a forged token naming the server's key is refused
    for its signature, and without an external verifier another issuer's token is refused."""
    store_settings = StoreSettings(url=f"sqlite:///{tmp_path / 'bastion.db'}", pepper_file=tmp_path / "pepper")
    idp_key = ec.generate_private_key(ec.SECP256R1())
    idp_jwk = {**ECAlgorithm.to_jwk(idp_key.public_key(), as_dict=True), "kid": "idp-1"}
    external = JwtVerifier(JwtSettings(issuers=[JwtIssuer(
        issuer="https://idp.example", keys=[idp_jwk], algorithms=["ES256"], audiences=["books"])]))

    async def scenario() -> None:
        clock = MovableClock()
        services = make_services(clock)
        server = OAuthServer(settings(), lambda: SqlOAuthStore(open_store(store_settings)))
        await server.start(services)
        route = WithOwnTokens(external)
        alone = WithOwnTokens(None)
        await route.start(services)
        await alone.start(services)
        try:
            async def verdict(verifier: WithOwnTokens, token: str) -> Principal | AuthFailure:
                found = verifier.verify(token)
                return found if isinstance(found, (Principal, AuthFailure)) else await found

            own = issue(server.signing_key(), issuer=ISSUER, audience=ISSUER, subject="billing-svc",
                        client_id="billing", scopes=("books:read",), ttl=300, now=clock.now).token
            theirs = jwt.encode({"iss": "https://idp.example", "sub": "alice", "aud": "books",
                                 "exp": int(clock.now) + 300, "jti": "t1"}, idp_key, algorithm="ES256",
                                headers={"kid": "idp-1"})
            mine = await verdict(route, own)
            assert isinstance(mine, Principal) and mine.consumer_name == "billing-svc"
            other = await verdict(route, theirs)
            assert isinstance(other, Principal) and other.consumer_name == "alice"
            forged = jwt.encode(jwt.decode(own, options={"verify_signature": False}), idp_key, algorithm="ES256",
                                headers={"kid": server.signing_key().kid})
            assert await verdict(route, forged) == AuthFailure("auth.signature")
            assert isinstance(await verdict(alone, own), Principal)
            assert await verdict(alone, theirs) == AuthFailure("auth.issuer")
        finally:
            await route.close()
            await alone.close()
            await server.close()
            await services.close()

    asyncio.run(scenario())
