"""Match a normalised path and method to a route.

Precedence follows OpenAPI: a concrete path beats a templated one (``/books/new`` before
``/books/{id}``), then templates match segment by segment with literals tried before
parameters, then prefix routes, longest first. A path that matches but not for this
method is a 405 with ``Allow``; no match at all is a 404. Nothing here uses regular
expressions: matching is dictionary look-ups and string comparisons.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
        if len(self._tables) == 1 and None in self._tables:
            # Common case: no host-specific routes; try the direct look-ups first.
            table = self._tables[None]
            exact = table.exact.get(path)
            if exact is not None:
                route = exact.get(method)
                if route is not None:
                    return Match(route, {})  # type: ignore[arg-type]
            elif not (table.root.literal or table.root.params):
                for base, methods in table.prefixes:
                    if not base or path == base or path.startswith(base + "/"):
                        route = methods.get(method)
                        if route is not None:
                            return Match(route, {})  # type: ignore[arg-type]
                        return sorted(methods)
                return None
        host_key = host.partition(":")[0].lower() if host else ""
        first_allowed: list[str] | None = None
        for candidate in (self._tables.get(host_key), self._tables.get(None)):
            if candidate is None:
                continue
            for methods, params in self._candidates(candidate, path):
                route = methods.get(method)
                if route is not None:
                    return Match(route, params)  # type: ignore[arg-type]
                if first_allowed is None:
                    first_allowed = sorted(methods)
        return first_allowed

    def _candidates(self, table: _Table, path: str) -> Iterator[tuple[dict[str, object], dict[str, str]]]:
        exact = table.exact.get(path)
        if exact is not None:
            yield exact, {}
        if table.root.literal or table.root.params:
            yield from _walk(table.root, path.split("/")[1:], 0, {})
        for base, methods in table.prefixes:
            if not base or path == base or path.startswith(base + "/"):
                yield methods, {}


def _walk(
    node: _Node, segs: list[str], i: int, params: dict[str, str]
) -> Iterator[tuple[dict[str, object], dict[str, str]]]:
    if i == len(segs):
        if node.methods is not None:
            yield node.methods, dict(params)
        return
    seg = segs[i]
    child = node.literal.get(seg)
    if child is not None:
        yield from _walk(child, segs, i + 1, params)
    for p in node.params:
        if len(seg) > len(p.prefix) + len(p.suffix) and seg.startswith(p.prefix) and seg.endswith(p.suffix):
            value = seg[len(p.prefix) : len(seg) - len(p.suffix)] if p.suffix else seg[len(p.prefix) :]
            params[p.name] = unquote(value)
            yield from _walk(p.node, segs, i + 1, params)
            del params[p.name]
