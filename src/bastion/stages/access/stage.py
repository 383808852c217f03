"""The ``access`` stage's hooks: least-privilege authorization of an authenticated request.

Everything is decided from settings compiled at load; a request costs a few set operations.
The head hook (before any of the body is read) refuses what the request head settles: a
method or URL override, the client's network, a missing role or scope, an administrative
operation, another consumer's object named in the path or query. The request hook runs only
on routes that check the body (privileged properties, an owner field in the body); the
response hook only on routes that create objects whose creator is remembered.

The stage reads :attr:`Exchange.principal`, which the ``auth`` stage sets before it; a rule
that needs a consumer answers 401 when there is none (normally auth has refused already).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from bastion.errors import DependencyUnavailable, PolicyError
from bastion.pipeline.stage import HeadStage, RequestOutcome, RequestStage, ResponseStage, RouteInfo
from bastion.stages.access.config import AccessConfig
from bastion.stages.access.ip import AddressRule, allowed, parse_client
from bastion.stages.access.ledger import LEDGER_KEY, MAX_OBJECT_ID, OwnershipLedger, consumer_key
from bastion.stages.access.override import overridden
from bastion.stages.access.owner import PrincipalValue, body_value, request_value
from bastion.stages.access.properties import (
    MAX_DEPTH,
    Shape,
    TooDeep,
    compile_shape,
    fold,
    form_privileged,
    privileged_in,
    request_schemas,
)
from bastion.stages.validation.body import BodyError, media_type, parse_json
from bastion.types import Block, Exchange, Principal

if TYPE_CHECKING:
    from bastion.services import Services

OVERRIDE = Block(
    403,
    "Forbidden",
    "Method and URL override headers are not accepted here: send the request with its real method and path.",
    "access.override",
)
IP = Block(403, "Forbidden", "Requests from this network are not allowed here.", "access.ip")
ROLE = Block(403, "Forbidden", "This operation requires a role the caller does not have.", "access.role")
SCOPE = Block(403, "Forbidden", "The credential lacks a scope this operation requires.", "access.scope")
ADMIN = Block(403, "Forbidden", "This operation is reserved to administrators.", "access.admin")
OWNER = Block(403, "Forbidden", "The caller may not access this object.", "access.owner")
PROPERTY = Block(
    403,
    "Forbidden",
    "The request body sets a property this caller may not set (privileged or read-only).",
    "access.property",
)
UNCHECKABLE = Block(
    403,
    "Forbidden",
    "The request body cannot be checked for the properties this caller may set: send JSON or a form.",
    "access.property",
)


def _anonymous(realm: str) -> Block:
    return Block(
        401,
        "Unauthorized",
        "This operation requires an authenticated caller.",
        "access.unauthenticated",
        (("www-authenticate", f'Bearer realm="{realm}"'),),
    )


def _tagged_admin(route: RouteInfo, tags: list[str]) -> bool:
    """Whether the route's OpenAPI operation has one of ``tags`` (case-insensitive)."""
    op_tags = route.operation.get("tags") if route.operation is not None else None
    if not isinstance(op_tags, list) or not tags:
        return False
    wanted = {t.casefold() for t in tags}
    return any(isinstance(t, str) and t.casefold() in wanted for t in op_tags)


