"""The ``graphql`` stage's hooks: every request on the route read as GraphQL and held to its
limits before it goes upstream; suggestions stripped from what comes back."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import orjson

from bastion.errors import PolicyError
from bastion.pipeline.stage import RequestStage, ResponseStage, RouteInfo
from bastion.stages.graphql.config import GraphQLAccess, GraphQLConfig
from bastion.stages.graphql.document import SUGGESTION, Measured, limit_block, malformed, measure, variable_cost
from bastion.stages.graphql.schema import SchemaFileError, introspect, load_schema
from bastion.types import Block, Exchange, Principal, Request

if TYPE_CHECKING:
    import httpx
    from graphql import GraphQLSchema

    from bastion.services import Services

log = logging.getLogger("bastion.graphql")

_SUGGESTION_BYTES = b"Did you mean"
_STALE = frozenset(("content-length", "etag", "content-md5", "digest"))
_NOT_PERSISTED = Block(
    403, "Forbidden", "Only persisted GraphQL documents may run on this route.", reason="graphql.not_persisted"
)
_NO_SCHEMA = Block(
    503,
    "Service Unavailable",
    "The GraphQL schema of this API is not known yet; try again shortly.",
    reason="graphql.schema_unavailable",
)
#: Seconds between introspection attempts while the upstream does not answer (doubling).
_RETRY_FIRST, _RETRY_MOST = 1.0, 30.0
_FORBIDDEN = Block(403, "Forbidden", "This GraphQL operation requires an administrator.", reason="graphql.forbidden")
#: Parameters of a GraphQL request over GET.
_GRAPHQL_PARAMS = frozenset(("query", "variables", "operationName", "extensions"))


@dataclass(frozen=True, slots=True)
class Rule:
    """A ``field_access`` or ``operation_access`` entry, as sets, and its refusal."""

    roles: frozenset[str]
    scopes: frozenset[str]
    refusal: Block

    @classmethod
    def of(cls, access: GraphQLAccess, what: str) -> Rule:
        detail = f"The credentials of this request may not run {what}."
        return cls(
            frozenset(access.roles),
            frozenset(access.scopes),
            Block(403, "Forbidden", detail, reason="graphql.forbidden"),
        )

    def allows(self, principal: Principal | None) -> bool:
        if principal is None:
            return False
        if self.roles and not principal.roles & self.roles:
            return False
        return self.scopes <= principal.scopes


@dataclass(frozen=True, slots=True)
class Operation:
    """One GraphQL request of an HTTP request (a batch holds several)."""

    query: str
    variables: dict[str, object] | None


class LearntSchema:
    """The schema introspected from one upstream URL, kept by the worker across reloads."""

    def __init__(self) -> None:
        self.schema: GraphQLSchema | None = None


class GraphQLStage(RequestStage, ResponseStage):
    """Reads every request as GraphQL (``application/json``, single or batched;
    ``application/graphql``; ``GET ?query=``) and refuses it with 400 when it does not
    parse or breaks a limit, with 403 when its sender may not run it."""

    needs_request_body = True

    def __init__(self, config: GraphQLConfig, introspect_url: str | None = None) -> None:
        super().__init__("graphql", config)
        self.settings = config
        # Only a response that may carry suggestions needs its body read.
        self.needs_response_body = config.strip_suggestions
        self._cache: dict[str, Measured] = {}
        # Read at config load (cached per file version); the config validated it already.
        # With ``schema: introspect`` it is asked of the upstream at start; until then the
        # route fails closed.
        file = config.schema_file
        self._schema: GraphQLSchema | None = load_schema(file) if isinstance(file, Path) else None
        self._introspect_url = introspect_url if file == "introspect" else None
        self._introspection: asyncio.Task[None] | None = None
        self._introspection_roles = frozenset(config.introspection_roles)
        self._admin_roles = frozenset(config.admin_roles)
        self._persisted = frozenset(config.persisted_queries)
        self._field_rules = {name: Rule.of(a, f"the GraphQL field {name!r}") for name, a in config.field_access.items()}
        self._kind_rules: dict[str, Rule] = {
            kind: Rule.of(a, f"a GraphQL {kind}") for kind, a in config.operation_access.items()
        }

    @classmethod
    def from_config(cls, config: GraphQLConfig, route: RouteInfo) -> GraphQLStage:
        if config.schema_file != "introspect":
            return cls(config)
        if route.upstream is None:
            raise PolicyError("schema: introspect needs the service's upstream; name an SDL file instead")
        return cls(config, route.upstream.rstrip("/") + route.path)

    async def start(self, services: Services) -> None:
        url = self._introspect_url
        if url is not None and self._schema is None:
            # What an earlier configuration of this worker learnt serves at once (a reload
            # does not 503); it is asked again in the background, in case it changed.
            learnt = services.shared("graphql.schema:" + url, LearntSchema)
            self._schema = learnt.schema
            self._introspection = asyncio.get_running_loop().create_task(self._learn_schema(services.http, learnt))

    async def close(self) -> None:
        if self._introspection is not None:
            self._introspection.cancel()
            self._introspection = None

    async def _learn_schema(self, client: httpx.AsyncClient, learnt: LearntSchema) -> None:
        """Ask the upstream for its schema until it answers, waiting longer each time."""
        url = self._introspect_url or ""
        delay = _RETRY_FIRST
        while True:
            try:
                self._schema = learnt.schema = await introspect(client, url)
                self._cache.clear()  # verdicts of the schema it replaces
            except SchemaFileError as exc:
                reason = str(exc)
            except Exception as exc:  # an unreachable upstream: keep failing closed, say why
                reason = f"{url}: {type(exc).__name__}: {exc}"
            else:
                log.info("graphql: the schema of %s is known (introspected); its route serves requests", url)
                return
            if self._schema is not None:
                log.warning("graphql: introspecting again failed, the schema known before stays: %s", reason)
                return
            log.error("graphql: no schema yet, the route answers 503 until introspection succeeds: %s", reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MOST)

    # -- request side ------------------------------------------------------------------------
    def on_request(self, exchange: Exchange) -> Block | None:
        if self._introspect_url is not None and self._schema is None:
            return _NO_SCHEMA
        operations = _operations(exchange.request)
        if isinstance(operations, Block):
            return operations
        if len(operations) > self.settings.max_batch:
            return Block(
                400,
                "Bad Request",
                f"The request batches {len(operations)} GraphQL operations; at most "
                f"{self.settings.max_batch} are allowed (max_batch).",
                reason="graphql.batch",
            )
        names: list[str] = []
        costs: list[int] = []
        for operation in operations:
            refused = self._check(exchange.principal, operation, names, costs)
            if refused is not None:
                return refused
        # What ran, for the access record: one route hides every operation otherwise.
        exchange.facts[self.name] = {"operations": names, "cost": sum(costs)}
        return None

    def _check(
        self, principal: Principal | None, operation: Operation, names: list[str], costs: list[int]
    ) -> Block | None:
        """Refuse ``operation``, or note its names and cost."""
        measured = self._cache.get(operation.query)
        if measured is None:
            # In allow-list mode an unknown document is refused by its hash alone: neither
            # parsed nor cached, so a client sending new ones costs a hash each.
            if self._persisted and _digest(operation.query) not in self._persisted:
                return _NOT_PERSISTED
            measured = self._measure(operation.query)
        if self._persisted and measured.digest not in self._persisted:
            return _NOT_PERSISTED
        if measured.block is not None:
            if measured.suggesting is not None and self._sees_suggestions(principal):
                return measured.suggesting
            return measured.block
        cost = measured.cost
        if measured.size_variables:
            cost = variable_cost(measured, self.settings, operation.variables, self._schema)
            if cost > self.settings.max_cost:
                return limit_block("cost", cost, self.settings.max_cost, "max_cost")
        roles = principal.roles if principal is not None else frozenset()
        if measured.introspection and not roles & self._introspection_roles:
            return Block(403, "Forbidden", "Introspection is not allowed on this API.", reason="graphql.introspection")
        admin = measured.admin_field or (measured.mutation and self.settings.admin_mutations)
        if admin and not roles & self._admin_roles:
            return _FORBIDDEN
        refused = self._authorize(principal, measured)
        if refused is not None:
            return refused
        names.extend(measured.operations)
        costs.append(cost)
        return None

    def _sees_suggestions(self, principal: Principal | None) -> bool:
        """Whether field suggestions may reach ``principal``: they map the schema as
        introspection does, so the same roles see them."""
        return not self.settings.strip_suggestions or (
            principal is not None and bool(principal.roles & self._introspection_roles)
        )

    def _authorize(self, principal: Principal | None, measured: Measured) -> Block | None:
        """The refusal of the first ``operation_access`` or ``field_access`` rule the
        document meets and the principal does not satisfy."""
        if self._kind_rules:
            for kind in measured.kinds:
                rule = self._kind_rules.get(kind)
                if rule is not None and not rule.allows(principal):
                    return rule.refusal
        for name in measured.guarded:
            rule = self._field_rules[name]
            if not rule.allows(principal):
                return rule.refusal
        return None

    def _measure(self, query: str) -> Measured:
        """The document measured, and kept in the cache (bounded: the oldest entry goes when
        it is full)."""
        measured = measure(query, self.settings, self._schema)
        size = self.settings.cache_size
        if size:
            if len(self._cache) >= size:
                del self._cache[next(iter(self._cache))]
            self._cache[query] = measured
        return measured

    # -- response side -----------------------------------------------------------------------
    def on_response(self, exchange: Exchange) -> Block | None:
        response = exchange.response
        if (
            not self.settings.strip_suggestions
            or response is None
            or response.body is None
            or _SUGGESTION_BYTES not in response.body
        ):
            return None
        if self._sees_suggestions(exchange.principal):
            return None
        try:
            doc = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            return None
        if _strip(doc) and self.config.enforce:
            response.body = orjson.dumps(doc)
            response.headers = [(k, v) for k, v in response.headers if k not in _STALE]
            exchange.facts[self.name] = {"suggestions_removed": True}
        return None


def _digest(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def _strip(doc: object) -> bool:
    """Remove suggestions from the messages of a GraphQL response's (or a batch's) errors;
    whether any was removed."""
    changed = False
    for item in doc if isinstance(doc, list) else [doc]:
        errors = item.get("errors") if isinstance(item, dict) else None
        if not isinstance(errors, list):
            continue
        for error in errors:
            message = error.get("message") if isinstance(error, dict) else None
            if isinstance(message, str) and "Did you mean" in message:
                error["message"] = SUGGESTION.sub("", message)
                changed = True
    return changed


# -- reading the request -----------------------------------------------------------------------
def _operations(request: Request) -> list[Operation] | Block:
    """The GraphQL requests an HTTP request carries, or why it carries none Bastion can read."""
    if request.method in ("GET", "HEAD"):
        return _from_query_string(request.query)
    if request.query and _GRAPHQL_PARAMS & parse_qs(request.query, keep_blank_values=True).keys():
        # Some servers read a POST's document from the URL, others from the body: with both,
        # the gateway could check one and the upstream run the other.
        return malformed("A GraphQL POST request carries its query in the body, not in the URL.")
    media = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    body = request.body or b""
    if media == "application/graphql":
        try:
            return [Operation(body.decode("utf-8"), None)]
        except UnicodeDecodeError:
            return malformed("The GraphQL document is not UTF-8.")
    if media != "application/json":
        return Block(
            415,
            "Unsupported Media Type",
            "A GraphQL request is application/json or application/graphql.",
            reason="graphql.media_type",
        )
    if request.parsed_json is not None:
        value = request.parsed_json[0]
    else:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return malformed("The request body is not JSON.")
    if isinstance(value, dict):
        one = _from_json(value)
        return one if isinstance(one, Block) else [one]
    if isinstance(value, list) and value:
        out: list[Operation] = []
        for item in value:
            one = (
                _from_json(item) if isinstance(item, dict) else malformed("A batched GraphQL request is not an object.")
            )
            if isinstance(one, Block):
                return one
            out.append(one)
        return out
    return malformed("The request body is not a GraphQL request (an object, or a non-empty array of them).")


def _from_json(value: dict[str, object]) -> Operation | Block:
    query = value.get("query")
    if not isinstance(query, str):
        return malformed("The GraphQL request has no query (a string); a query known only by its hash is not accepted.")
    variables = value.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return malformed("The GraphQL request's variables are not an object.")
    return Operation(query, variables)


def _from_query_string(query_string: str) -> list[Operation] | Block:
    params = parse_qs(query_string, keep_blank_values=True)
    queries = params.get("query", [])
    if len(queries) != 1:
        return malformed("A GraphQL GET request has one query parameter.")
    variables: dict[str, object] | None = None
    given = params.get("variables", [])
    if len(given) > 1:
        return malformed("A GraphQL GET request has at most one variables parameter.")
    if given and given[0]:
        try:
            parsed = orjson.loads(given[0])
        except orjson.JSONDecodeError:
            return malformed("The GraphQL request's variables are not JSON.")
        if parsed is not None and not isinstance(parsed, dict):
            return malformed("The GraphQL request's variables are not an object.")
        variables = parsed
    return [Operation(queries[0], variables)]
