"""The built-in OAuth server end to end: two real gateway processes sharing one redis-server
and one store, clients created with the real CLI, httpx as the OAuth client.

Each test sends its requests as a client address of its own (``X-Forwarded-For`` from the
trusted loopback), so the per-address failure counters of one test never touch another.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess

from ..state.redisproc import RedisProcess

BASTION = str(Path(sys.executable).with_name("bastion"))
PEPPER = "oauth-e2e-pepper-" + "x" * 32
ISSUER = "https://auth.example"
FAILURES = 5
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Fleet:
    a: GatewayProcess
    b: GatewayProcess
    config: Path
    secret: str
    #: The private key of the private_key_jwt client ``signer``, and its kid.
    signer_key: ec.EllipticCurvePrivateKey
    signer_kid: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.config, *args)


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASTION, *args, "-c", str(config)], capture_output=True, text=True, timeout=60, check=False,
        env={"BASTION_PEPPER": PEPPER, "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def fleet(redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Gateways A and B: one redis-server, one SQLite store, one pepper, one issuer."""
    redis_server.flush()
    folder = tmp_path_factory.mktemp("oauth-fleet")
    with DemoServer() as api:
        config: dict[str, Any] = {
            "listen": {"trusted_proxies": ["127.0.0.1/32"]},
            "backends": {"state": "redis", "redis": {"url": redis_server.url}},
            "store": {"url": f"sqlite:///{folder}/bastion.db"},
            "consumers": [{"name": "billing-svc", "roles": ["service"]}],
            "oauth_server": {"enabled": True, "issuer": ISSUER, "client_auth_limit": {"failures": FAILURES}},
            "services": [{"name": "books", "upstream": api.url,
                          "routes": [{"path": "/orders", "methods": ["GET"]},
                                     {"path": "/", "prefix": True, "public": True}]}],
        }
        cfg_path = folder / "bastion.yaml"
        cfg_path.write_text(yaml.safe_dump(config))
        created = run_cli(cfg_path, "oauth", "clients", "create", "billing", "--consumer", "billing-svc",
                          "--scopes", "books:read,books:write")
        assert created.returncode == 0, created.stderr
        secret = created.stdout.strip().splitlines()[-1]
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwk["kid"] = "signer-1"
        (folder / "signer.jwks").write_text(json.dumps({"keys": [jwk]}))
        created = run_cli(cfg_path, "oauth", "clients", "create", "signer", "--consumer", "billing-svc",
                          "--scopes", "books:read", "--jwks", str(folder / "signer.jwks"))
        assert created.returncode == 0, created.stderr
        env = {"BASTION_PEPPER": PEPPER}
        (folder / "a").mkdir()
        (folder / "b").mkdir()
        # A first: it makes the signing key; B, started once A is ready, finds it in the store.
        with GatewayProcess(config, env=env, folder=folder / "a") as a, \
                GatewayProcess(config, env=env, folder=folder / "b") as b:
            yield Fleet(a, b, cfg_path, secret, key, "signer-1")


def post(gw: GatewayProcess, path: str, ip: str, data: dict[str, str],
         auth: tuple[str, str] | None = None) -> httpx.Response:
    return httpx.post(gw.url + path, data=data, auth=auth, headers={"x-forwarded-for": ip}, timeout=10)


def token(gw: GatewayProcess, fleet: Fleet, ip: str, scope: str | None = None) -> str:
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    resp = post(gw, "/oauth/token", ip, data, auth=("billing", fleet.secret))
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def introspect(gw: GatewayProcess, fleet: Fleet, ip: str, tok: str) -> dict[str, Any]:
    resp = post(gw, "/oauth/introspect", ip, {"token": tok}, auth=("billing", fleet.secret))
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body: dict[str, Any] = resp.json()
    return body


