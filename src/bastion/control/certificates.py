"""Client certificates (mTLS) mapped to store consumers: one set of rules for the CLI and the
admin API. A matcher is compared as the gateway compares it (a fingerprint's hex in lower
case without colons, a SAN normalised), so two spellings of one certificate are one matcher,
and a certificate two consumers would claim is refused."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bastion.store import consumers
from bastion.store.errors import CertificateTaken, DeclaredConsumer, StoreError, UnknownCertificate


def checked(matcher: dict[str, str]) -> dict[str, str]:
    """``matcher`` (exactly one of fingerprint, subject, san) as the configuration checks it,
    or :class:`StoreError` saying what is wrong."""
    from pydantic import ValidationError

    from bastion.config.model import ConsumerCertificate

    given = {k: v for k, v in matcher.items() if v is not None}
    if len(given) != 1 or not set(given) <= {"fingerprint", "subject", "san"}:
        raise StoreError("give exactly one of fingerprint, subject or san")
    try:
        return ConsumerCertificate.model_validate(given).model_dump(exclude_none=True)
    except ValidationError:
        (kind,) = given
        what = "sha256: and 64 hex digits (colons allowed)" if kind == "fingerprint" else "a non-empty value"
        raise StoreError(f"{given[kind]!r} is not a certificate {kind}: write {what}") from None


def key(matcher: dict[str, str]) -> tuple[str, str]:
    """A matcher as the gateway compares it."""
    from bastion.stages.auth.mtls import fingerprint_key, san_key

    (kind, value), = matcher.items()
    if kind == "fingerprint":
        return kind, fingerprint_key(value)
    return kind, san_key(value) if kind == "san" else value


def label(matcher: dict[str, str]) -> str:
    (kind, value), = matcher.items()
    return f"{kind} {value}" if kind == "fingerprint" else f"{kind} {value!r}"


def add(session: Session, name: str, matcher: dict[str, str]) -> bool:
    """Map ``matcher`` to the store consumer ``name``: ``False`` when it has it already;
    :class:`CertificateTaken` when another consumer has it, :class:`DeclaredConsumer` when
    the file declares ``name``."""
    consumer = consumers.get(session, name)
    if consumer.declared:
        raise DeclaredConsumer(name)
    wanted = key(matcher)
    for other in consumers.with_certificates(session):
        if any(key(m) == wanted for m in other.certificates):
            if other.name != name:
                raise CertificateTaken(label(matcher), other.name)
            return False
    consumers.add_certificate(session, name, matcher)
    return True


def remove(session: Session, name: str, matcher: dict[str, str]) -> dict[str, str]:
    """Unmap ``matcher`` (any spelling of it) from the store consumer ``name``; the matcher as
    it was stored. :class:`UnknownCertificate` when it has no such matcher."""
    consumer = consumers.get(session, name)
    if consumer.declared:
        raise DeclaredConsumer(name)
    wanted = key(matcher)
    stored = next((m for m in consumer.certificates if key(m) == wanted), None)
    if stored is None:
        raise UnknownCertificate(name, label(matcher))
    consumers.remove_certificate(session, name, stored)
    return dict(stored)
