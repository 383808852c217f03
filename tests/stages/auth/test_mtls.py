"""Client certificates mapped to consumers (``mtls.py``) and the stage's mutualTLS schemes.

The certificates here are :class:`ClientCertificate` values as the proxy reads them; real
TLS handshakes are in ``tests/proxy/test_auth_mtls.py``.
"""

from __future__ import annotations

from typing import Any

from bastion.services import Clock
from bastion.stages.auth import AuthConfig, AuthStage
from bastion.stages.auth.dispatch import Verifiers, compile_verifiers
from bastion.stages.auth.mtls import (
    CERT_AMBIGUOUS,
    CERT_UNKNOWN,
    STORE_UNAVAILABLE,
    CertificateSnapshot,
    CertificateVerifier,
    build_map,
)
from bastion.types import Block, ClientCertificate, Exchange, Principal, Request

from .test_stage import route

FP = "ab" * 32


class StoppedClock(Clock):
    """Monotonic time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def rows(*consumers: tuple[str, list[dict[str, str]]]) -> Any:
    return [(f"id-{name}", name, ["user"], ["10.0.0.0/8"], [], certs) for name, certs in consumers]


def cert(fingerprint: str = "00" * 32, subject: str = "CN=nobody", sans: tuple[str, ...] = ()) -> ClientCertificate:
    return ClientCertificate(fingerprint, subject, sans)


def test_matchers_in_the_forms_people_write_them() -> None:
    """A fingerprint matches with or without colons, in either case; a DNS SAN without case;
    an IP SAN in any spelling of the address; a URI SAN only exactly; the principal carries
    the consumer's id, roles and networks, and names the matcher (not a secret)."""
    table = build_map(rows(
        ("alice", [{"fingerprint": "sha256:" + ":".join(["AB"] * 32)}]),
        ("robot", [{"san": "Robot.Internal"}]),
        ("node", [{"san": "2001:DB8::0:1"}]),
        ("spiffe", [{"san": "spiffe://Example/svc"}]),
    ))
    alice = table.lookup(cert(FP))
    assert isinstance(alice, Principal)
    assert (alice.consumer_id, alice.credential_id, alice.roles) == ("id-alice", "cert:" + FP[:16], {"user"})
    assert [str(n) for n in alice.ip_allow] == ["10.0.0.0/8"]
    assert getattr(table.lookup(cert(sans=("robot.internal",))), "consumer_name", None) == "robot"
    assert getattr(table.lookup(cert(sans=("2001:db8::1",))), "consumer_name", None) == "node"
    assert getattr(table.lookup(cert(sans=("spiffe://Example/svc",))), "consumer_name", None) == "spiffe"
    assert table.lookup(cert(sans=("spiffe://example/svc",))) is CERT_UNKNOWN


def test_the_most_specific_matcher_wins_and_ambiguity_identifies_nobody() -> None:
    """Fingerprint before subject before SANs; a matcher two consumers claim, or SANs naming
    two consumers, identify nobody (fail closed, never the first one found)."""
    table = build_map(rows(
        ("alice", [{"fingerprint": "sha256:" + FP}]),
        ("svc", [{"subject": "CN=svc,O=Example"}]),
        ("a", [{"san": "a.internal"}, {"san": "shared.internal"}]),
        ("b", [{"san": "b.internal"}, {"san": "shared.internal"}]),
    ))
    both = cert(FP, "CN=svc,O=Example", ("a.internal",))
    assert getattr(table.lookup(both), "consumer_name", None) == "alice"
    assert getattr(table.lookup(cert(subject="CN=svc,O=Example", sans=("a.internal",))), "consumer_name", None) == "svc"
    assert table.lookup(cert(sans=("shared.internal",))) is CERT_AMBIGUOUS
    assert table.lookup(cert(sans=("a.internal", "b.internal"))) is CERT_AMBIGUOUS
    assert table.lookup(cert(subject="O=Example,CN=svc")) is CERT_UNKNOWN  # RFC 4514 order only


def test_a_map_never_loaded_or_stale_fails_closed() -> None:
    """Before the store answered once, and once it has not answered for longer than the
    limit, every certificate gets 503, not a verdict that could miss a change."""
    verifier = CertificateVerifier(max_staleness=30)
    assert verifier.verify_certificate(cert(FP)) is STORE_UNAVAILABLE  # not started
    clock = StoppedClock()
    snapshot = CertificateSnapshot(None, clock)  # type: ignore[arg-type]
    snapshot.map = build_map(rows(("alice", [{"fingerprint": "sha256:" + FP}])))
    verifier.snapshot = snapshot
    assert verifier.verify_certificate(cert(FP)) is STORE_UNAVAILABLE  # never loaded
    snapshot.loaded_at = clock.now
    assert isinstance(verifier.verify_certificate(cert(FP)), Principal)
    clock.now += 31
    assert verifier.verify_certificate(cert(FP)) is STORE_UNAVAILABLE


def test_a_mutual_tls_route_verifies_the_connection_certificate() -> None:
    """With the certificate verifier, a mutualTLS-only route is no longer refused at load:
    a request without a client certificate gets the 401 of no credential, one with a mapped
    certificate is signed in as its consumer, an unmapped one gets 401 invalid_token; a route
    without mutualTLS does not keep (or start) the verifier."""
    verifier = CertificateVerifier()
    snapshot = CertificateSnapshot(None, Clock())  # type: ignore[arg-type]
    snapshot.map = build_map(rows(("alice", [{"fingerprint": "sha256:" + FP}])))
    snapshot.loaded_at = snapshot.clock.monotonic()
    verifier.snapshot = snapshot
    stage = AuthStage(AuthConfig(), route([{"mtls": []}]), Verifiers(mtls=verifier))
    assert stage.refusal is None and stage.summary == "client certificate (mTLS)"

    def decide(client_cert: ClientCertificate | None) -> tuple[Any, Exchange]:
        ex = Exchange(Request("GET", "/orders", "/orders", "", []), "r1")
        ex.client_cert = client_cert
        return stage.on_request_head(ex), ex

    missing, _ = decide(None)
    assert isinstance(missing, Block) and (missing.status, missing.reason) == (401, "auth.missing")
    ok, ex = decide(cert(FP))
    assert ok is None and ex.principal is not None and ex.principal.consumer_name == "alice"
    unknown, _ = decide(cert())
    assert isinstance(unknown, Block) and (unknown.status, unknown.reason) == (401, "auth.cert_unknown")
    assert 'error="invalid_token"' in dict(unknown.headers)["www-authenticate"]
    keyed = AuthStage(AuthConfig(), route([{"apiKey": []}]), compile_verifiers(AuthConfig(), route([{"apiKey": []}])))
    assert keyed.verifiers.mtls is None
