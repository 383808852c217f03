"""API discovery from the audit log: the endpoints clients call that no route declares
(shadow and zombie endpoints, old versions, probes), and the declared routes nobody calls.

A request that matched no route is refused by the core (404 ``route.not_found``, 405
``route.method_not_allowed``) and still audited, with its method and path. Its path is
reduced to a template -- a numeric, UUID or long hexadecimal segment becomes a parameter
(``/v1/orders/1234`` -> ``/v1/orders/{id}``) -- so one endpoint called with many object ids
is one line, with how often, by how many clients, and when. Synchronous: run by ``bastion
discover``, never on the request path.

Routes with the ``discovery`` stage (a catch-all, a service whose API is not declared yet)
leave what it observed in their requests' records: the query parameters with the type of
each value, and on a sample of responses the sensitive data types the body carried. Those
are grouped the same way (:func:`observed`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Text, cast, func, select

from bastion.store.models import AuditRecord

#: The reasons of the core's refusals of a request no route declares.
UNDECLARED_REASONS = ("route.not_found", "route.method_not_allowed")
#: The operations an OpenAPI 3.1 path item can declare (any other method cannot be written there).
OPENAPI_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"})

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Eight or more hex digits with at least one digit: an object id or a hash, not a word
# such as "accessed" (all of whose letters are hex digits too).
_HEX = re.compile(r"^(?=[a-zA-Z]*[0-9])[0-9a-fA-F]{8,}$")

#: What a parameter segment looked like: its schema in the OpenAPI fragment.
_SCHEMAS: dict[str, dict[str, str]] = {
    "integer": {"type": "integer"},
    "uuid": {"type": "string", "format": "uuid"},
    "hex": {"type": "string", "pattern": "^[0-9a-fA-F]+$"},
    "string": {"type": "string"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
}


def _kind(segment: str) -> str | None:
    """What kind of object id ``segment`` is (``None``: a literal segment)."""
    if segment.isdigit() and segment.isascii():
        return "integer"
    if _UUID.match(segment):
        return "uuid"
    if _HEX.match(segment):
        return "hex"
    return None


def template(path: str) -> tuple[str, tuple[str, ...]]:
    """``path`` with each id segment replaced by a parameter (``{id}``, then ``{id2}``...),
    and the kind of each parameter in order."""
    kinds: list[str] = []
    parts = []
    for segment in path.split("/"):
        kind = _kind(segment) if segment else None
        if kind is None:
            parts.append(segment)
            continue
        kinds.append(kind)
        parts.append("{id}" if len(kinds) == 1 else f"{{id{len(kinds)}}}")
    return "/".join(parts), tuple(kinds)


@dataclass
class Undeclared:
    """One endpoint (method and path template) clients called that no route declares."""

    method: str
    path: str
    requests: int
    first_seen: datetime
    last_seen: datetime
    statuses: set[int] = field(default_factory=set)
    clients: set[str] = field(default_factory=set)
    #: Per parameter, the kinds of segment seen in its place.
    kinds: list[set[str]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "requests": self.requests,
            "clients": len(self.clients),
            "statuses": sorted(self.statuses),
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
        }

    def parameter_schema(self, index: int) -> dict[str, str]:
        kinds = self.kinds[index]
        return dict(_SCHEMAS[next(iter(kinds)) if len(kinds) == 1 else "string"])


@dataclass(frozen=True)
class Unused:
    """A declared route no request reached within the time range."""

    route: str
    service: str
    methods: tuple[str, ...]
    path: str

    def document(self) -> dict[str, Any]:
        return {"route": self.route, "service": self.service, "methods": list(self.methods), "path": self.path}


@dataclass(frozen=True)
class DeclaredRoute:
    """What discovery needs of a configured route."""

    id: str
    service: str
    methods: frozenset[str]
    path: str


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def undeclared(engine: Engine, since: datetime) -> list[Undeclared]:
    """The undeclared endpoints called since ``since``, the most called first."""
    a = AuditRecord
    query = (
        select(a.method, a.path, a.client, a.status, func.count(), func.min(a.ts), func.max(a.ts))
        .where(a.ts >= since, a.route.is_(None), a.reason.in_(UNDECLARED_REASONS))
        .group_by(a.method, a.path, a.client, a.status)
    )
    found: dict[tuple[str, str], Undeclared] = {}
    with engine.connect() as conn:
        for method, path, client, status, count, first, last in conn.execute(query):
            if path is None:
                continue
            shape, kinds = template(path)
            entry = found.get((method, shape))
            if entry is None:
                entry = found[(method, shape)] = Undeclared(
                    method, shape, 0, first, last, kinds=[set() for _ in kinds]
                )
            entry.requests += count
            entry.first_seen = min(entry.first_seen, first)
            entry.last_seen = max(entry.last_seen, last)
            entry.statuses.add(status)
            entry.clients.add(client)
            for seen, kind in zip(entry.kinds, kinds, strict=True):
                seen.add(kind)
    return sorted(found.values(), key=lambda e: (-e.requests, e.path, e.method))


def unused(engine: Engine, since: datetime, routes: Iterable[DeclaredRoute]) -> list[Unused]:
    """The declared routes no audited request reached since ``since``, in declaration order."""
    a = AuditRecord
    with engine.connect() as conn:
        seen = set(conn.scalars(select(a.route).where(a.ts >= since, a.route.is_not(None)).distinct()))
    result = []
    for route in routes:
        if route.id in seen:
            continue
        # HEAD comes with GET on an OpenAPI route: name it only when it is all there is.
        methods = sorted(route.methods - {"HEAD"}) or sorted(route.methods)
        result.append(Unused(route.id, route.service, tuple(methods), route.path))
    return result


@dataclass
class Observed:
    """One endpoint (method and path template) of a route with the ``discovery`` stage."""

    method: str
    path: str
    route: str
    requests: int = 0
    #: Responses whose body was scanned (the sample).
    sampled: int = 0
    #: Query parameter -> the kinds of value seen (``integer``, ``uuid``, ``string``...).
    query: dict[str, set[str]] = field(default_factory=dict)
    #: The sensitive data types the sampled responses carried.
    returns: set[str] = field(default_factory=set)
    #: Per path parameter, the kinds of segment seen in its place.
    kinds: list[set[str]] = field(default_factory=list)

    def parameters(self) -> dict[str, str]:
        """Each query parameter's type: the one kind seen, or ``string`` when they differ."""
        return {name: next(iter(k)) if len(k) == 1 else "string" for name, k in sorted(self.query.items())}

    def document(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "requests": self.requests,
            "query": self.parameters(),
            "sampled": self.sampled,
            "returns": sorted(self.returns),
        }


