"""Match a normalised path and method to a route.

Precedence follows OpenAPI: a concrete path beats a templated one (``/books/new`` before
``/books/{id}``), then templates match segment by segment with literals tried before
parameters, then prefix routes, longest first. A path that matches but not for this
method is a 405 with ``Allow``; no match at all is a 404. Nothing here uses regular
expressions: matching is dictionary look-ups and string comparisons.

Matrix-style parameters (OpenAPI ``style: matrix``, ``/items/;color=blue,green``) live in
the ``;params`` the normaliser drops. A template declaring one is matched first, and only
when the path had ``;params``, against the path's matrix form (``;params`` kept): a matrix
parameter takes a whole segment's raw ``;name=value`` text; every other segment is matched
as in the normalised path (its ``;params`` dropped) and no ``;params``-only segment may be
left over. Such a match carries the path to forward: its matrix segments as sent, the rest
normalised, so the upstream gets the parameter and nothing Bastion did not route on.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

T = TypeVar("T")


class Match(Generic[T]):
    """A route found for a request; ``params`` holds the decoded path parameters (matrix-style
    ones raw, ``;name=value`` as sent: their style is parsed, and decoded, by validation).
    ``path`` is the path to forward when it is not the normalised one (a matrix route)."""

    __slots__ = ("params", "path", "route")

    def __init__(self, route: T, params: dict[str, str], path: str | None = None) -> None:
        self.route = route
        self.params = params
        self.path = path

    def __repr__(self) -> str:
        return f"Match(route={self.route!r}, params={self.params!r}, path={self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Match) and (self.route, self.params, self.path) == (
            other.route, other.params, other.path)

    __hash__ = None  # type: ignore[assignment]


@dataclass(slots=True)
class _Param:
    name: str
    prefix: str
    suffix: str
    node: _Node


@dataclass(slots=True)
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    params: list[_Param] = field(default_factory=list)
    #: Matrix-style parameters: tried only against the matrix form of a path.
    matrix: list[_Param] = field(default_factory=list)
    methods: dict[str, object] | None = None


class _Table:
    def __init__(self) -> None:
        self.exact: dict[str, dict[str, object]] = {}
        self.root = _Node()
        self.prefixes: list[tuple[str, dict[str, object]]] = []
        #: Some template of this table has a matrix-style parameter.
        self.matrix = False


def _add_methods(target: dict[str, object], methods: Iterable[str], route: object, path: str) -> None:
    for m in methods:
        if m in target and target[m] is not route:
            raise ValueError(f"{m} {path} is declared twice")
        target[m] = route


class Router(Generic[T]):
    """Routes keyed by host (``None`` = any host), path template, and method."""

    def __init__(self) -> None:
        self._tables: dict[str | None, _Table] = {}

    def add(
        self, path: str, methods: Iterable[str], route: T, *, host: str | None = None, prefix: bool = False,
        matrix: Collection[str] = (),
    ) -> None:
        """Declare ``route`` for ``methods`` on ``path`` (a template, or a prefix); ``matrix``
        names the template's parameters that are matrix-style."""
        table = self._tables.setdefault(host.lower() if host else None, _Table())
        if prefix:
            base = path.rstrip("/")
            for known, existing in table.prefixes:
                if known == base:
                    _add_methods(existing, methods, route, path)
                    return
            table.prefixes.append((base, {}))
            _add_methods(table.prefixes[-1][1], methods, route, path)
            table.prefixes.sort(key=lambda item: len(item[0]), reverse=True)
            return
        if "{" not in path:
            _add_methods(table.exact.setdefault(path, {}), methods, route, path)
            return
        node = table.root
        for seg in path.split("/")[1:]:
            if "{" in seg:
                open_, close = seg.index("{"), seg.index("}")
                name, pre, suf = seg[open_ + 1 : close], seg[:open_], seg[close + 1 :]
                siblings = node.matrix if name in matrix else node.params
                table.matrix = table.matrix or name in matrix
                for p in siblings:
                    if (p.prefix, p.suffix) == (pre, suf):
                        node = p.node
                        break
                else:
                    param = _Param(name, pre, suf, _Node())
                    siblings.append(param)
                    # Longer fixed parts are more specific: try them first.
                    siblings.sort(key=lambda p: len(p.prefix) + len(p.suffix), reverse=True)
                    node = param.node
            else:
                node = node.literal.setdefault(seg, _Node())
        if node.methods is None:
            node.methods = {}
        _add_methods(node.methods, methods, route, path)

    def match(
        self, host: str, path: str, method: str, matrix_path: str | None = None
    ) -> Match[T] | list[str] | None:
        """The route for the request; the allowed methods (for a 405); or ``None`` (404).

        ``matrix_path`` is the path's matrix form (see ``split_target``), ``None`` when the
        request has no ``;params``.
        """
        tables = self._tables
        # The first path that matches at all gives the 405's Allow when none has the method.
        allowed: list[dict[str, object]] = []
        if len(tables) == 1 and None in tables:  # the common case: no host-specific routes
            found = self._find(tables[None], path, method, allowed, matrix_path)
            if found is not None:
                return found
        else:
            host_key = host.partition(":")[0].lower() if host else ""
            for candidate in (tables.get(host_key), tables.get(None)):
                if candidate is None:
                    continue
                found = self._find(candidate, path, method, allowed, matrix_path)
                if found is not None:
                    return found
        return sorted(allowed[0]) if allowed else None

    @staticmethod
    def _find(
        table: _Table, path: str, method: str, allowed: list[dict[str, object]], matrix_path: str | None
    ) -> Match[T] | None:
        """The route of ``table`` for the request, trying matrix templates (when the path has
        ``;params``), then exact paths, then templates, then prefixes; paths that match
        without the method are appended to ``allowed``."""
        if matrix_path is not None and table.matrix:
            taken: dict[str, str] = {}
            used: list[str] = []
            route = _search_matrix(table.root, matrix_path.split("/")[1:], 0, method, taken, allowed, used, False)
            if route is not None:
                return Match(route, taken, "/" + "/".join(used))  # type: ignore[arg-type]
        exact = table.exact.get(path)
        if exact is not None:
            route = exact.get(method)
            if route is not None:
                return Match(route, {})  # type: ignore[arg-type]
            allowed.append(exact)
        if table.root.literal or table.root.params:
            params: dict[str, str] = {}
            route = _search(table.root, path.split("/")[1:], 0, method, params, allowed)
            if route is not None:
                return Match(route, params)  # type: ignore[arg-type]
        for base, methods in table.prefixes:
            if not base or path == base or path.startswith(base + "/"):
                route = methods.get(method)
                if route is not None:
                    return Match(route, {})  # type: ignore[arg-type]
                allowed.append(methods)
        return None


