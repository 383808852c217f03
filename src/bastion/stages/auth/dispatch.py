"""Which verifier checks a credential: built once per route, chosen per request by shape.

:func:`compile_verifiers` is the one place that turns a route's ``policies.auth`` into the
verifier of each kind of credential; :func:`bearer_verifier` is the one place that picks,
for an ``Authorization: Bearer`` token, the kind it is. A new method (mTLS, say) is added
in these two functions and nowhere else (mTLS was: its credential is the connection's
certificate, never a bearer token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bastion.pipeline.stage import RouteInfo
from bastion.stages.auth.apikey import ApiKeyVerifier
from bastion.stages.auth.config import AuthConfig
from bastion.stages.auth.introspect import IntrospectionVerifier
from bastion.stages.auth.jwt.verify import JwtVerifier
from bastion.stages.auth.methods import CredentialVerifier
from bastion.stages.auth.mtls import CertificateVerifier
from bastion.stages.auth.phantom import PhantomVerifier
from bastion.stages.phantom.tokens import PHANTOM_PREFIX

if TYPE_CHECKING:
    from bastion.services import Services

#: What every Bastion API key starts with (secret scanners recognise it too).
API_KEY_PREFIX = "bst_"
#: A compact JWS's parts are base64url (RFC 4648 section 5): letters, digits, ``-`` and ``_``.
#: The table maps those two and the dots between the parts to a letter, so what a JWS
#: becomes is all letters and digits.
_JWS_PUNCTUATION = bytes.maketrans(b"-_.", b"AAA")


def looks_like_jwt(token: str) -> bool:
    """A compact JWS: header and payload, then a signature (empty with ``alg: none``, which
    the JWT verifier refuses by name rather than leaving it to introspection). A character
    test in C, not a regular expression nor a set lookup per character (~19,000 instructions
    for a 180-character token): this runs on every request with a bearer token."""
    return (
        token.count(".") == 2
        and not token.startswith(".")
        and ".." not in token  # two dots, and neither the header nor the payload is empty
        and token.isascii()
        and token.encode("ascii").translate(_JWS_PUNCTUATION).isalnum()
    )


def b64token_looks_like_jwt(token: str) -> bool:
    """:func:`looks_like_jwt` for a token already known to be an RFC 6750 b64token (what
    :func:`~bastion.stages.auth.credentials.bearer_token` returns): that one pass over its
    characters allowed only letters, digits, ``-._~+/`` and trailing ``=``, so what is left to
    tell is where its dots are and that it has none of ``~+/=``, each a search in C (``memchr``)
    instead of a second pass over every character (``looks_like_jwt``: ~7,500 instructions for
    a 200-character token under callgrind, compiled)."""
    first = token.find(".")
    if first <= 0:
        return False  # no dot, or an empty header
    second = token.find(".", first + 1)
    if second <= first + 1:
        return False  # one dot only, or an empty payload
    return (
        token.find(".", second + 1) < 0
        and not token.endswith("=")  # a b64token's "=" are at its end only
        and "~" not in token
        and "+" not in token
        and "/" not in token
    )


class Startable(Protocol):
    """What the stage starts and closes with itself: every verifier."""

    async def start(self, services: Services) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Verifiers:
    """A route's verifiers, one per kind of credential; ``None`` where the route has none."""

    #: Bastion's own keys (``bst_...``), from a header, a cookie, the query or a bearer token.
    api_key: CredentialVerifier | None = None
    #: Signed tokens (``header.payload.signature``) of the issuers the route trusts.
    jwt: CredentialVerifier | None = None
    #: Any other bearer token, asked of an external server's introspection endpoint.
    introspection: CredentialVerifier | None = None
    #: Client certificates (``mutualTLS``), mapped to the consumers they identify.
    mtls: CertificateVerifier | None = None
    #: Phantom tokens (``bpt_...``): then the only other bearer tokens taken are API keys.
    phantom: PhantomVerifier | None = None

    @property
    def takes_bearer(self) -> bool:
        """Whether some ``Authorization: Bearer`` token can be verified on the route."""
        return (
            self.api_key is not None
            or self.jwt is not None
            or self.introspection is not None
            or self.phantom is not None
        )

    def bearer_kinds(self) -> list[str]:
        """The kinds of bearer token the route verifies, for ``bastion check``."""
        kinds = [
            ("API key", self.api_key),
            ("JWT", self.jwt),
            ("introspected token", self.introspection),
            ("phantom token", self.phantom),
        ]
        return [name for name, verifier in kinds if verifier is not None]

    def all(self) -> tuple[Startable, ...]:
        """Each verifier once (to start and close them)."""
        out: list[Startable] = []
        for verifier in (self.api_key, self.jwt, self.introspection, self.mtls, self.phantom):
            if verifier is not None and not any(v is verifier for v in out):
                out.append(verifier)
        return tuple(out)


