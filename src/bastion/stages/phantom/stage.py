"""The ``phantom`` stage: on a login operation, the client gets a phantom token, never the
upstream's own.

A response hook over the whole body (JSON, decoded by the proxy when gzipped): a successful
response whose ``token_field`` holds a string has it replaced by a fresh phantom token, and
the record of what it stands for (:mod:`~bastion.stages.phantom.tokens`) is stored in the
state backend first, with the token's lifetime as TTL. A state backend that cannot store
it makes the login a 503 (fail closed): the upstream's token never reaches the client. With
``cookie`` set, a ``Set-Cookie`` of that cookie, on any answer of the login, gets a phantom
token in its value the same way (attributes kept, ``HttpOnly`` forced, ``Secure`` over TLS).
The auth stage swaps phantom tokens back on the routes that accept them (``phantom_tokens``,
``phantom_cookie``) and deletes one on a logout (``phantom_logout``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import orjson

from bastion.pipeline.stage import ResponseOutcome, ResponseStage, RouteInfo
from bastion.stages.phantom.config import IssueSettings, PhantomConfig
from bastion.stages.phantom.tokens import Record, jwt_claims, new_token, scopes_of, state_key
from bastion.types import Block, Exchange, Response

if TYPE_CHECKING:
    from bastion.services import Services
    from bastion.state.interface import StateBackend

#: The shortest a phantom lives (an upstream token that is about to expire still gets one).
_MIN_TTL = 1.0
#: Headers that describe the old body and must not describe the new one.
_STALE = frozenset(("content-length", "etag", "content-md5", "digest"))


class PhantomStage(ResponseStage):
    """Issues phantom tokens on one login route."""

    needs_response_body = True
    #: A login response it did not see would hand out the upstream's token.
    response_body_required = True
    uses_state = True

    def __init__(self, config: PhantomConfig, issue: IssueSettings) -> None:
        super().__init__("phantom", config)
        self.issue = issue
        self.path = tuple(issue.token_field.split("."))
        #: The cookie the upstream's token comes in ("": none).
        self.cookie = issue.cookie or ""
        self._state: StateBackend | None = None
        self._wall = _no_clock

    @classmethod
    def from_config(cls, config: PhantomConfig, route: RouteInfo) -> PhantomStage | None:
        return None if config.issue is None else cls(config, config.issue)

    async def start(self, services: Services) -> None:
        self._state = services.state
        self._wall = services.clock.wall

    def on_response(self, exchange: Exchange) -> ResponseOutcome | Awaitable[ResponseOutcome]:
        response = exchange.response
        if response is None:
            return None
        # A cookie is replaced on any answer (a login form's 302 sets it too): the upstream's
        # token never reaches the client, whatever the status.
        cookies = self._token_cookies(response) if self.cookie else []
        found: tuple[Any, dict[str, Any], str] | None = None
        if 200 <= response.status < 300 and response.body:
            found = self._token_field(response.body)
        if found is None and not cookies:
            return None
        return self._replace(response, found, cookies, exchange.request.scheme == "https")

    def _token_field(self, body: bytes) -> tuple[Any, dict[str, Any], str] | None:
        """The JSON body, the object holding the token and the token; ``None`` without one."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # not JSON: no token field to replace
        holder = _holder(doc, self.path)
        token = holder.get(self.path[-1]) if holder is not None else None
        if holder is None or not isinstance(token, str) or not token:
            return None
        return doc, holder, token

    def _token_cookies(self, response: Response) -> list[tuple[int, str, str]]:
        """``(header index, token, attributes)`` of each ``Set-Cookie`` of the token cookie
        with a value (one that deletes the cookie carries no token and passes)."""
        out: list[tuple[int, str, str]] = []
        for i, (key, value) in enumerate(response.headers):
            if key.lower() != "set-cookie":
                continue
            pair, _, attributes = value.partition(";")
            name, sep, token = pair.partition("=")
            token = token.strip(" \t").strip('"')
            if sep and name.strip(" \t") == self.cookie and token:
                out.append((i, token, attributes))
        return out

    async def _replace(
        self,
        response: Response,
        field: tuple[Any, dict[str, Any], str] | None,
        cookies: list[tuple[int, str, str]],
        tls: bool,
    ) -> Block | None:
        if cookies:
            headers = list(response.headers)
            for index, token, attributes in cookies:
                phantom = await self._issue(token)
                headers[index] = ("set-cookie", _cookie_header(self.cookie, phantom, attributes, tls))
            response.headers = headers
        if field is not None:
            doc, holder, token = field
            holder[self.path[-1]] = await self._issue(token)
            response.body = orjson.dumps(doc)
            response.headers = [(k, v) for k, v in response.headers if k.lower() not in _STALE]
        return None

    async def _issue(self, token: str) -> str:
        """A new phantom token for the upstream's ``token``, stored before the client can hold
        it; DependencyUnavailable fails the stage closed (503)."""
        state = self._state
        if state is None:
            raise RuntimeError("the phantom stage was not started")
        record = self._record(token)
        phantom = new_token()
        ttl = max(record.expires - self._wall(), _MIN_TTL)
        await state.set(state_key(phantom), record.encode(), ttl=ttl)
        return phantom

    def _record(self, token: str) -> Record:
        issue = self.issue
        claims = jwt_claims(token) or {}
        exp = claims.get("exp")
        now = self._wall()
        expires = float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else now + issue.ttl
        consumer = claims.get(issue.consumer_claim)
        roles = claims.get(issue.roles_claim)
        return Record(
            upstream_token=token,
            consumer=str(consumer) if isinstance(consumer, (str, int)) else "",
            scopes=scopes_of(claims),
            roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
            claims=claims,
            expires=expires,
        )


def _holder(doc: Any, path: tuple[str, ...]) -> dict[str, Any] | None:
    """The object that holds the token's member (``path[-1]``), following ``path``."""
    node = doc
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _no_clock() -> float:
    raise RuntimeError("the phantom stage was not started")


def _cookie_header(name: str, phantom: str, attributes: str, tls: bool) -> str:
    """``Set-Cookie`` for the phantom, with the upstream's attributes (``attributes``: what
    followed its first ``;``), plus ``HttpOnly`` (no script reads a phantom) and, over TLS,
    ``Secure`` (never sent back in clear), where the upstream left them out."""
    have = {part.strip(" \t").partition("=")[0].lower() for part in attributes.split(";")}
    text = f"{name}={phantom}" + (";" + attributes if attributes.strip(" \t") else "")
    if "httponly" not in have:
        text += "; HttpOnly"
    if tls and "secure" not in have:
        text += "; Secure"
    return text