def observed(engine: Engine, since: datetime) -> list[Observed]:
    """The endpoints the ``discovery`` stage observed since ``since``, the most called first."""
    a = AuditRecord
    query = (
        select(a.method, a.path, a.route, a.details)
        .where(a.ts >= since, a.route.is_not(None), cast(a.details, Text).like('%"discovery"%'))
        .execution_options(yield_per=1000)
    )
    found: dict[tuple[str, str], Observed] = {}
    with engine.connect() as conn:
        for method, path, route, details in conn.execute(query):
            seen = (details or {}).get("evidence", {}).get("discovery")
            if path is None or not isinstance(seen, dict):
                continue
            shape, kinds = template(path)
            entry = found.get((method, shape))
            if entry is None:
                entry = found[(method, shape)] = Observed(method, shape, route, kinds=[set() for _ in kinds])
            entry.requests += 1
            for place, kind in zip(entry.kinds, kinds, strict=True):
                place.add(kind)
            params = seen.get("query")
            if isinstance(params, dict):
                for name, kind in params.items():
                    entry.query.setdefault(str(name), set()).add(str(kind) if kind in _SCHEMAS else "string")
            returns = seen.get("returns")
            if isinstance(returns, list):
                entry.sampled += 1
                entry.returns.update(str(r) for r in returns)
    return sorted(found.values(), key=lambda e: (-e.requests, e.path, e.method))


def openapi_fragment(
    endpoints: Sequence[Undeclared], seen: Sequence[Observed] = ()
) -> tuple[dict[str, Any], list[Undeclared]]:
    """A draft OpenAPI 3.1 document declaring ``endpoints``, to review and adopt, and the
    endpoints it could not declare (a method OpenAPI 3.1 has no place for)."""
    paths: dict[str, dict[str, Any]] = {}
    skipped = []
    for entry in sorted(endpoints, key=lambda e: (e.path, e.method)):
        # A path with a brace of its own would declare a parameter it does not have.
        if entry.method not in OPENAPI_METHODS or entry.path.count("{") != len(entry.kinds):
            skipped.append(entry)
            continue
        names = ["id" if n == 1 else f"id{n}" for n in range(1, len(entry.kinds) + 1)]
        operation: dict[str, Any] = {
            "summary": f"Discovered by Bastion: {entry.requests} request(s) no route declares",
            # Not x-bastion-*: those are Bastion's settings, which this document must load without.
            "x-discovered": entry.document(),
            "responses": {"default": {"description": "Not observed: the gateway refused these requests."}},
        }
        if names:
            operation["parameters"] = [
                {"name": name, "in": "path", "required": True, "schema": entry.parameter_schema(i)}
                for i, name in enumerate(names)
            ]
        paths.setdefault(entry.path, {})[entry.method.lower()] = operation
    for obs in sorted(seen, key=lambda e: (e.path, e.method)):
        item = paths.setdefault(obs.path, {})
        if obs.method not in OPENAPI_METHODS or obs.path.count("{") != len(obs.kinds) or obs.method.lower() in item:
            continue
        item[obs.method.lower()] = _observed_operation(obs)
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "Endpoints discovered in traffic",
            "version": "draft",
            "description": (
                "Requests Bastion refused because no route declares them, and what the discovery stage "
                "observed behind catch-all routes. Review before adopting."
            ),
        },
        "paths": paths,
    }
    return document, skipped


def _observed_operation(obs: Observed) -> dict[str, Any]:
    """The draft operation of an observed endpoint: its path and query parameters, typed
    from what was seen, and the sensitive data types its responses carried."""
    operation: dict[str, Any] = {
        "summary": f"Discovered by Bastion: {obs.requests} request(s) through route {obs.route}",
        "x-discovered": obs.document(),
        "responses": {"default": {"description": "Observed; describe it before adopting."}},
    }
    if obs.returns:
        # Which sensitive data the responses carried: what the response stage should filter.
        operation["x-sensitive-data"] = sorted(obs.returns)
    parameters = [
        {"name": "id" if n == 0 else f"id{n + 1}", "in": "path", "required": True,
         "schema": dict(_SCHEMAS[next(iter(k)) if len(k) == 1 else "string"])}
        for n, k in enumerate(obs.kinds)
    ]
    parameters += [
        {"name": name, "in": "query", "schema": dict(_SCHEMAS[kind])} for name, kind in obs.parameters().items()
    ]
    if parameters:
        operation["parameters"] = parameters
    return operation