def test_token_introspect_revoke_across_two_instances(fleet: Fleet) -> None:
    """A token from A verifies with the JWKS B serves (keys come from the shared store), has
    the claims it should, introspects active on B; once revoked at A it introspects
    inactive on both instances (revocations live in the shared Redis). A protected route
    takes it on both instances (200) and refuses it on both once revoked (401), within a
    bound of a few seconds (the promise is 1 s; no timing is asserted)."""
    ip = "198.51.100.1"
    resp = post(fleet.a, "/oauth/token", ip, {"grant_type": "client_credentials", "scope": "books:read"},
                auth=("billing", fleet.secret))
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 300, "books:read")
    tok = body["access_token"]
    jwks = httpx.get(fleet.b.url + "/.well-known/jwks.json", timeout=10).json()
    header = jwt.get_unverified_header(tok)
    assert header["alg"] == "ES256" and header["typ"] == "at+jwt"
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(tok, key.key, algorithms=["ES256"], audience=ISSUER, issuer=ISSUER)
    assert claims["sub"] == "billing-svc"
    assert claims["client_id"] == "billing"
    assert claims["scope"] == "books:read"
    assert claims["exp"] - claims["iat"] == 300
    seen = introspect(fleet.b, fleet, ip, tok)
    assert seen["active"] is True
    assert (seen["jti"], seen["sub"], seen["scope"]) == (claims["jti"], "billing-svc", "books:read")
    bearer = {"authorization": f"Bearer {tok}", "x-forwarded-for": ip}
    for gw in (fleet.a, fleet.b):
        called = httpx.get(gw.url + "/orders", headers=bearer, timeout=10)
        assert called.status_code == 200, called.text
        assert httpx.get(gw.url + "/orders", headers={"x-forwarded-for": ip}, timeout=10).status_code == 401
    revoked = post(fleet.a, "/oauth/revoke", ip, {"token": tok, "client_id": "billing",
                                                  "client_secret": fleet.secret})
    assert revoked.status_code == 200, revoked.text
    assert introspect(fleet.b, fleet, ip, tok) == {"active": False}
    assert introspect(fleet.a, fleet, ip, tok) == {"active": False}
    for gw in (fleet.a, fleet.b):
        status = 200
        deadline = time.monotonic() + 5
        while status == 200 and time.monotonic() < deadline:
            refused = httpx.get(gw.url + "/orders", headers=bearer, timeout=10)
            status = refused.status_code
            if status == 200:
                time.sleep(0.05)
        assert status == 401, refused.text
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_metadata_names_the_configured_issuer_and_endpoints(fleet: Fleet) -> None:
    """RFC 8414 metadata: the shared issuer and its endpoints, the client credentials grant
    and the three client authentication methods, identical on both instances."""
    a = httpx.get(fleet.a.url + "/.well-known/oauth-authorization-server", timeout=10)
    b = httpx.get(fleet.b.url + "/.well-known/oauth-authorization-server", timeout=10)
    assert a.status_code == 200 and a.json() == b.json()
    meta = a.json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == ISSUER + "/oauth/token"
    assert meta["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "private_key_jwt"}


def test_cli_revoke_reaches_every_instance(fleet: Fleet) -> None:
    """`bastion oauth revoke TOKEN` publishes through the shared Redis: the token, active on
    both instances before, is inactive on both after."""
    ip = "198.51.100.2"
    tok = token(fleet.b, fleet, ip)
    assert introspect(fleet.a, fleet, ip, tok)["active"] is True
    done = fleet.cli("oauth", "revoke", tok)
    assert done.returncode == 0, done.stderr
    assert introspect(fleet.a, fleet, ip, tok) == {"active": False}
    assert introspect(fleet.b, fleet, ip, tok) == {"active": False}


def assertion(fleet: Fleet, key: ec.EllipticCurvePrivateKey | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": "signer", "sub": "signer", "aud": ISSUER + "/oauth/token", "iat": now, "exp": now + 60,
            "jti": secrets.token_hex(8), **claims}
    return jwt.encode(body, key or fleet.signer_key, algorithm="ES256", headers={"kid": fleet.signer_kid})


def test_private_key_jwt_with_a_real_ec_key_and_no_replay(fleet: Fleet) -> None:
    """A client registered with its public EC key gets a token with an assertion it signed;
    the same assertion presented again (to the other instance) is refused, as is one signed
    by another key."""
    ip = "198.51.100.3"
    signed = assertion(fleet)
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}
    first = post(fleet.a, "/oauth/token", ip, form)
    assert first.status_code == 200, first.text
    claims = jwt.decode(first.json()["access_token"], options={"verify_signature": False})
    assert (claims["client_id"], claims["sub"], claims["scope"]) == ("signer", "billing-svc", "books:read")
    replay = post(fleet.b, "/oauth/token", ip, form)
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"
    forged = assertion(fleet, key=ec.generate_private_key(ec.SECP256R1()))
    other = post(fleet.a, "/oauth/token", ip, {**form, "client_assertion": forged})
    assert other.status_code == 401
    assert other.json()["error"] == "invalid_client"


def test_wrong_secret_and_unknown_client_get_the_same_answer(fleet: Fleet) -> None:
    """A wrong secret and an unknown client both get 401 invalid_client with a Basic
    challenge and the same body: nothing tells which client ids exist."""
    ip = "198.51.100.4"
    data = {"grant_type": "client_credentials"}
    wrong = post(fleet.a, "/oauth/token", ip, data, auth=("billing", fleet.secret + "x"))
    unknown = post(fleet.a, "/oauth/token", ip, data, auth=("nobody", fleet.secret))
    for resp in (wrong, unknown):
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("Basic ")
        assert resp.headers["cache-control"] == "no-store"
        assert resp.headers["content-type"] == "application/json"
    assert wrong.content == unknown.content
    assert wrong.json()["error"] == "invalid_client"