NO_VERIFIERS = Verifiers()


def compile_verifiers(config: AuthConfig, route: RouteInfo) -> Verifiers:
    """The verifiers ``config`` names for ``route``; pure (no I/O: they start with the stage).

    API keys are Bastion's own credentials, on unless ``api_keys.enabled`` is false: their
    verifier reads the key store's snapshot (``ApiKeyVerifier``, ``apikey.py``). JWTs are
    verified where ``jwt`` names issuers (``JwtVerifier.from_settings``, ``jwt/verify.py``),
    opaque tokens where ``introspection`` is set (``IntrospectionVerifier.from_settings``,
    ``introspect.py``); where the built-in OAuth server is on, the JWT slot also takes its
    tokens (``WithOwnTokens``, ``oauth/verify.py``); client certificates by the consumers'
    ``certificates`` matchers in the store (``CertificateVerifier``, ``mtls.py``: the stage
    starts it only on a route with a ``mutualTLS`` scheme). Each is built here and nowhere else.
    With ``phantom_tokens``, phantom tokens (``PhantomVerifier``, ``phantom.py``) take the place
    of every other bearer token but API keys: the upstream's own tokens are never accepted.
    """
    if config.phantom_tokens:
        return Verifiers(
            api_key=ApiKeyVerifier() if config.api_keys.enabled else None,
            mtls=CertificateVerifier(),
            phantom=PhantomVerifier(),
        )
    jwt: CredentialVerifier | None = JwtVerifier.from_settings(config.jwt) if config.jwt is not None else None
    if route.own_tokens:
        # Imported here: only gateways that run the OAuth server load it.
        from bastion.oauth.verify import WithOwnTokens

        jwt = WithOwnTokens(jwt)
    return Verifiers(
        api_key=ApiKeyVerifier() if config.api_keys.enabled else None,
        jwt=jwt,
        introspection=(
            IntrospectionVerifier.from_settings(config.introspection) if config.introspection is not None else None
        ),
        mtls=CertificateVerifier(),
    )


def bearer_verifier(token: str, verifiers: Verifiers) -> CredentialVerifier | None:
    """The verifier of a bearer token's kind, by its shape; ``None`` when the route verifies
    no token of that kind (the token is then refused: nothing may guess what it is).
    ``token`` is a b64token, as :func:`~bastion.stages.auth.credentials.bearer_token` reads it."""
    if token.startswith(API_KEY_PREFIX):
        return verifiers.api_key
    if verifiers.phantom is not None:
        return verifiers.phantom if token.startswith(PHANTOM_PREFIX) else None
    if b64token_looks_like_jwt(token):
        return verifiers.jwt
    return verifiers.introspection


def credential_handle(credential: str) -> str:
    """What names a credential in counters without revealing it: an API key's public
    prefix (``bst_`` and the 8 characters of its id); ``""`` for anything else."""
    if credential.startswith(API_KEY_PREFIX) and len(credential) > 12:
        return credential[:12]
    return ""


__all__ = ["API_KEY_PREFIX", "NO_VERIFIERS", "Verifiers", "bearer_verifier", "compile_verifiers", "credential_handle"]
