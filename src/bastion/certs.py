"""Self-signed certificates, for trying Bastion's TLS listener and for tests."""

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


def generate_self_signed(
    cert_path: Path,
    key_path: Path,
    *,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 365,
    overwrite: bool = False,
) -> None:
    """Write a new EC P-256 key and a self-signed certificate for ``hosts``, both as PEM.

    Each host becomes a subject alternative name (an IP address or a DNS name); the first
    is also the common name. The certificate is its own CA, so a client trusts it by using
    the certificate file as its CA file, and it serves both as a server and as a client
    (mTLS) certificate. The key file is readable by its owner only (mode 0600). Existing
    files are left alone and ``FileExistsError`` is raised unless ``overwrite`` is true.
    """
    if not hosts:
        raise ValueError("a certificate needs at least one host name or address")
    if days < 1:
        raise ValueError("days must be at least 1")
    if not overwrite:
        for path in (cert_path, key_path):
            if path.exists():
                raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])])
    # Back-dated a little so a client whose clock is slightly behind still accepts it.
    now = datetime.now(UTC) - timedelta(minutes=5)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        # Strict X.509 verification (OpenSSL's X509_STRICT, Python 3.13's default) wants both.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, 0o600, overwrite)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644, overwrite)
