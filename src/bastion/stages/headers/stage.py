"""The ``headers`` stage's hooks."""

from __future__ import annotations

from bastion.pipeline.stage import ResponseHook, ResponseStage, RouteInfo
from bastion.stages.headers.config import HeadersConfig
from bastion.stages.headers.rewrite import HeaderRewrite
from bastion.types import Block, Exchange

_CACHE_CONTROL = "cache-control"


class HeadersStage(ResponseStage):
    """Sets and strips response headers; never blocks."""

    def __init__(self, config: HeadersConfig) -> None:
        super().__init__("headers", config)
        # Work out once which names are replaced, so the per-response loop is one pass.
        exact = [name for name in config.remove if not name.endswith("*")]
        drop_prefixes = tuple(name[:-1] for name in config.remove if name.endswith("*"))
        drop = frozenset(exact) | frozenset(config.set)
        replace = list(config.set.items())
        add_if_missing = list(config.add_if_missing.items())
        # Authenticated responses: the same lists with the route's Cache-Control in place.
        signed_in = (drop, replace, add_if_missing)
        cache = config.authenticated_cache_control
        if cache is not None:
            signed_in = (
                drop | {_CACHE_CONTROL},
                [h for h in replace if h[0] != _CACHE_CONTROL] + [(_CACHE_CONTROL, cache)],
                [h for h in add_if_missing if h[0] != _CACHE_CONTROL],
            )
        #: The per-response work, compiled: the chain calls its hook directly.
        self._rewrite = HeaderRewrite(drop, replace, add_if_missing, drop_prefixes, signed_in)

    @classmethod
    def from_config(cls, config: HeadersConfig, route: RouteInfo | None = None) -> HeadersStage:
        return cls(config)

    def on_response(self, exchange: Exchange) -> Block | None:
        return self._rewrite.on_response(exchange)

    def response_hook(self) -> ResponseHook:
        return self._rewrite.on_response
