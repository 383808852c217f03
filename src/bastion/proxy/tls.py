"""TLS settings: the listener's (clients to Bastion) and the upstream side's (Bastion to
services). Both allow TLS 1.2 and 1.3 only and, for TLS 1.2, only forward-secret AEAD
cipher suites (TLS 1.3's suites all are)."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Literal

from bastion.proxy.tlsgroups import set_groups
from bastion.types import ClientCertificate

log = logging.getLogger("bastion.tls")

#: TLS 1.2 suites: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305, nothing else.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"
#: Key-exchange groups of the listener, Mozilla's "intermediate" list, in preference order.
#: OpenSSL's default also offers X448, P-521 and finite-field groups, which scanners flag
#: and no mainstream client needs.
SERVER_GROUPS = ("X25519", "prime256v1", "secp384r1")

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _readable(path: Path, what: str) -> None:
    # Opening it is the only reliable test (os.access lies for root and on some mounts).
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"TLS {what} file {path} cannot be read: {exc.strerror}") from None


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise ValueError("encrypted private keys are not supported")


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    _readable(cert, "certificate")
    if key is not None:
        _readable(key, "private key")
    try:
        ctx.load_cert_chain(cert, key, password=_no_password)
        return
    except ssl.SSLError as exc:
        # OpenSSL gives no reason for a file that is not PEM at all.
        reason = exc.reason or "not a PEM certificate chain and matching key"
    except ValueError as exc:  # raised by _no_password
        reason = str(exc)
    key_text = f" with private key {key}" if key is not None else ""
    raise ValueError(f"TLS certificate {cert}{key_text} cannot be used: {reason}")


def _load_ca(ctx: ssl.SSLContext, ca: Path, what: str) -> None:
    _readable(ca, what)
    try:
        ctx.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise ValueError(f"TLS {what} file {ca} cannot be used: {exc.reason or exc}") from None


def _harden(ctx: ssl.SSLContext, min_version: ssl.TLSVersion) -> None:
    ctx.minimum_version = min_version
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.set_alpn_protocols(["http/1.1"])


def server_context(
    cert: Path,
    key: Path,
    *,
    min_version: Literal["1.2", "1.3"] = "1.2",
    client_ca: Path | None = None,
) -> ssl.SSLContext:
    """An SSL context for Bastion's listener.

    It serves ``cert`` (a PEM chain, leaf first) with ``key``, speaks TLS ``min_version`` or
    newer, offers ALPN ``http/1.1``, refuses compression and renegotiation, prefers its
    own cipher order and does key exchange over :data:`SERVER_GROUPS` only. With
    ``client_ca`` every client must present a certificate issued by one of the CAs in that
    PEM file (mTLS). Raises ``ValueError`` naming the file when a
    file is missing, unreadable or not a usable certificate, key or CA bundle.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx, _VERSIONS[min_version])
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if not set_groups(ctx, SERVER_GROUPS):
        # Every group OpenSSL offers by default is sound; refusing to serve would be worse.
        log.warning(
            "TLS key-exchange groups could not be limited to %s with this Python and OpenSSL "
            "(%s); OpenSSL's default groups apply",
            ", ".join(SERVER_GROUPS),
            ssl.OPENSSL_VERSION,
        )
    _load_chain(ctx, cert, key)
    if client_ca is not None:
        _load_ca(ctx, client_ca, "client CA")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(
    *,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """An SSL context for connections from Bastion to an upstream.

    It verifies the upstream's certificate and host name, against the CAs in ``ca`` when
    given (and then only those) or the system's trusted CAs otherwise. ``verify=False``
    turns both checks off (for development only). ``cert`` and ``key`` are Bastion's client
    certificate for upstreams that require mTLS; ``key`` may be omitted when ``cert`` holds
    it too. Raises ``ValueError`` naming the file when a file is missing or unusable.
    """
    if key is not None and cert is None:
        raise ValueError("a TLS client key needs its certificate")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname check and CERT_REQUIRED on
    _harden(ctx, ssl.TLSVersion.TLSv1_2)
    if ca is not None:
        _load_ca(ctx, ca, "CA")
    elif verify:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        _load_chain(ctx, cert, key)
    return ctx


def client_certificate(ssl_object: ssl.SSLObject | None) -> ClientCertificate | None:
    """The certificate the client of a TLS connection presented (verified by the handshake,
    which ``client_ca`` makes require one), read once per connection; ``None`` without one."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    import hashlib

    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        try:
            names: x509.SubjectAlternativeName | None = cert.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value
        except x509.ExtensionNotFound:
            names = None
        subject = cert.subject.rfc4514_string()
    except ValueError as exc:
        # OpenSSL accepted what cryptography cannot read: the connection proves no identity.
        log.warning("a client certificate cannot be read (%s): treated as none", exc)
        return None
    sans: list[str] = []
    if names is not None:
        sans += [n.lower() for n in names.get_values_for_type(x509.DNSName)]
        sans += [n.lower() for n in names.get_values_for_type(x509.RFC822Name)]
        sans += names.get_values_for_type(x509.UniformResourceIdentifier)
        sans += [str(a) for a in names.get_values_for_type(x509.IPAddress)]
    return ClientCertificate(hashlib.sha256(der).hexdigest(), subject, tuple(sans))
