"""Local certificates (self-signed, or issued by a throwaway CA), for trying Bastion's TLS
listener and for tests."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _subject_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _write(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as handle:
        # An overwritten file keeps its old mode otherwise; a key must not stay readable.
        os.fchmod(handle.fileno(), mode)
        handle.write(data)


def _key_usage(*, sign_certs: bool) -> x509.KeyUsage:
    # An EC key signs (ECDHE handshakes); key encipherment is an RSA key-exchange usage.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certs,
        crl_sign=sign_certs,
        encipher_only=False,
        decipher_only=False,
    )


def _throwaway_ca(now: datetime, days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A CA key and self-signed CA certificate that may issue end-entity certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    # A unique name per CA: two throwaway CAs must never look like issuer and subject.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Bastion local CA {os.urandom(4).hex()}")])
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign_certs=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def generate_self_signed(
    cert_path: Path,
    key_path: Path,
    *,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 365,
    overwrite: bool = False,
    ca_path: Path | None = None,
    client_auth: bool = False,
) -> None:
    """Write a new EC P-256 key and a server (leaf) certificate for ``hosts``, both as PEM.

    Each host becomes a subject alternative name (an IP address or a DNS name); the first
    is also the common name. The certificate is an end entity (``CA:FALSE``, key usage
    digitalSignature, extended key usage serverAuth, plus clientAuth with ``client_auth``
    for an mTLS client certificate), so TLS scanners accept it as a server certificate.

    Without ``ca_path`` it is self-signed: a client trusts it by using the certificate file
    itself as its CA file. With ``ca_path`` a throwaway CA is made, its certificate written
    there, and the leaf issued by it: clients trust ``ca_path``. The CA's private key is
    never written, so nothing else can ever be issued under a CA someone was told to trust.

    The key file is readable by its owner only (mode 0600). Existing files are left alone
    and ``FileExistsError`` is raised unless ``overwrite`` is true.
    """
    if not hosts:
        raise ValueError("a certificate needs at least one host name or address")
    if days < 1:
        raise ValueError("days must be at least 1")
    outputs = (cert_path, key_path) if ca_path is None else (cert_path, key_path, ca_path)
    if len(set(outputs)) != len(outputs):
        raise ValueError("the certificate, key and CA files must be different files")
    if not overwrite:
        for path in outputs:
            if path.exists():
                raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")

    key = ec.generate_private_key(ec.SECP256R1())
    public_key = key.public_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])])
    # Back-dated a little so a client whose clock is slightly behind still accepts it.
    now = datetime.now(UTC) - timedelta(minutes=5)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH]
    if client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    ca: x509.Certificate | None = None
    if ca_path is None:
        signer: ec.EllipticCurvePrivateKey = key
        issuer, issuer_key = name, public_key
    else:
        signer, ca = _throwaway_ca(now, days)
        issuer, issuer_key = ca.subject, signer.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign_certs=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        # Strict X.509 verification (OpenSSL's X509_STRICT, Python 3.13's default) wants both.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False)
        .sign(signer, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, 0o600, overwrite)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644, overwrite)
    if ca_path is not None and ca is not None:
        _write(ca_path, ca.public_bytes(serialization.Encoding.PEM), 0o644, overwrite)
