"""TLS contexts and self-signed certificates, exercised with real handshakes over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import stat
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from bastion.certs import generate_self_signed
from bastion.proxy.tls import client_context, server_context
from bastion.proxy.tlsgroups import set_groups

REFUSED = (ssl.SSLError, ConnectionError)


@dataclass
class Pki:
    """A server certificate and, separately, a client certificate (each its own CA)."""

    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """Fresh certificates in a temporary directory."""
    paths = Pki(
        tmp_path / "server.pem",
        tmp_path / "server.key",
        tmp_path / "client.pem",
        tmp_path / "client.key",
    )
    generate_self_signed(paths.server_cert, paths.server_key)
    generate_self_signed(paths.client_cert, paths.client_key, hosts=["bastion-client"], client_auth=True)
    return paths


@dataclass
class Result:
    reply: bytes
    version: str | None
    cipher: str | None
    alpn: str | None
    compression: str | None
    #: The client certificates the server saw, as ssl's peercert dicts.
    peers: list[Any] = field(default_factory=list)


async def _exchange(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str
) -> Result:
    peers: list[Any] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peercert"))
        try:
            writer.write((await reader.readline()).upper())
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(*REFUSED):
                await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=hostname
        )
        try:
            tls = writer.get_extra_info("ssl_object")
            writer.write(b"ping\n")
            await writer.drain()
            reply = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(*REFUSED):
                await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    if not reply:
        # TLS 1.3 finishes the client's side of the handshake before the server has judged
        # the client's certificate; a refusal then shows as a close without an answer.
        raise ConnectionError("the server closed the connection without answering")
    cipher = tls.cipher()
    return Result(
        reply,
        tls.version(),
        cipher[0] if cipher else None,
        tls.selected_alpn_protocol(),
        tls.compression(),
        peers,
    )


def exchange(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str = "localhost"
) -> Result:
    """Run a TLS echo server with ``server_ctx`` and send it one line with ``client_ctx``."""
    return asyncio.run(asyncio.wait_for(_exchange(server_ctx, client_ctx, hostname), 10))


def legacy_context(purpose: ssl._SSLMethod, max_version: ssl.TLSVersion) -> ssl.SSLContext:
    """A context that still speaks TLS 1.0/1.1 and old suites, to prove refusals are ours."""
    ctx = ssl.SSLContext(purpose)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        # Naming TLS 1.0/1.1 is deprecated; that is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = max_version
    return ctx


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_client_trusting_the_certificate_connects(pki: Pki, hostname: str) -> None:
    """A client whose CA is the generated certificate completes a TLS 1.3 handshake to the
    name or the IP address in its SANs, gets ALPN http/1.1 and no compression, and data
    flows both ways."""
    result = exchange(
        server_context(pki.server_cert, pki.server_key),
        client_context(ca=pki.server_cert),
        hostname,
    )
    assert result.reply == b"PING\n"
    assert result.version == "TLSv1.3"
    assert result.alpn == "http/1.1"
    assert result.compression is None
    assert result.peers == [None]  # no client certificate asked for


def test_tls12_negotiates_only_ecdhe_aead_suites(pki: Pki) -> None:
    """Every TLS 1.2 suite the server enables is ECDHE with an AEAD cipher, and a TLS 1.2
    client ends up on one of them."""
    ctx = server_context(pki.server_cert, pki.server_key)
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    for suite in tls12:
        assert suite["aead"], suite["name"]
        assert suite["kea"] == "kx-ecdhe", suite["name"]
    client = client_context(ca=pki.server_cert)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    result = exchange(ctx, client)
    assert result.version == "TLSv1.2"
    assert result.cipher is not None and result.cipher.startswith("ECDHE-")
    assert "GCM" in result.cipher or "CHACHA20" in result.cipher


def test_contexts_refuse_compression_and_renegotiation(pki: Pki) -> None:
    """Both contexts carry the options that turn off TLS compression and renegotiation and
    allow nothing older than TLS 1.2."""
    contexts = [
        server_context(pki.server_cert, pki.server_key),
        client_context(ca=pki.server_cert),
    ]
    for ctx in contexts:
        assert ctx.options & ssl.OP_NO_COMPRESSION
        assert ctx.options & ssl.OP_NO_RENEGOTIATION
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_tls11_client_is_refused(pki: Pki) -> None:
    """A client that offers at most TLS 1.1 is refused, though it can talk to a server that
    still allows TLS 1.1 (so the refusal is the server context's doing)."""
    client = legacy_context(ssl.PROTOCOL_TLS_CLIENT, ssl.TLSVersion.TLSv1_1)
    client.load_verify_locations(pki.server_cert)
    old_server = legacy_context(ssl.PROTOCOL_TLS_SERVER, ssl.TLSVersion.TLSv1_3)
    old_server.load_cert_chain(pki.server_cert, pki.server_key)
    assert exchange(old_server, client).version == "TLSv1.1"

    with pytest.raises(REFUSED):
        exchange(server_context(pki.server_cert, pki.server_key), client)


def test_non_aead_tls12_client_is_refused(pki: Pki) -> None:
    """A TLS 1.2 client that offers only CBC suites is refused, though a permissive server
    would accept it."""
    client = client_context(ca=pki.server_cert)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA")
    old_server = legacy_context(ssl.PROTOCOL_TLS_SERVER, ssl.TLSVersion.TLSv1_3)
    old_server.load_cert_chain(pki.server_cert, pki.server_key)
    assert exchange(old_server, client).reply == b"PING\n"

    with pytest.raises(REFUSED):
        exchange(server_context(pki.server_cert, pki.server_key), client)


def test_min_version_13_refuses_tls12(pki: Pki) -> None:
    """With min_version="1.3" a TLS 1.2 client is refused and a TLS 1.3 one accepted."""
    ctx = server_context(pki.server_cert, pki.server_key, min_version="1.3")
    client = client_context(ca=pki.server_cert)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(REFUSED):
        exchange(ctx, client)
    assert exchange(ctx, client_context(ca=pki.server_cert)).version == "TLSv1.3"


def test_client_that_does_not_trust_the_ca_fails_verification(pki: Pki) -> None:
    """A client trusting another CA, or only the system CAs, rejects the self-signed server
    certificate."""
    ctx = server_context(pki.server_cert, pki.server_key)
    for client in (client_context(ca=pki.client_cert), client_context()):
        with pytest.raises(ssl.SSLCertVerificationError):
            exchange(ctx, client)


def test_client_checks_the_host_name(pki: Pki) -> None:
    """A trusted certificate for other names is rejected, unless verification is off."""
    ctx = server_context(pki.server_cert, pki.server_key)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        exchange(ctx, client_context(ca=pki.server_cert), "api.example.com")
    assert exchange(ctx, client_context(verify=False), "api.example.com").reply == b"PING\n"


def test_generated_certificate_passes_strict_x509_checks(pki: Pki) -> None:
    """The certificate is accepted under OpenSSL's strict X.509 checks (the default from
    Python 3.13 on), so it keeps working on newer Pythons."""
    client = client_context(ca=pki.server_cert)
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    assert exchange(server_context(pki.server_cert, pki.server_key), client).reply == b"PING\n"


def test_mtls_requires_a_certificate_from_the_client_ca(pki: Pki) -> None:
    """With client_ca set, a client without a certificate and a client whose certificate
    another CA issued are refused; a client with a certificate from client_ca gets through
    and the server sees who it is."""
    ctx = server_context(pki.server_cert, pki.server_key, client_ca=pki.client_cert)
    with pytest.raises(REFUSED):
        exchange(ctx, client_context(ca=pki.server_cert))
    stranger_cert, stranger_key = pki.server_cert.with_name("stranger.pem"), pki.server_key.with_name("stranger.key")
    generate_self_signed(stranger_cert, stranger_key, hosts=["bastion-client"], client_auth=True)
    stranger = client_context(ca=pki.server_cert, cert=stranger_cert, key=stranger_key)
    with pytest.raises(REFUSED):
        exchange(ctx, stranger)

    client = client_context(ca=pki.server_cert, cert=pki.client_cert, key=pki.client_key)
    result = exchange(ctx, client)
    assert result.reply == b"PING\n"
    subject = dict(item[0] for item in result.peers[0]["subject"])
    assert subject["commonName"] == "bastion-client"


def test_mtls_over_tls12_rejects_in_the_handshake(pki: Pki) -> None:
    """Over TLS 1.2 a client without a certificate fails during the handshake itself."""
    ctx = server_context(pki.server_cert, pki.server_key, client_ca=pki.client_cert)
    client = client_context(ca=pki.server_cert)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(REFUSED):
        exchange(ctx, client)


def test_server_context_names_the_bad_file(pki: Pki, tmp_path: Path) -> None:
    """A missing, unreadable, non-PEM, mismatched or encrypted file is a ValueError whose
    message names that file."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    missing = tmp_path / "missing.pem"
    cases: list[tuple[dict[str, Any], Path]] = [
        ({"cert": missing, "key": pki.server_key}, missing),
        ({"cert": pki.server_cert, "key": missing}, missing),
        ({"cert": tmp_path, "key": pki.server_key}, tmp_path),
        ({"cert": junk, "key": pki.server_key}, junk),
        ({"cert": pki.server_cert, "key": pki.client_key}, pki.client_key),
        ({"cert": pki.server_cert, "key": encrypted}, encrypted),
        ({"cert": pki.server_cert, "key": pki.server_key, "client_ca": junk}, junk),
        ({"cert": pki.server_cert, "key": pki.server_key, "client_ca": missing}, missing),
    ]
    for kwargs, culprit in cases:
        with pytest.raises(ValueError, match="TLS") as caught:
            server_context(**kwargs)
        assert str(culprit) in str(caught.value), kwargs


def test_client_context_names_the_bad_file(pki: Pki, tmp_path: Path) -> None:
    """client_context rejects a missing CA or client certificate by name, and a key given
    without its certificate."""
    missing = tmp_path / "ca.pem"
    with pytest.raises(ValueError, match=str(missing)):
        client_context(ca=missing)
    with pytest.raises(ValueError, match=str(missing)):
        client_context(ca=pki.server_cert, cert=missing, key=pki.client_key)
    with pytest.raises(ValueError, match="needs its certificate"):
        client_context(ca=pki.server_cert, key=pki.client_key)


def _extension(cert: x509.Certificate, kind: type[Any]) -> tuple[Any, bool]:
    ext = cert.extensions.get_extension_for_class(kind)
    return ext.value, ext.critical


def _assert_server_leaf(cert: x509.Certificate, issuer: x509.Certificate, *, client_auth: bool = False) -> None:
    """``cert`` is an end-entity server certificate issued by ``issuer`` (maybe itself)."""
    constraints, critical = _extension(cert, x509.BasicConstraints)
    assert critical and not constraints.ca and constraints.path_length is None
    usage, critical = _extension(cert, x509.KeyUsage)
    assert critical and usage.digital_signature
    assert not usage.key_cert_sign and not usage.crl_sign and not usage.key_encipherment
    eku, _ = _extension(cert, x509.ExtendedKeyUsage)
    expected = {ExtendedKeyUsageOID.SERVER_AUTH} | ({ExtendedKeyUsageOID.CLIENT_AUTH} if client_auth else set())
    assert set(eku) == expected
    ski, _ = _extension(cert, x509.SubjectKeyIdentifier)
    assert ski.digest == x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    aki, _ = _extension(cert, x509.AuthorityKeyIdentifier)
    issuer_ski, _ = _extension(issuer, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == issuer_ski.digest
    assert cert.issuer == issuer.subject
    cert.verify_directly_issued_by(issuer)


def test_generated_certificate_contents(tmp_path: Path) -> None:
    """The certificate has a P-256 key, DNS and IP SANs for the given hosts, the requested
    validity, and is a self-signed end entity: CA:FALSE (critical), key usage
    digitalSignature only, extended key usage serverAuth, subject and authority key IDs."""
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "c.key"
    generate_self_signed(cert_path, key_path, hosts=["gw.internal", "::1", "10.1.2.3"], days=30)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["gw.internal"]
    assert sans.get_values_for_type(x509.IPAddress) == [ip_address("::1"), ip_address("10.1.2.3")]
    assert cert.subject == cert.issuer
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == timedelta(days=30)
    assert cert.not_valid_before_utc <= datetime.now(UTC) < cert.not_valid_after_utc
    _assert_server_leaf(cert, cert)
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert key.public_key() == public_key


def test_client_auth_certificate_also_allows_client_use(tmp_path: Path) -> None:
    """With client_auth the leaf's extended key usage is serverAuth and clientAuth, for an
    mTLS client certificate; it stays an end entity."""
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "c.key"
    generate_self_signed(cert_path, key_path, hosts=["bastion-client"], client_auth=True)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    _assert_server_leaf(cert, cert, client_auth=True)


def test_ca_issued_leaf_contents_and_no_ca_key(tmp_path: Path) -> None:
    """With ca_path the leaf is issued by a throwaway CA written there (CA:TRUE with path
    length 0, keyCertSign), the leaf names the CA's key as its authority key, and the CA's
    private key is written nowhere: only the three requested files exist."""
    cert_path, key_path, ca_path = tmp_path / "c.pem", tmp_path / "c.key", tmp_path / "ca.pem"
    generate_self_signed(cert_path, key_path, hosts=["localhost", "127.0.0.1"], ca_path=ca_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    _assert_server_leaf(cert, ca)
    assert cert.subject != ca.subject
    constraints, critical = _extension(ca, x509.BasicConstraints)
    assert critical and constraints.ca and constraints.path_length == 0
    usage, _ = _extension(ca, x509.KeyUsage)
    assert usage.key_cert_sign
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.key", "c.pem", "ca.pem"]
    assert b"PRIVATE KEY" not in cert_path.read_bytes() + ca_path.read_bytes()
    assert stat.S_IMODE(ca_path.stat().st_mode) == 0o644


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
@pytest.mark.parametrize("with_ca", [False, True])
def test_leaf_verifies_in_a_real_handshake(tmp_path: Path, hostname: str, with_ca: bool) -> None:
    """A client that checks host names and applies strict X.509 rules completes the
    handshake trusting the CA file (with ca_path) or the self-signed leaf itself (without),
    for the DNS name and for the IP address; it fails for a name not in the SANs."""
    cert_path, key_path, ca_path = tmp_path / "c.pem", tmp_path / "c.key", tmp_path / "ca.pem"
    generate_self_signed(cert_path, key_path, ca_path=ca_path if with_ca else None)
    trust = ca_path if with_ca else cert_path
    client = client_context(ca=trust)
    assert client.check_hostname
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    server = server_context(cert_path, key_path)
    assert exchange(server, client, hostname).reply == b"PING\n"
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        exchange(server, client, "other.example")


def test_same_file_for_two_outputs_is_refused(tmp_path: Path) -> None:
    """The CA file cannot be the certificate or key file (one would overwrite the other)."""
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "c.key"
    with pytest.raises(ValueError, match="different files"):
        generate_self_signed(cert_path, key_path, ca_path=cert_path)
    assert list(tmp_path.iterdir()) == []


def test_key_file_is_private(tmp_path: Path) -> None:
    """The key file is created with mode 0600 and the certificate with 0644."""
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "c.key"
    generate_self_signed(cert_path, key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644


def test_existing_files_are_not_overwritten(tmp_path: Path) -> None:
    """Existing files raise FileExistsError and stay untouched; overwrite=True replaces both
    and makes a previously world-readable key file private again."""
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "c.key"
    generate_self_signed(cert_path, key_path)
    before = (cert_path.read_bytes(), key_path.read_bytes())
    for existing in (cert_path, key_path):
        other = tmp_path / "other"
        args = (existing, other) if existing == cert_path else (other, existing)
        with pytest.raises(FileExistsError, match=str(existing)):
            generate_self_signed(*args)
        assert not other.exists()
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before

    key_path.chmod(0o644)
    generate_self_signed(cert_path, key_path, overwrite=True)
    assert (cert_path.read_bytes(), key_path.read_bytes()) != before
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_generate_rejects_bad_arguments(tmp_path: Path) -> None:
    """No hosts or a non-positive lifetime is a ValueError and writes nothing."""
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "c.key"
    with pytest.raises(ValueError, match="host"):
        generate_self_signed(cert_path, key_path, hosts=[])
    with pytest.raises(ValueError, match="days"):
        generate_self_signed(cert_path, key_path, days=0)
    assert list(tmp_path.iterdir()) == []


def _client_with_group(pki: Pki, group: str) -> ssl.SSLContext:
    """A TLS 1.3 client that offers only ``group`` for key exchange (``set_ecdh_curve``
    sets the client's whole group list with OpenSSL 3). TLS 1.3, because in TLS 1.2 the
    group list also limits the curve of the server's ECDSA key (P-256 here)."""
    client = client_context(ca=pki.server_cert)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    client.set_ecdh_curve(group)
    return client


@pytest.mark.parametrize("group", ["X25519", "prime256v1", "secp384r1"])
def test_mozilla_intermediate_groups_are_accepted(pki: Pki, group: str) -> None:
    """A client offering only X25519, P-256 or P-384 completes the handshake."""
    result = exchange(server_context(pki.server_cert, pki.server_key), _client_with_group(pki, group))
    assert result.reply == b"PING\n"
    assert result.version == "TLSv1.3"


@pytest.mark.parametrize("group", ["secp521r1", "X448"])
def test_other_groups_are_refused(pki: Pki, group: str) -> None:
    """A client offering only P-521 or X448 (OpenSSL's defaults, not Mozilla
    intermediate's) is refused, though a server with OpenSSL's default groups accepts it
    (so the refusal is the listener's group list)."""
    client = _client_with_group(pki, group)
    default_server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    default_server.load_cert_chain(pki.server_cert, pki.server_key)
    assert exchange(default_server, client).reply == b"PING\n"
    with pytest.raises(REFUSED):
        exchange(server_context(pki.server_cert, pki.server_key), client)


def test_groups_are_set_without_a_warning(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    """On this Python and OpenSSL the group list is applied (no fallback warning)."""
    with caplog.at_level("WARNING", logger="bastion.tls"):
        server_context(pki.server_cert, pki.server_key)
    assert not caplog.records


def test_unknown_group_name_is_refused_by_openssl(pki: Pki) -> None:
    """set_groups hands the list to OpenSSL itself: a name OpenSSL does not know is a
    ValueError naming the list, not silently ignored."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ValueError, match="no-such-group"):
        set_groups(ctx, ["X25519", "no-such-group"])


def test_groups_are_set_beside_another_bundled_openssl() -> None:
    """With another libssl in the process (libmodsecurity's wheel bundles OpenSSL 1.1, and
    is loaded before the listener's context is made), the groups are still set, on the
    OpenSSL the ssl module uses: the other copy is never picked."""
    pytest.importorskip("libmodsecurity")
    script = (
        "import ssl, libmodsecurity\n"
        "from bastion.proxy.tlsgroups import set_groups\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(len({l.split()[-1] for l in maps.splitlines() if '/libssl' in l}))\n"
        "print(set_groups(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ['X25519', 'prime256v1']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    copies, applied = result.stdout.split()
    assert int(copies) >= 2  # the situation this test is about
    assert applied == "True"
