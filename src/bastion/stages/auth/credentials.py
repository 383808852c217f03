"""Where a security scheme's credential is in a request, decided at load and read per request.

Each OpenAPI security scheme a route names becomes a :class:`SchemeSource`: the header,
cookie or query parameter an ``apiKey`` scheme names (the query only where the route
allows it), and whether an ``Authorization: Bearer`` token counts for it -- any token for
``http bearer``, ``oauth2`` and ``openIdConnect``, a Bastion API key (``bst_...``) for an
``apiKey`` scheme. Reading one is a few header lookups; nothing is parsed at load twice.

Bastion's own API keys are its secrets, not the upstream's: once the stage has decided,
:meth:`KeyPlaces.strip` removes every ``bst_...`` value from the places the route reads
keys from (:class:`KeyPlaces`, built at load), so the upstream never receives one.

A request that carries a credential badly (two ``Authorization`` headers, the same key
twice, a key both in its header and as a bearer token, a bearer token with characters RFC
6750 does not allow) raises :class:`Malformed`: RFC 6750 3.1 answers it ``400
invalid_request``. An ``Authorization`` header of another scheme (``Basic``) is not a bearer
token at all, as if absent: RFC 6750 3.1 answers a request "using an unsupported
authentication method" like one with no credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from bastion.stages.auth.dispatch import API_KEY_PREFIX
from bastion.types import HeaderList, Request

#: How a scheme takes an ``Authorization: Bearer`` token.
NO_BEARER: Final = 0
#: Only a Bastion API key (an ``apiKey`` scheme: Bastion's keys are bearer tokens too).
KEY_BEARER: Final = 1
#: Any token, dispatched to a verifier by its shape.
ANY_BEARER: Final = 2

#: RFC 6750 2.1 b64token: letters, digits and this punctuation, before its "=" padding. The
#: table keeps those bytes and maps every other byte to NUL, so a valid token has no NUL after it.
_B64TOKEN_CHARS: Final = bytes(
    c if chr(c).isascii() and (chr(c).isalnum() or chr(c) in "-._~+/") else 0 for c in range(256)
)


#: ``Authorization: Bearer bst_...`` as clients spell it.
_BEARER_KEY: Final = "Bearer " + API_KEY_PREFIX


class Malformed(Exception):
    """A credential is present but not in a form any scheme allows (RFC 6750 invalid_request)."""


@dataclass(frozen=True, slots=True)
class SchemeSource:
    """Where one security scheme's credential may be, on one route."""

    #: The scheme's name in ``components.securitySchemes`` (for messages).
    name: str
    #: ``apiKey`` schemes: the lower-case header, the cookie, the query parameter ("" if none).
    header: str = ""
    cookie: str = ""
    query: str = ""
    #: NO_BEARER, KEY_BEARER or ANY_BEARER.
    bearer: int = NO_BEARER
    #: A ``mutualTLS`` scheme: the credential is the connection's client certificate.
    certificate: bool = False
    #: The query parameter an ``apiKey`` scheme names that the route does not read
    #: (``api_keys.query`` is off): said by ``bastion check``.
    ignored_query: str = ""
    #: The cookie carries phantom tokens (``phantom_cookie``), not API keys.
    phantom: bool = False

    def read(self, request: Request, token: str | None) -> str | None:
        """The credential this scheme finds in ``request``, or ``None``; raises
        :class:`Malformed` when it is there in a form no client should send. ``token`` is
        the request's bearer token (:func:`bearer_token`, read once per request by the
        caller; ignored by a scheme that takes none)."""
        found: str | None = None
        if self.header:
            found = _single_header(request, self.header)
            if found is not None and self.header == "authorization" and found[:7].lower() == "bearer ":
                found = found[7:].strip(" ")  # an apiKey scheme named Authorization: either form
        elif self.cookie:
            found = _cookie(request, self.cookie)
        elif self.query:
            found = _query(request.query, self.query)
        if self.bearer == NO_BEARER:
            return found
        if token is None or (self.bearer == KEY_BEARER and not token.startswith(API_KEY_PREFIX)):
            return found
        if found is not None:
            raise Malformed("the credential is given in two places")
        return token


