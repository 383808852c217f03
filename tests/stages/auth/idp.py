"""A real identity provider for the JWT tests: keys generated here, a JWKS and an
introspection endpoint served by ``http.server`` on a free loopback port, tokens signed with
PyJWT (an implementation independent of the verifier under test)."""

from __future__ import annotations

import base64
import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bastion.services import Clock, Services, WorkerIdentity
from bastion.state.interface import StateBackend
from bastion.state.memory import MemoryBackend

ISSUER = "https://idp.test"
AUDIENCE = "books-api"
IDENTITY = WorkerIdentity("test", 0, 1, os.getpid())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    """A private key of the provider, its algorithm and kid."""

    alg: str
    kid: str
    private: Any

    @classmethod
    def generate(cls, alg: str, kid: str | None = None) -> SigningKey:
        private: Any
        if alg in ("RS256", "PS256"):
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)
        return cls(alg, kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", private)

    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(_jwk_json(self))
        data.update(kid=self.kid, use="sig", alg=self.alg)
        return data

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None, kid: str | None = "") -> str:
        head = {"kid": self.kid if kid == "" else kid, **(headers or {})}
        if head["kid"] is None:
            del head["kid"]
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=head)


def _jwk_json(key: SigningKey) -> str:
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    public = key.private.public_key()
    if key.alg in ("RS256", "PS256"):
        return RSAAlgorithm.to_jwk(public)
    if key.alg == "ES256":
        return ECAlgorithm.to_jwk(public)
    return OKPAlgorithm.to_jwk(public)


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for ISSUER/AUDIENCE, living 5 minutes from now."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "nbf": now, "exp": now + 300,
        "jti": uuid.uuid4().hex, "scope": "books:read books:write", "roles": ["user"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(claims_: dict[str, Any], secret: bytes, header: dict[str, Any] | None = None) -> str:
    """An HS256 token signed by hand (PyJWT refuses to use a PEM as an HMAC secret, which is
    exactly what an attacker does)."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", **(header or {})}).encode())
    body = b64url(json.dumps(claims_).encode())
    signature = hmac.digest(secret, f"{head}.{body}".encode(), "sha256")
    return f"{head}.{body}.{b64url(signature)}"


def unsigned(claims_: dict[str, Any], alg: str = "none") -> str:
    head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{head}.{b64url(json.dumps(claims_).encode())}."


@dataclass
class Provider:
    """What the endpoints serve; tests change it between requests."""

    keys: list[SigningKey] = field(default_factory=list)
    cache_control: str | None = "max-age=300"
    jwks_status: int = 200
    jwks_hits: int = 0
    #: token -> introspection answer; unknown tokens are inactive.
    introspection: dict[str, dict[str, Any]] = field(default_factory=dict)
    introspection_status: int = 200
    introspection_hits: int = 0
    client: tuple[str, str] = ("bastion", "introspection-secret-of-the-gateway")
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    provider: Provider

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        p = self.server.provider  # type: ignore[attr-defined]
        with p.lock:
            p.jwks_hits += 1
            status, cc = p.jwks_status, p.cache_control
            body = json.dumps({"keys": [k.jwk() for k in p.keys]}).encode()
        headers = {"content-type": "application/json"}
        if cc is not None:
            headers["cache-control"] = cc
        self._send(status, body if status == 200 else b"{}", headers)

    def do_POST(self) -> None:
        p = self.server.provider  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        expected = "Basic " + base64.b64encode(f"{p.client[0]}:{p.client[1]}".encode()).decode()
        with p.lock:
            p.introspection_hits += 1
            status = p.introspection_status
            answer = p.introspection.get(form.get("token", [""])[0], {"active": False})
        if self.headers.get("authorization") != expected:
            self._send(401, b'{"error": "invalid_client"}', {"content-type": "application/json"})
            return
        self._send(status, json.dumps(answer).encode(), {"content-type": "application/json"})


@contextmanager
def serve(provider: Provider) -> Iterator[str]:
    """Serve ``provider`` on a free loopback port; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.provider = provider  # type: ignore[attr-defined]
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class MovableClock(Clock):
    """Real time plus an offset a test moves forward (both clocks move together)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def wall(self) -> float:
        return time.time() + self.offset


def services(state: StateBackend | None = None, clock: Clock | None = None) -> Services:
    return Services(state if state is not None else MemoryBackend(), IDENTITY, clock or MovableClock())