def _search(
    node: _Node, segs: list[str], i: int, method: str, params: dict[str, str], allowed: list[dict[str, object]]
) -> object | None:
    """Depth first, literals before parameters: the first template with the method. On
    success ``params`` holds the path parameters of that template (and only those)."""
    if i == len(segs):
        if node.methods is None:
            return None
        route = node.methods.get(method)
        if route is None:
            allowed.append(node.methods)
        return route
    seg = segs[i]
    child = node.literal.get(seg)
    if child is not None:
        route = _search(child, segs, i + 1, method, params, allowed)
        if route is not None:
            return route
    for p in node.params:
        if len(seg) > len(p.prefix) + len(p.suffix) and seg.startswith(p.prefix) and seg.endswith(p.suffix):
            value = seg[len(p.prefix) : len(seg) - len(p.suffix)] if p.suffix else seg[len(p.prefix) :]
            params[p.name] = unquote(value) if "%" in value else value
            route = _search(p.node, segs, i + 1, method, params, allowed)
            if route is not None:
                return route
            del params[p.name]
    return None


def _search_matrix(
    node: _Node, segs: list[str], i: int, method: str, params: dict[str, str], allowed: list[dict[str, object]],
    used: list[str], matrix_seen: bool,
) -> object | None:
    """:func:`_search` over a path's matrix form, for a template with a matrix parameter:
    a segment of ``;params`` only must be taken by one; other segments match literals and
    parameters without their ``;params``. ``used`` collects the segments as matched (the
    path to forward). Only a template that took a matrix parameter matches: the others are
    left to :func:`_search` on the normalised path, as if this search had not run."""
    if i == len(segs):
        if node.methods is None or not matrix_seen:
            return None
        route = node.methods.get(method)
        if route is None:
            allowed.append(node.methods)
        return route
    seg = segs[i]
    base, semi, _ = seg.partition(";")
    if base or not semi:
        child = node.literal.get(base)
        if child is not None:
            used.append(base)
            route = _search_matrix(child, segs, i + 1, method, params, allowed, used, matrix_seen)
            if route is not None:
                return route
            used.pop()
        for p in node.params:
            if len(base) > len(p.prefix) + len(p.suffix) and base.startswith(p.prefix) and base.endswith(p.suffix):
                value = base[len(p.prefix) : len(base) - len(p.suffix)] if p.suffix else base[len(p.prefix) :]
                params[p.name] = unquote(value) if "%" in value else value
                used.append(base)
                route = _search_matrix(p.node, segs, i + 1, method, params, allowed, used, matrix_seen)
                if route is not None:
                    return route
                used.pop()
                del params[p.name]
    if semi:
        for p in node.matrix:
            if len(seg) > len(p.prefix) + len(p.suffix) and seg.startswith(p.prefix) and seg.endswith(p.suffix):
                value = seg[len(p.prefix) : len(seg) - len(p.suffix)] if p.suffix else seg[len(p.prefix) :]
                if not value.startswith(";"):
                    continue  # ";" in the fixed prefix, or the value is not matrix-style
                params[p.name] = value  # raw: validation splits it, then decodes the pieces
                used.append(seg)
                route = _search_matrix(p.node, segs, i + 1, method, params, allowed, used, True)
                if route is not None:
                    return route
                used.pop()
                del params[p.name]
    return None
