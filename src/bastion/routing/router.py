"""Match a normalised path and method to a route.

Precedence follows OpenAPI: a concrete path beats a templated one (``/books/new`` before
``/books/{id}``), then templates match segment by segment with literals tried before
parameters, then prefix routes, longest first. A path that matches but not for this
method is a 405 with ``Allow``; no match at all is a 404. Nothing here uses regular
expressions: matching is dictionary look-ups and string comparisons.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

T = TypeVar("T")


class Match(Generic[T]):
    """A route found for a request; ``params`` holds the decoded path parameters."""

    __slots__ = ("params", "route")

    def __init__(self, route: T, params: dict[str, str]) -> None:
        self.route = route
        self.params = params

    def __repr__(self) -> str:
        return f"Match(route={self.route!r}, params={self.params!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Match) and (self.route, self.params) == (other.route, other.params)

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
    methods: dict[str, object] | None = None


class _Table:
    def __init__(self) -> None:
        self.exact: dict[str, dict[str, object]] = {}
        self.root = _Node()
        self.prefixes: list[tuple[str, dict[str, object]]] = []


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
        self, path: str, methods: Iterable[str], route: T, *, host: str | None = None, prefix: bool = False
    ) -> None:
        """Declare ``route`` for ``methods`` on ``path`` (a template, or a prefix)."""
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
                for p in node.params:
                    if (p.prefix, p.suffix) == (pre, suf):
                        node = p.node
                        break
                else:
                    param = _Param(name, pre, suf, _Node())
                    node.params.append(param)
                    # Longer fixed parts are more specific: try them first.
                    node.params.sort(key=lambda p: len(p.prefix) + len(p.suffix), reverse=True)
                    node = param.node
            else:
                node = node.literal.setdefault(seg, _Node())
        if node.methods is None:
            node.methods = {}
        _add_methods(node.methods, methods, route, path)

    def match(self, host: str, path: str, method: str) -> Match[T] | list[str] | None:
        """The route for the request; the allowed methods (for a 405); or ``None`` (404)."""
        tables = self._tables
        # The first path that matches at all gives the 405's Allow when none has the method.
        allowed: list[dict[str, object]] = []
        if len(tables) == 1 and None in tables:  # the common case: no host-specific routes
            found = self._find(tables[None], path, method, allowed)
            if found is not None:
                return found
        else:
            host_key = host.partition(":")[0].lower() if host else ""
            for candidate in (tables.get(host_key), tables.get(None)):
                if candidate is None:
                    continue
                found = self._find(candidate, path, method, allowed)
                if found is not None:
                    return found
        return sorted(allowed[0]) if allowed else None

    @staticmethod
    def _find(table: _Table, path: str, method: str, allowed: list[dict[str, object]]) -> Match[T] | None:
        """The route of ``table`` for the request, trying exact paths, then templates, then
        prefixes; paths that match without the method are appended to ``allowed``."""
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