def test_scope_escalation_is_refused(fleet: Fleet) -> None:
    """Asking for a scope the client was not given is invalid_scope (400), even next to
    scopes it has; asking for a subset gets exactly that subset."""
    ip = "198.51.100.5"
    refused = post(fleet.a, "/oauth/token", ip, {"grant_type": "client_credentials", "scope": "books:read admin"},
                   auth=("billing", fleet.secret))
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_scope"
    granted = jwt.decode(token(fleet.a, fleet, ip, "books:write"), options={"verify_signature": False})
    assert granted["scope"] == "books:write"


def test_unsupported_grant_and_duplicate_parameters(fleet: Fleet) -> None:
    """Only client_credentials is granted (unsupported_grant_type); a parameter given twice
    is invalid_request (RFC 6749 3.2), as is a body that is not a form."""
    ip = "198.51.100.6"
    grant = post(fleet.a, "/oauth/token", ip, {"grant_type": "password"}, auth=("billing", fleet.secret))
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")
    twice = httpx.post(fleet.a.url + "/oauth/token", content=b"grant_type=client_credentials&scope=a&scope=b",
                       headers={"content-type": "application/x-www-form-urlencoded", "x-forwarded-for": ip},
                       auth=("billing", fleet.secret), timeout=10)
    assert (twice.status_code, twice.json()["error"]) == (400, "invalid_request")
    as_json = httpx.post(fleet.a.url + "/oauth/token", json={"grant_type": "client_credentials"},
                         headers={"x-forwarded-for": ip}, auth=("billing", fleet.secret), timeout=10)
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")


def test_expired_token_is_inactive(fleet: Fleet) -> None:
    """A token signed with the server's own current key is active while valid and inactive
    once expired: minted here with the key read from the shared store (and the pepper)."""
    from datetime import UTC, datetime

    from bastion.config import load_config
    from bastion.oauth.keys import KeySet, load_key
    from bastion.oauth.sqlstore import SqlOAuthStore
    from bastion.store import open_store

    ip = "198.51.100.7"
    cfg = load_config(fleet.config).config
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BASTION_PEPPER", PEPPER)
        store = SqlOAuthStore(open_store(cfg.store, cfg.consumers))
        try:
            keys = KeySet([load_key(k, store.pepper) for k in store.signing_keys()])
        finally:
            store.close()
    key = keys.signing("ES256", datetime.now(UTC))
    assert key is not None
    now = int(time.time())

    def mint(exp: int) -> str:
        claims = {"iss": ISSUER, "sub": "billing-svc", "aud": ISSUER, "iat": now - 600, "exp": exp,
                  "jti": secrets.token_hex(8), "scope": "books:read", "client_id": "billing"}
        return jwt.encode(claims, key.private, algorithm="ES256", headers={"kid": key.kid})

    assert introspect(fleet.b, fleet, ip, mint(now + 60))["active"] is True
    assert introspect(fleet.b, fleet, ip, mint(now - 120)) == {"active": False}


def test_failed_client_authentications_are_limited_across_instances(fleet: Fleet) -> None:
    """After FAILURES wrong secrets (spread over both instances) the client id is refused
    with 429 and Retry-After, even with the right secret, on either instance; the count
    lives in the shared Redis."""
    created = fleet.cli("oauth", "clients", "create", "target", "--consumer", "billing-svc", "--scopes", "books:read")
    assert created.returncode == 0, created.stderr
    right = created.stdout.strip().splitlines()[-1]
    data = {"grant_type": "client_credentials"}
    for i in range(FAILURES):
        gw = fleet.a if i % 2 else fleet.b
        resp = post(gw, "/oauth/token", f"198.51.100.{20 + i}", data, auth=("target", "guess-" + str(i)))
        assert resp.status_code == 401
    for gw in (fleet.a, fleet.b):
        resp = post(gw, "/oauth/token", "198.51.100.30", data, auth=("target", right))
        assert resp.status_code == 429
        assert resp.json()["error"] == "temporarily_unavailable"
        assert int(resp.headers["retry-after"]) > 0


def test_client_revoked_with_the_cli_gets_no_token(fleet: Fleet) -> None:
    """`bastion oauth clients revoke` ends a client: its secret no longer gets a token
    (invalid_client), and tokens it got before introspect as inactive."""
    created = fleet.cli("oauth", "clients", "create", "leaving", "--consumer", "billing-svc")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    ip = "198.51.100.8"
    before = post(fleet.a, "/oauth/token", ip, {"grant_type": "client_credentials"}, auth=("leaving", secret))
    assert before.status_code == 200, before.text
    tok = before.json()["access_token"]
    assert fleet.cli("oauth", "clients", "revoke", "leaving").returncode == 0
    after = post(fleet.b, "/oauth/token", ip, {"grant_type": "client_credentials"}, auth=("leaving", secret))
    assert after.status_code == 401
    assert introspect(fleet.a, fleet, ip, tok) == {"active": False}