@dataclass(frozen=True, slots=True)
class KeyPlaces:
    """Where a route may carry Bastion API keys (every place one of its schemes reads), so
    that none reaches the upstream, whether it verified, failed or was never read (another
    alternative succeeded first)."""

    #: Lower-case header names (``authorization`` for a bearer token: only ``Bearer bst_...``).
    headers: frozenset[str] = frozenset()
    cookies: frozenset[str] = frozenset()
    queries: frozenset[str] = frozenset()

    @classmethod
    def of(cls, sources: tuple[SchemeSource, ...]) -> KeyPlaces:
        headers = {s.header for s in sources if s.header}
        if any(s.bearer != NO_BEARER for s in sources):
            headers.add("authorization")
        return cls(
            frozenset(headers),
            frozenset(s.cookie for s in sources if s.cookie and not s.phantom),
            frozenset(s.query for s in sources if s.query),
        )

    def strip(self, request: Request) -> None:
        """Remove every Bastion API key from ``request`` (headers, cookies, query string)."""
        headers = request.headers
        for i, (key, value) in enumerate(headers):
            # The value's search first: most headers hold no "bst_", and their names need no lookup.
            if API_KEY_PREFIX in value and (key in self.headers or (key == "cookie" and self.cookies)):
                # The headers before the first key are kept as they are, without a second look.
                request.headers = headers[:i] + self._stripped_headers(headers, i)
                break
        if self.queries and request.query:  # may be percent-encoded: look at each pair
            request.query = "&".join(
                pair for pair in request.query.split("&") if not _key_pair(pair, self.queries, True)
            )

    def _stripped_headers(self, headers: HeaderList, start: int) -> HeaderList:
        """``headers`` from ``start`` on, without the API keys."""
        out: HeaderList = []
        for i in range(start, len(headers)):
            key, value = headers[i]
            if key == "cookie" and self.cookies:
                kept = [p for p in value.split(";") if not _key_pair(p.strip(" "), self.cookies, False)]
                if kept:
                    out.append((key, ";".join(kept).strip(" ")))
                continue
            if key in self.headers and _is_key(value):
                continue
            out.append((key, value))
        return out


def _is_key(value: str) -> bool:
    """Whether a key header's value is an API key, bare or as a bearer token."""
    if value.startswith(_BEARER_KEY) or value.startswith(API_KEY_PREFIX):
        return True  # as clients send it: no copies to tell
    token = value[7:].strip(" ") if value[:7].lower() == "bearer " else value
    return token.startswith(API_KEY_PREFIX)


def _key_pair(pair: str, names: frozenset[str], encoded: bool) -> bool:
    """Whether ``name=value`` (a cookie, or a percent-``encoded`` query pair) carries an API
    key under one of ``names``, read as :func:`_cookie` and :func:`_query` read it."""
    name, sep, value = pair.partition("=")
    if encoded:
        name, value = unquote(name), unquote(value)
    return bool(sep) and name in names and value.strip('"').startswith(API_KEY_PREFIX)


def _single_header(request: Request, name: str) -> str | None:
    found: str | None = None
    for key, value in request.headers:
        if key == name:
            if found is not None:
                raise Malformed("a credential header is repeated")
            found = value
    if found is not None and not found:
        raise Malformed("a credential header is empty")
    return found


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``; ``None`` without one (or with another
    scheme, such as Basic)."""
    value = _single_header(request, "authorization")
    if value is None:
        return None
    if value.startswith("Bearer "):  # as clients spell it: no scheme split off and lower-cased
        token = value[7:]
    else:
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer":
            return None
    token = token.strip(" ")
    # b64token (RFC 6750 2.1): one or more of its characters, then any "=" padding. Checked in
    # C, as this runs on every request with a token: one pass of bytes.translate with a table
    # (no set-up) that maps every byte outside the set to NUL, then a search for a NUL
    # (memchr). The NUL is the int 0: ``b"\0" in`` is first tried as an int, an exception
    # raised and cleared (~2,000 instructions). bytes.isalnum after mapping the punctuation
    # to a letter was a second pass over every byte (~1,600 instructions for a 200-character
    # token, compiled); deleting the 66 characters instead (translate's deletechars) built
    # its tables per call, ~1,700; the regular expression before that ~4,500, str.strip ~8,000.
    body = token.rstrip("=")
    if not body or not body.isascii() or 0 in body.encode("ascii").translate(_B64TOKEN_CHARS):
        raise Malformed("the bearer token is empty or not a b64token")
    return token


def _cookie(request: Request, name: str) -> str | None:
    found: str | None = None
    for key, value in request.headers:
        if key != "cookie":
            continue
        for pair in value.split(";"):
            cname, sep, cvalue = pair.strip(" ").partition("=")
            if sep and cname == name:
                if found is not None:
                    raise Malformed("a credential cookie is repeated")
                found = cvalue.strip('"')
    if found is not None and not found:
        raise Malformed("a credential cookie is empty")
    return found


def _query(query: str, name: str) -> str | None:
    if not query:
        return None
    found: str | None = None
    for pair in query.split("&"):
        key, sep, value = pair.partition("=")
        if sep and unquote(key) == name:
            if found is not None:
                raise Malformed("a credential parameter is repeated")
            found = unquote(value)
    if found is not None and not found:
        raise Malformed("a credential parameter is empty")
    return found


__all__ = ["ANY_BEARER", "KEY_BEARER", "NO_BEARER", "KeyPlaces", "Malformed", "SchemeSource", "bearer_token"]