class AccessStage(HeadStage):
    """Authorization on one route, compiled from its settings (a head hook only; the
    subclasses below add the body and response hooks where the route needs them)."""

    def __init__(self, config: AccessConfig, route: RouteInfo) -> None:
        super().__init__("access", config)
        _check_path_params(config, route)
        self._guard = config.method_override == "refuse"
        rule = AddressRule(config.ip_allow, config.ip_deny)
        self._ip: AddressRule | None = rule if rule else None
        self._roles = frozenset(config.roles)
        self._scopes = frozenset(config.scopes)
        #: Function level: an administrative operation, by setting or by OpenAPI tag.
        self.admin = config.admin or _tagged_admin(route, config.admin_tags)
        self._admin_roles = frozenset(config.admin_roles)
        self._anonymous = _anonymous(route.service)

        owner = config.owner
        self._owner_param = owner.param if owner is not None else ""
        self._owner_in = owner.in_ if owner is not None else ""
        self._owner_value = PrincipalValue(owner.equals if owner is not None else "principal.consumer")
        self._owner_bypass = frozenset(owner.bypass_roles if owner is not None else ())
        #: Ownership decided from the head (path or query); a body owner waits for the body.
        self._owner_head = owner is not None and owner.in_ != "body"
        self._owner_body = owner is not None and owner.in_ == "body"

        learned = config.learned_owner
        self._learned_key = f"{route.service}/{learned.kind}" if learned is not None else ""
        self._learned_param = learned.param if learned is not None else ""
        self._learned_in = learned.in_ if learned is not None else "path"
        self._learned_unknown_ok = learned is not None and learned.unknown == "allow"
        self._learned_bypass = frozenset(learned.bypass_roles if learned is not None else ())

        learn = config.learn_ownership
        self._learn_key = f"{route.service}/{learn.kind}" if learn is not None else ""
        source, _, where = learn.id_from.partition(":") if learn is not None else ("", "", "")
        self._learn_source = source
        self._learn_where = where.lower() if source == "header" else where.removeprefix("$.")

        privileged = {fold(p) for p in config.privileged_properties}
        if self._owner_body:
            # The owner rule checks that field's value itself: sending one's own name is allowed.
            privileged.discard(fold(self._owner_param.split(".")[0]))
        self._privileged = frozenset(privileged)
        self._privilege_roles = frozenset(config.privilege_roles)
        self._property_check = _checks_properties(config)
        self._shape: Shape | None = None
        if self._property_check:
            self._shape = compile_shape(request_schemas(route.operation, route.openapi), route.openapi)

        #: Rules that need a principal: an anonymous request is refused with 401.
        self.needs_principal = bool(
            self._roles or self._scopes or self.admin or owner is not None or learned is not None
        )
        self._ledger: OwnershipLedger | None = None

    @classmethod
    def from_config(cls, config: AccessConfig, route: RouteInfo) -> AccessStage | None:
        """The stage the route needs (with a body hook, a response hook, both or neither);
        ``None`` when it has nothing to check."""
        body = (config.owner is not None and config.owner.in_ == "body") or _checks_properties(config)
        learn = config.learn_ownership is not None
        if not body and not learn:
            stage = AccessStage(config, route)
            return stage if stage._has_head_rules() else None
        kind: type[AccessStage]
        if body and learn:
            kind = AccessBodyLearnStage
        elif body:
            kind = AccessBodyStage
        else:
            kind = AccessLearnStage
        return kind(config, route)

    def _has_head_rules(self) -> bool:
        # The override guard alone is a rule: it keeps every route's authorization honest.
        return self._guard or self._ip is not None or self.needs_principal

    @property
    def summary(self) -> str:
        """What the stage checks on the route, for ``bastion check``."""
        parts: list[str] = []
        if self._roles:
            parts.append("role " + " or ".join(sorted(self._roles)))
        if self._scopes:
            parts.append("scopes " + " ".join(sorted(self._scopes)))
        if self.admin:
            parts.append("admin (" + " or ".join(sorted(self._admin_roles)) + ")")
        if self._owner_head or self._owner_body:
            parts.append(f"owner {self._owner_in}:{self._owner_param} = {self._owner_value.text}")
        if self._learned_key:
            parts.append(f"learned owner of {self._learned_key} {self._learned_in}:{self._learned_param}")
        if self._learn_key:
            parts.append(f"learns {self._learn_key}")
        if self._property_check:
            parts.append("privileged properties")
        if self._ip is not None:
            parts.append("ip lists")
        return ", ".join(parts) or "override guard"

    @property
    def uses_ownership(self) -> bool:
        """Whether the stage learns or checks learned ownership (it then takes the worker's
        ledger over the store when it starts)."""
        return bool(self._learned_key or self._learn_key)

    async def start(self, services: Services) -> None:
        if self.uses_ownership:
            self._ledger = services.shared(LEDGER_KEY, lambda: _store_ledger(services))

    # -- head ---------------------------------------------------------------------------
    def on_request_head(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        request = exchange.request
        if self._guard and overridden(request):
            return self._refuse(exchange, OVERRIDE, "override")
        ip = self._ip
        if ip is not None and not ip.allows(request.client_ip):
            return self._refuse(exchange, IP, "ip")
        principal = exchange.principal
        if principal is None:
            return self._refuse(exchange, self._anonymous, "principal") if self.needs_principal else None
        if (principal.ip_allow or principal.ip_deny) and not _consumer_allows(principal, request.client_ip):
            return self._refuse(exchange, IP, "consumer_ip")
        roles = principal.roles
        if self._roles and self._roles.isdisjoint(roles):
            return self._refuse(exchange, ROLE, "role")
        if self._scopes and not self._scopes <= principal.scopes:
            return self._refuse(exchange, SCOPE, "scope")
        if self.admin and self._admin_roles.isdisjoint(roles):
            return self._refuse(exchange, ADMIN, "admin")
        if self._owner_head and self._owner_bypass.isdisjoint(roles):
            value = request_value(request, self._owner_param, self._owner_in)
            mine = self._owner_value.of(principal)
            if value is None or mine is None or value != mine:
                return self._refuse(exchange, OWNER, "owner")
        if self._learned_key and self._learned_bypass.isdisjoint(roles):
            return self._check_learned(exchange, principal)
        return None

    def _check_learned(self, exchange: Exchange, principal: Principal) -> RequestOutcome | Awaitable[RequestOutcome]:
        object_id = request_value(exchange.request, self._learned_param, self._learned_in)
        if object_id is None:
            return self._refuse(exchange, OWNER, "learned_owner")
        if len(object_id) > MAX_OBJECT_ID:  # never learned: unknown
            return None if self._learned_unknown_ok else self._refuse(exchange, OWNER, "learned_owner")
        ledger = self._ledger
        if ledger is None:
            raise DependencyUnavailable("the ownership ledger is not started")
        me = consumer_key(principal.consumer_id)
        owner = ledger.cached(self._learned_key, object_id)
        if owner is not None:
            return None if owner == me else self._refuse(exchange, OWNER, "learned_owner")
        return self._learned_later(exchange, ledger, object_id, me)

    async def _learned_later(
        self, exchange: Exchange, ledger: OwnershipLedger, object_id: str, consumer: str
    ) -> RequestOutcome:
        owner = await ledger.owner_of(self._learned_key, object_id)
        if owner == consumer or (owner is None and self._learned_unknown_ok):
            return None
        return self._refuse(exchange, OWNER, "learned_owner")

    # -- body ---------------------------------------------------------------------------
    def on_request(self, exchange: Exchange) -> RequestOutcome:
        """Privileged properties and a body owner (only on the subclasses that need the body)."""
        request = exchange.request
        principal = exchange.principal
        privileged = self._property_check and (
            principal is None or self._privilege_roles.isdisjoint(principal.roles)
        )
        owner = self._owner_body and (principal is None or self._owner_bypass.isdisjoint(principal.roles))
        if not privileged and not owner:
            return None
        body = request.body
        value: Any = None
        form: list[tuple[str, str]] | None = None
        if body:
            content_type = request.header("content-type")
            media = media_type(content_type)[0] if content_type is not None else ""
            if media == "application/json" or media.endswith("+json"):
                try:
                    value = parse_json(body, MAX_DEPTH, True)
                except BodyError as exc:
                    return self._refuse(exchange, _malformed(str(exc)), "body")
                request.parsed_json = (value,)  # later stages reuse it
            elif media == "application/x-www-form-urlencoded":
                try:
                    form = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
                except UnicodeDecodeError:
                    return self._refuse(exchange, _malformed("the form body is not UTF-8"), "body")
            else:
                return self._refuse(exchange, UNCHECKABLE if privileged else OWNER, "body")
        if privileged:
            try:
                found = (
                    form_privileged(form, self._privileged, self._shape)
                    if form is not None
                    else privileged_in(value, self._privileged, self._shape)
                )
            except TooDeep:
                return self._refuse(exchange, _malformed(f"the body nests more than {MAX_DEPTH} levels"), "body")
            if found is not None:
                return self._refuse(exchange, PROPERTY, "property", found[:200])
        if owner:
            mine = self._owner_value.of(principal) if principal is not None else None
            named = _form_value(form, self._owner_param) if form is not None else body_value(value, self._owner_param)
            if named is None or mine is None or named != mine:
                return self._refuse(exchange, OWNER, "owner")
        return None

    # -- response -----------------------------------------------------------------------
    def on_response(self, exchange: Exchange) -> Block | None:
        """Remember who created the object a successful create made (learning subclasses only)."""
        response = exchange.response
        principal = exchange.principal
        ledger = self._ledger
        if response is None or principal is None or ledger is None or not 200 <= response.status < 300:
            return None
        source, where = self._learn_source, self._learn_where
        object_id: str | None = None
        if source == "path":
            object_id = exchange.request.path_params.get(where)
        elif source == "header":
            location = response.header(where)
            if location:
                object_id = unquote(urlsplit(location).path.rstrip("/").rpartition("/")[2]) or None
        elif response.body:
            try:
                object_id = body_value(parse_json(response.body, MAX_DEPTH, False), where)
            except BodyError:
                object_id = None
        if object_id is None or len(object_id) > MAX_OBJECT_ID:
            why = "no object id" if object_id is None else f"an object id longer than {MAX_OBJECT_ID}"
            exchange.facts[self.name] = {"learned": None, "why": f"{why} at {source}:{where}"}
            return None
        ledger.remember(self._learn_key, object_id, consumer_key(principal.consumer_id))
        exchange.facts[self.name] = {"learned": self._learn_key, "object": object_id[:200]}
        return None

    # -- outcomes -----------------------------------------------------------------------
    def _refuse(self, exchange: Exchange, block: Block, rule: str, where: str | None = None) -> Block:
        fact: dict[str, object] = {"rule": rule}
        if where is not None:
            fact["property"] = where
        exchange.facts[self.name] = fact
        return block


class AccessBodyStage(AccessStage, RequestStage):
    """The access stage on a route that also checks the request body."""

    needs_request_body = True


class AccessLearnStage(AccessStage, ResponseStage):
    """The access stage on a route whose successful responses create objects to remember."""

    def __init__(self, config: AccessConfig, route: RouteInfo) -> None:
        super().__init__(config, route)
        self.needs_response_body = self._learn_source == "body"


class AccessBodyLearnStage(AccessBodyStage, ResponseStage):
    """Both: the body is checked, and the objects created are remembered."""

    def __init__(self, config: AccessConfig, route: RouteInfo) -> None:
        super().__init__(config, route)
        self.needs_response_body = self._learn_source == "body"


def _checks_properties(config: AccessConfig) -> bool:
    """Whether the route checks body properties: as set, or where a layer lists them."""
    if config.property_check is not None:
        return config.property_check
    return "privileged_properties" in config.model_fields_set


def _check_path_params(config: AccessConfig, route: RouteInfo) -> None:
    """A rule naming a path parameter the route's template does not have would refuse every
    request: a load error instead, naming the parameter and the path."""
    named: list[tuple[str, str]] = []
    if config.owner is not None and config.owner.in_ == "path":
        named.append(("owner.param", config.owner.param))
    if config.learned_owner is not None and config.learned_owner.in_ == "path":
        named.append(("learned_owner.param", config.learned_owner.param))
    if config.learn_ownership is not None and config.learn_ownership.id_from.startswith("path:"):
        named.append(("learn_ownership.id_from", config.learn_ownership.id_from.removeprefix("path:")))
    for field, param in named:
        if "{" + param + "}" not in route.path:
            raise PolicyError(f"access: {field} names the path parameter {param!r}, which {route.path} does not have")


def _store_ledger(services: Services) -> OwnershipLedger:
    """The worker's ledger over its store (made once per worker; nothing is opened until the
    first read or write, in the ledger's thread)."""
    from bastion.store.ownership import StoreOwnership  # SQLAlchemy only where a route needs it

    return OwnershipLedger(StoreOwnership(services.store))


def _malformed(why: str) -> Block:
    return Block(400, "Bad Request", f"The request body cannot be checked: {why}.", "access.malformed")


def _consumer_allows(principal: Principal, client: str) -> bool:
    addr = parse_client(client)
    return addr is not None and allowed(addr, principal.ip_allow, principal.ip_deny)


def _form_value(form: list[tuple[str, str]], param: str) -> str | None:
    """The value of the form field ``param``; ``None`` when absent or given twice differently."""
    found: str | None = None
    for key, value in form:
        if key == param:
            if found is not None and found != value:
                return None
            found = value
    return found
