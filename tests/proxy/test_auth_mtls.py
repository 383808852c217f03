"""mTLS through a real gateway (``bastion serve``): client certificates verified by TLS,
mapped to consumers by their ``certificates`` matchers, over real TLS connections.

A CA, the gateway's certificate and client certificates are made here with cryptography;
the clients are Python ssl sockets presenting them. The consumers are declared in the
configuration and read by the gateway from its store (SQLite beside the config).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.testing import GatewayProcess

from .conftest import SHARED_UPSTREAM
from .scripted import ScriptedUpstream

OPENAPI = """\
openapi: 3.1.0
info: {title: shop, version: "1"}
paths:
  /cert:
    get:
      operationId: cert
      security: [{mtls: []}]
      responses: {"200": {description: ok}}
  /cert-or-key:
    get:
      operationId: certOrKey
      security: [{mtls: []}, {apiKey: []}]
      responses: {"200": {description: ok}}
  /token:
    get:
      operationId: token
      security: [{bearerAuth: []}]
      responses: {"200": {description: ok}}
components:
  securitySchemes:
    apiKey: {type: apiKey, in: header, name: X-API-Key}
    bearerAuth: {type: http, scheme: bearer, bearerFormat: JWT}
    mtls: {type: mutualTLS}
"""


@dataclass
class Issued:
    cert: Path
    key: Path
    fingerprint: str


class Ca:
    """A throwaway CA that issues certificates into ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
        now = datetime.now(UTC) - timedelta(minutes=5)
        self.cert = (
            x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.path = folder / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem: str, subject: list[tuple[x509.ObjectIdentifier, str]],
              sans: list[x509.GeneralName], usage: x509.ObjectIdentifier) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC) - timedelta(minutes=5)
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(o, v) for o, v in subject]))
            .issuer_name(self.name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        paths = Issued(self.folder / f"{stem}.pem", self.folder / f"{stem}.key",
                       hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest())
        paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
        return paths


def client(stem: str, ca: Ca, cn: str, *sans: x509.GeneralName, org: str | None = None) -> Issued:
    # Most general first, as CAs write names: RFC 4514 prints them the other way round.
    subject = ([(NameOID.ORGANIZATION_NAME, org)] if org else []) + [(NameOID.COMMON_NAME, cn)]
    return ca.issue(stem, subject, list(sans), ExtendedKeyUsageOID.CLIENT_AUTH)


ISSUER = "https://idp.test"


@dataclass
class Mtls:
    gw: GatewayProcess
    ca: Ca
    certs: dict[str, Issued]
    #: The identity provider's signing key (its public key is the issuer's static key).
    idp: ec.EllipticCurvePrivateKey

    def token(self, bound_to: str | None = None) -> str:
        """A JWT of the issuer, bound (RFC 8705) to ``bound_to``'s certificate if given."""
        now = int(time.time())
        claims: dict[str, Any] = {"iss": ISSUER, "aud": "shop", "sub": "carol", "iat": now, "exp": now + 300}
        if bound_to is not None:
            digest = bytes.fromhex(self.certs[bound_to].fingerprint)
            claims["cnf"] = {"x5t#S256": base64.urlsafe_b64encode(digest).rstrip(b"=").decode()}
        return jwt.encode(claims, self.idp, algorithm="ES256")

    def get(self, who: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
        """GET ``path`` over a new TLS connection presenting ``who``'s certificate: the
        status, the JSON body and the request id."""
        ctx = ssl.create_default_context(cafile=str(self.ca.path))
        issued = self.certs[who]
        ctx.load_cert_chain(issued.cert, issued.key)
        conn = http.client.HTTPSConnection("127.0.0.1", self.gw.port, context=ctx, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}"), resp.getheader("x-request-id") or ""
        finally:
            conn.close()

    def record(self, request_id: str) -> dict[str, Any]:
        for _ in range(100):  # the access log is written in batches
            for line in (self.gw.folder / "access.log").read_text().splitlines():
                found = json.loads(line)
                if found["request_id"] == request_id:
                    return found
            time.sleep(0.05)
        raise AssertionError(f"no access record for {request_id}")


@pytest.fixture(scope="module")
def mtls(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mtls]:
    folder = tmp_path_factory.mktemp("mtls")
    ca = Ca(folder)
    server = ca.issue("server", [(NameOID.COMMON_NAME, "127.0.0.1")],
                      [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], ExtendedKeyUsageOID.SERVER_AUTH)
    dns = x509.DNSName
    certs = {
        "alice": client("alice", ca, "alice-laptop"),
        "svc": client("svc", ca, "svc", org="Example"),
        "robot": client("robot", ca, "robot", dns("robot.internal")),
        "twins": client("twins", ca, "twins", dns("shared.internal")),
        "stranger": client("stranger", ca, "stranger", dns("stranger.internal")),
    }
    idp = ec.generate_private_key(ec.SECP256R1())
    idp_pem = idp.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    fp = certs["alice"].fingerprint.upper()
    # Written as `openssl x509 -fingerprint -sha256` prints it: upper case, colons.
    alice_fingerprint = "sha256:" + ":".join(fp[i:i + 2] for i in range(0, 64, 2))
    config = {
        "listen": {"host": "127.0.0.1", "tls": {"cert": str(server.cert), "key": str(server.key),
                                                 "client_ca": str(ca.path)}},
        "access_log": {"path": "access.log"},
        "policies": {"auth": {"jwt": {"issuers": [
            {"issuer": ISSUER, "keys": [idp_pem], "audiences": ["shop"], "algorithms": ["ES256"]}
        ]}}},
        "consumers": [
            {"name": "alice", "certificates": [{"fingerprint": alice_fingerprint}]},
            {"name": "svc", "certificates": [{"subject": "CN=svc,O=Example"}]},
            {"name": "robot", "certificates": [{"san": "Robot.Internal"}]},
            {"name": "dave", "certificates": [{"san": "shared.internal"}]},
            {"name": "erin", "certificates": [{"san": "shared.internal"}]},
        ],
        "services": [{"name": "shop", "upstream": {"targets": [upstream.url], **SHARED_UPSTREAM},
                      "openapi": "shop.yaml"}],
    }
    with GatewayProcess(config, folder=folder, files={"shop.yaml": OPENAPI}) as gw:
        yield Mtls(gw, ca, certs, idp)


def test_a_certificate_maps_to_its_consumer_by_fingerprint_subject_or_san(
    mtls: Mtls, upstream: ScriptedUpstream, token: str
) -> None:
    """On an operation that takes only mutualTLS, each client's certificate proves the
    consumer whose matcher names it: a fingerprint (written with colons, in upper case), the
    subject (RFC 4514), a DNS SAN (compared without case); three distinct consumers, recorded
    with the matcher that proved them; the upstream gets the requests."""
    seen = {}
    for who, credential in (
        ("alice", "cert:" + mtls.certs["alice"].fingerprint[:16]),
        ("svc", "cert:CN=svc,O=Example"),
        ("robot", "cert:Robot.Internal"),
    ):
        status, body, request_id = mtls.get(who, f"/cert?{token}")
        assert status == 200, body
        record = mtls.record(request_id)
        assert record["credential"] == credential
        seen[who] = record["consumer"]
    assert len(set(seen.values())) == 3
    assert len(upstream.records(token)) == 3


def test_an_unmapped_or_ambiguous_certificate_is_a_401(mtls: Mtls, upstream: ScriptedUpstream, token: str) -> None:
    """A certificate the CA issued but no consumer names, and one whose SAN two consumers
    claim, prove nobody: 401 problem+json (the same body), recorded with distinct reasons,
    never forwarded."""
    answers = []
    for who, reason in (("stranger", "auth.cert_unknown"), ("twins", "auth.cert_ambiguous")):
        status, body, _ = mtls.get(who, f"/cert?{token}")
        assert status == 401
        record = mtls.record(body["request_id"])
        assert (record["blocked_by"], record["decisions"][0]["reason"]) == ("auth", reason)
        answers.append({k: v for k, v in body.items() if k != "request_id"})
    assert answers[0] == answers[1]
    assert not upstream.saw(token)


def test_a_certificate_and_a_key_prove_the_same_consumer(mtls: Mtls, upstream: ScriptedUpstream, token: str) -> None:
    """The certificate map comes from the store, so alice's certificate proves the very
    consumer (same id) her API key proves; an unmapped certificate with her key passes by
    the key (the other alternative), and the key is not forwarded."""
    made = subprocess.run([sys.executable, "-m", "bastion", "keys", "create", "alice", "-c", "bastion.yaml"],
                          cwd=mtls.gw.folder, capture_output=True, text=True, timeout=60, check=True)
    key = made.stdout.strip().splitlines()[-1]
    for _ in range(100):  # the gateway's key snapshot polls the store about every second
        status, body, request_id = mtls.get("stranger", f"/cert-or-key?{token}", {"X-API-Key": key})
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200, body
    by_key = mtls.record(request_id)
    status, _, request_id = mtls.get("alice", f"/cert-or-key?{token}")
    assert status == 200
    by_cert = mtls.record(request_id)
    assert by_key["consumer"] == by_cert["consumer"]
    assert by_key["credential"] != by_cert["credential"]
    assert all(r.header("x-api-key") is None for r in upstream.records(token))


def test_a_certificate_bound_token_works_only_with_its_certificate(
    mtls: Mtls, upstream: ScriptedUpstream, token: str
) -> None:
    """RFC 8705: a JWT whose `cnf.x5t#S256` is alice's certificate's thumbprint passes on
    a connection presenting that certificate, and is refused 401 invalid_token
    (`auth.cert_binding`) on one presenting another (a stolen token is useless), also once
    the token is in the verified cache; an unbound token passes with any certificate."""
    bound = mtls.token(bound_to="alice")
    auth = {"Authorization": f"Bearer {bound}"}
    assert mtls.get("alice", f"/token?{token}&n=1", auth)[0] == 200
    status, body, _ = mtls.get("robot", f"/token?{token}&n=2", auth)
    assert status == 401
    assert mtls.record(body["request_id"])["decisions"][0]["reason"] == "auth.cert_binding"
    assert mtls.get("alice", f"/token?{token}&n=3", auth)[0] == 200
    assert mtls.get("robot", f"/token?{token}&n=4", {"Authorization": f"Bearer {mtls.token()}"})[0] == 200
    assert sorted(r.target[-1] for r in upstream.records(token)) == ["1", "3", "4"]


def test_a_certificate_mapped_with_the_cli_is_accepted_within_the_poll_interval(
    mtls: Mtls, upstream: ScriptedUpstream, token: str
) -> None:
    """A new client certificate (issued by the CA, named by no consumer) is 401; once
    `bastion consumers certs add` maps its SAN to a consumer made with `bastion consumers
    create`, the running gateway accepts it as that consumer at its next poll of the store
    (1 s; waited for up to 10 s here, never timed); after `certs remove`, it is 401 again."""
    mtls.certs["newcomer"] = client("newcomer", mtls.ca, "newcomer", x509.DNSName("newcomer.internal"))
    assert mtls.get("newcomer", f"/cert?{token}")[0] == 401

    def cli(*args: str) -> None:
        result = subprocess.run([sys.executable, "-m", "bastion", "consumers", *args, "-c",
                                 str(mtls.gw.config_path)], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr

    def wait_for(status: int) -> tuple[int, dict[str, Any], str]:
        answer = mtls.get("newcomer", f"/cert?{token}")
        for _ in range(100):
            if answer[0] == status:
                break
            time.sleep(0.1)
            answer = mtls.get("newcomer", f"/cert?{token}")
        return answer

    cli("create", "newcomer")
    cli("certs", "add", "newcomer", "--san", "NewComer.internal")
    status, body, request_id = wait_for(200)
    assert status == 200, body
    record = mtls.record(request_id)
    assert record["credential"] == "cert:NewComer.internal"
    cli("certs", "remove", "newcomer", "--san", "newcomer.internal")
    assert wait_for(401)[0] == 401
