"""What the auth stage asks of a way to verify credentials (API keys, JWT, opaque tokens).

The stage finds the credential a route's security schemes name (a header, a bearer token,
a query parameter where a route allows it, a client certificate), hands it to the method
that verifies that kind of credential, and gets a :data:`Verdict` back: the
:class:`~bastion.types.Principal` the credential proves, or an :class:`AuthFailure` saying
why not. A method answers at once when it can (a key in its snapshot, a token in its
verified cache) and with an awaitable only when it must wait (an unknown ``kid`` sends it
to the JWKS endpoint) -- the chain's trick, so the common case costs a function call.

Methods are compiled once from settings (no I/O) and started by a worker like stages are.
A failure never carries the secret: ``reason`` is a fixed string for the record and the
metrics, and what the client reads is the same for every failure of the same kind, so an
unknown key and a wrong key cannot be told apart.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias

from bastion.types import Principal

if TYPE_CHECKING:
    from bastion.services import Services

#: RFC 6750 section 3.1 error codes, for the ``WWW-Authenticate`` challenge of a refusal.
BearerError = Literal["invalid_request", "invalid_token", "insufficient_scope"]


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a presented credential proves nothing.

    ``reason`` is a dotted code for the access record and metrics (``auth.key_unknown``,
    ``auth.token_expired``, ``auth.signature``); it names no secret and no consumer.
    """

    reason: str
    error: BearerError = "invalid_token"
    #: 401 for a credential that proves nothing; 403 for one that proves a consumer who may
    #: not do this (a missing scope); 503 when what verifies it is unreachable (fail closed).
    status: int = 401


#: What verifying a credential gives.
Verdict: TypeAlias = Principal | AuthFailure


class CredentialVerifier(Protocol):
    """One way of verifying one kind of credential (an API key, a JWT, an opaque token)."""

    def verify(self, credential: str) -> Verdict | Awaitable[Verdict]:
        """The principal ``credential`` proves, or why it proves nothing; an awaitable only
        when the answer needs I/O."""
        ...

    async def start(self, services: Services) -> None:
        """Take what verification needs from the worker (store snapshot, JWKS, state)."""
        ...

    async def close(self) -> None:
        """Release what :meth:`start` took."""
        ...
