"""Client certificates (OpenAPI ``mutualTLS``) mapped to consumers.

TLS verifies the certificate (``listen.tls.client_ca``) when the connection opens; the
proxy reads its fingerprint, subject and subjectAltNames once per connection
(:class:`~bastion.types.ClientCertificate` on ``exchange.client_cert``). What is left here is
*whose* it is: each consumer's ``certificates`` matchers (``fingerprint``, ``subject`` or
``san``) name the certificates that identify it.

The matchers are read from the store, not from the configuration's ``consumers:`` list,
though that is where they are written: declared consumers are synced into the store when it
opens, and only the store knows their ids, the ids their API keys prove. A principal must be
the same consumer whichever credential it used (ownership records, rate limits and the
access log name consumers by id). Like the API key snapshot, the map is loaded in a thread,
reloaded when the store's generation counter moves (the worker's one store poller,
``bastion.state.poller``, polls for every such view), shared by every route of a worker,
and fails closed (503) when it has never loaded or the store has not answered for too long.

A certificate maps by its fingerprint first, then its subject, then its subjectAltNames; a
matcher two consumers claim, or SANs naming two consumers, identify nobody (401, reason
``auth.cert_ambiguous``); a certificate no matcher names gets 401 ``auth.cert_unknown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.state.poller import StorePoller, store_poller
from bastion.types import ClientCertificate, Principal

if TYPE_CHECKING:
    from bastion.services import Clock, Services
    from bastion.store import Store

log = logging.getLogger("bastion.auth.mtls")

#: Seconds the map is trusted without the store answering: beyond, 503.
DEFAULT_MAX_STALENESS: Final = 30.0

STORE_UNAVAILABLE: Final = AuthFailure("auth.store_unavailable", "invalid_token", 503)
CERT_UNKNOWN: Final = AuthFailure("auth.cert_unknown")
CERT_AMBIGUOUS: Final = AuthFailure("auth.cert_ambiguous")


def fingerprint_key(text: str) -> str:
    """``sha256:AB:CD...`` as configured, in the form the proxy computes (lower-case hex)."""
    hexdigits = text.partition(":")[2] if text.lower().startswith("sha256:") else text
    return hexdigits.replace(":", "").lower()


def san_key(text: str) -> str:
    """A configured SAN in the form the proxy reads it: an IP address normalised, a URI as
    written, a DNS name or e-mail address lower-cased (those compare without case)."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(text))
    return text if "://" in text or text.lower().startswith("urn:") else text.lower()


@dataclass(slots=True)
class CertificateMap:
    """Matcher -> principal, one table per kind of matcher; ``None``: claimed by two consumers."""

    fingerprints: dict[str, Principal | None] = field(default_factory=dict)
    subjects: dict[str, Principal | None] = field(default_factory=dict)
    sans: dict[str, Principal | None] = field(default_factory=dict)

    def add(self, table: dict[str, Principal | None], key: str, principal: Principal) -> None:
        found = table.get(key, principal)
        if found is not None and found.consumer_id != principal.consumer_id:
            log.error("mTLS: %r identifies two consumers (%s, %s): it identifies nobody", key,
                      found.consumer_name, principal.consumer_name)
            table[key] = None
        elif key not in table:
            table[key] = principal

    def lookup(self, cert: ClientCertificate) -> Verdict:
        """The consumer ``cert`` identifies: by fingerprint, else subject, else its SANs."""
        for table, key in ((self.fingerprints, cert.fingerprint), (self.subjects, cert.subject)):
            if key in table:
                found = table[key]
                return found if found is not None else CERT_AMBIGUOUS
        matched: Principal | None = None
        for san in cert.sans:
            if san in self.sans:
                found = self.sans[san]
                if found is None or (matched is not None and matched.consumer_id != found.consumer_id):
                    return CERT_AMBIGUOUS
                matched = found
        return matched if matched is not None else CERT_UNKNOWN


def _networks(values: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def build_map(rows: list[tuple[str, str, list[str], list[str], list[str], list[dict[str, str]]]]) -> CertificateMap:
    """The map of consumers given as (id, name, roles, ip_allow, ip_deny, certificates)."""
    out = CertificateMap()
    for cid, name, roles, allow, deny, certificates in rows:
        for matcher in certificates:
            fingerprint, subject, san = matcher.get("fingerprint"), matcher.get("subject"), matcher.get("san")
            # The credential id names the matcher that proved it (never a secret).
            label = f"cert:{fingerprint_key(fingerprint)[:16]}" if fingerprint else "cert:" + (subject or san or "")
            principal = Principal(
                consumer_id=cid,
                consumer_name=name,
                credential_id=label,
                roles=frozenset(roles),
                ip_allow=_networks(allow),
                ip_deny=_networks(deny),
            )
            if fingerprint:
                out.add(out.fingerprints, fingerprint_key(fingerprint), principal)
            elif subject:
                out.add(out.subjects, subject, principal)
            elif san:
                out.add(out.sans, san_key(san), principal)
    return out


class CertificateSnapshot:
    """The worker's certificate map, kept current by the worker's store poller (a
    :class:`~bastion.state.poller.StoreView`)."""

    what = "client certificates"
    when_unread = "refused with 503 once older than their staleness limit"

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.map = CertificateMap()
        #: Monotonic time the store last answered (-inf: never).
        self.loaded_at = -math.inf
        self._started: asyncio.Task[None] | None = None

    async def start(self, poller: StorePoller) -> None:
        """Load once (every verifier's start waits for the same first load), then follow the
        store with ``poller``; a store that cannot be read leaves the map failing closed."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_task(poller.attach(self))
        await asyncio.shield(self._started)

    def load(self, store: Store) -> Callable[[], None]:
        """In the poller's thread: the consumers' matchers; swapped in on the event loop."""
        from bastion.store import consumers

        with store.read() as session:
            rows = [
                (c.id, c.name, list(c.roles), list(c.ip_allow), list(c.ip_deny), list(c.certificates))
                for c in consumers.with_certificates(session)
            ]
        loaded = build_map(rows)

        def commit() -> None:
            self.map = loaded

        return commit

    async def aclose(self) -> None:
        if self._started is not None:
            self._started.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._started


class CertificateVerifier:
    """Maps a connection's verified client certificate to the consumer it identifies.

    Built without I/O; :meth:`start` takes the worker's shared snapshot of the store.
    """

    def __init__(self, max_staleness: float = DEFAULT_MAX_STALENESS) -> None:
        self.max_staleness = max_staleness
        self.snapshot: CertificateSnapshot | None = None

    async def start(self, services: Services) -> None:
        store = services.store
        clock = services.clock
        self.snapshot = services.shared("mtls:" + store.url, lambda: CertificateSnapshot(store, clock))
        await self.snapshot.start(store_poller(services))

    async def close(self) -> None:
        self.snapshot = None  # the worker's services close the shared snapshot

    def verify_certificate(self, cert: ClientCertificate) -> Verdict:
        snapshot = self.snapshot
        if snapshot is None or snapshot.clock.monotonic() - snapshot.loaded_at > self.max_staleness:
            return STORE_UNAVAILABLE
        return snapshot.map.lookup(cert)


__all__ = ["CertificateMap", "CertificateVerifier", "build_map", "fingerprint_key", "san_key"]
