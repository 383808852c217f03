"""The ``headers`` stage's hooks."""

from __future__ import annotations

from bastion.pipeline.stage import ResponseStage, RouteInfo
from bastion.stages.headers.config import HeadersConfig
from bastion.stages.headers.rewrite import rewrite_headers
from bastion.types import Block, Exchange

_CACHE_CONTROL = "cache-control"


class HeadersStage(ResponseStage):
    """Sets and strips response headers; never blocks."""

    def __init__(self, config: HeadersConfig) -> None:
        super().__init__("headers", config)
        # Work out once which names are replaced, so the per-response loop is one pass.
        exact = [name for name in config.remove if not name.endswith("*")]
        self._drop_prefixes = tuple(name[:-1] for name in config.remove if name.endswith("*"))
        self._drop = frozenset(exact) | frozenset(config.set)
        self._set = list(config.set.items())
        self._add_if_missing = list(config.add_if_missing.items())
        # Authenticated responses: the same lists with the route's Cache-Control in place.
        self._drop_signed_in = self._drop
        self._set_signed_in = self._set
        self._add_if_missing_signed_in = self._add_if_missing
        cache = config.authenticated_cache_control
        if cache is not None:
            self._drop_signed_in = self._drop | {_CACHE_CONTROL}
            self._set_signed_in = [h for h in self._set if h[0] != _CACHE_CONTROL] + [(_CACHE_CONTROL, cache)]
            self._add_if_missing_signed_in = [h for h in self._add_if_missing if h[0] != _CACHE_CONTROL]

    @classmethod
    def from_config(cls, config: HeadersConfig, route: RouteInfo | None = None) -> HeadersStage:
        return cls(config)

    def on_response(self, exchange: Exchange) -> Block | None:
        response = exchange.response
        if response is None:
            return None
        if exchange.principal is None:
            drop, replace, missing = self._drop, self._set, self._add_if_missing
        else:
            drop, replace, missing = self._drop_signed_in, self._set_signed_in, self._add_if_missing_signed_in
        response.headers = rewrite_headers(response.headers, drop, replace, missing, self._drop_prefixes)
        return None
