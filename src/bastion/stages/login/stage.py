"""The ``login`` stage: failed logins counted per target account, from any address.

On a route marked as a login operation (``policies.login.account``), the request hook runs
once the body is read (bounded by the route's body limit): it reads the account the login
names, and counts the try in the state backend in one atomic step
(:data:`~bastion.stages.login.lockout.ATTEMPT`), which answers whether the account is
locked out. A locked account's try is refused with 429 and ``Retry-After`` before it
reaches the upstream; nothing is kept in the worker, so the lock is the same on every
worker and instance from the moment it is set. The response hook settles the try by the
upstream's answer: a failure keeps it, a success resets the account, anything else gives
it back.

Accounts are keyed by a hash of their trimmed, case-folded name within the service: the
state backend holds no user names, and spellings a backend treats as one account cannot be
counted apart. Whether the account exists makes no difference: a lockout tells nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from math import ceil
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from bastion.pipeline.stage import RequestOutcome, RequestStage, ResponseOutcome, ResponseStage, RouteInfo
from bastion.stages.access.owner import query_value
from bastion.stages.login.config import LoginConfig, parse_account
from bastion.stages.login.lockout import ATTEMPT, SETTLE, account_keys
from bastion.stages.validation.body import BodyError, media_type, parse_json
from bastion.types import Block, Exchange, Request

if TYPE_CHECKING:
    from bastion.services import Services
    from bastion.state.interface import StateBackend

#: How deep a login body may nest (a login form is flat; this only bounds the parse).
MAX_DEPTH = 32
#: The longest account name counted; a longer one is refused (no backend has such names).
MAX_ACCOUNT = 512
REASON_LOCKED = "auth.account_locked"
DETAIL_LOCKED = "Too many failed logins for this account: try again later."

UNREADABLE = Block(
    400,
    "Bad Request",
    "The login request does not name its account where this operation expects it, or names it more than once.",
    "login.account_unreadable",
)


class LoginStage(RequestStage, ResponseStage):
    """Account lockout on one login route."""

    needs_request_body = True
    uses_state = True

    def __init__(self, config: LoginConfig, account: str, route: RouteInfo) -> None:
        super().__init__("login", config)
        self.config: LoginConfig = config
        self.place, self.pointer = parse_account(account)
        #: Accounts are counted per service: two services may have two users named alice.
        self.scope = route.service
        self.failures = frozenset(config.failure_statuses)
        self._args: tuple[int, int, int, int, int] = (
            _ms(config.window),
            _ms(config.backoff),
            _ms(config.max_backoff),
            _ms(config.max_backoff * 4),  # how long the doubling is remembered
            config.max_failures,
        )
        self._state: StateBackend | None = None

    @classmethod
    def from_config(cls, config: LoginConfig, route: RouteInfo) -> LoginStage | None:
        return None if config.account is None else cls(config, config.account, route)

    async def start(self, services: Services) -> None:
        self._state = services.state

    # -- request --------------------------------------------------------------------------
    def on_request(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        account = self.account_of(exchange.request)
        if account is None:
            return UNREADABLE
        digest = hashlib.sha256(f"{self.scope}\x00{account}".encode()).hexdigest()[:32]
        # The record names the account by its hash only (user names are personal data).
        exchange.facts[self.name] = {"account": digest}
        return self._attempt(digest)

    async def _attempt(self, digest: str) -> Block | None:
        state = self._state
        if state is None:
            raise RuntimeError("the login stage was used before it started")
        # DependencyUnavailable: the chain applies failure_mode (closed: 503).
        ms = await state.run(ATTEMPT, account_keys(digest), self._args)
        if isinstance(ms, int) and ms > 0:
            return _locked(ms / 1000)
        return None

    def account_of(self, request: Request) -> str | None:
        """The account the login names, trimmed and case-folded; ``None`` when it names none
        where this route expects it, names it twice differently, or one too long."""
        place, pointer = self.place, self.pointer
        found: str | None
        if place == "query":
            found = query_value(request.query, pointer[0])
        elif place == "header":
            found = _single_header(request, pointer[0])
        else:
            found = _body_account(request, pointer)
        if found is None:
            return None
        account = found.strip().casefold()
        return account if account and len(account) <= MAX_ACCOUNT else None

    # -- response -------------------------------------------------------------------------
    def on_response(self, exchange: Exchange) -> ResponseOutcome | Awaitable[ResponseOutcome]:
        fact = exchange.facts.get(self.name)
        response = exchange.response
        if response is None or not isinstance(fact, dict):
            return None
        digest = fact.get("account")
        if not isinstance(digest, str):
            return None
        status = response.status
        if status in self.failures:
            fact["failed"] = True
            return None  # counted when tried
        return self._settle(digest, "success" if 200 <= status < 300 else "refund")

    async def _settle(self, digest: str, outcome: str) -> None:
        state = self._state
        if state is None:
            raise RuntimeError("the login stage was used before it started")
        await state.run(SETTLE, account_keys(digest), (outcome,))


def _body_account(request: Request, pointer: tuple[str, ...]) -> str | None:
    body = request.body
    if not body:
        return None
    content_type = request.header("content-type")
    media = media_type(content_type)[0] if content_type is not None else ""
    if media == "application/json" or media.endswith("+json"):
        try:
            # Parsed here even where validation parsed it: that parse may have let duplicate
            # keys through (orjson keeps the last), and the backend might read the other one.
            value: Any = parse_json(body, MAX_DEPTH, True)
        except BodyError:
            return None
        for part in pointer:
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit():
                index = int(part)
                value = value[index] if index < len(value) else None
            else:
                return None
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None
    if media == "application/x-www-form-urlencoded" and len(pointer) == 1:
        try:
            form = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return None
        return _single([value for key, value in form if key == pointer[0]])
    return None


def _single_header(request: Request, name: str) -> str | None:
    return _single([value for key, value in request.headers if key == name])


def _single(values: list[str]) -> str | None:
    """The one value given; ``None`` when none, or several that differ (which one a backend
    reads is its own choice: the try would be counted for an account it might not check)."""
    if not values or any(v != values[0] for v in values[1:]):
        return None
    return values[0]


def _locked(seconds: float) -> Block:
    return Block(429, "Too Many Requests", DETAIL_LOCKED, REASON_LOCKED, (("retry-after", str(ceil(seconds))),))


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
