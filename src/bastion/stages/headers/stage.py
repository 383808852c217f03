"""The ``headers`` stage's hooks."""

from __future__ import annotations

from bastion.pipeline.stage import ResponseStage, RouteInfo
from bastion.stages.headers.config import HeadersConfig
from bastion.stages.headers.rewrite import rewrite_headers
from bastion.types import Block, Exchange


class HeadersStage(ResponseStage):
    """Sets and strips response headers; never blocks."""

    def __init__(self, config: HeadersConfig) -> None:
        super().__init__("headers", config)
        # Work out once which names are replaced, so the per-response loop is one pass.
        self._drop = frozenset(config.remove) | frozenset(config.set)
        self._set = list(config.set.items())
        self._add_if_missing = list(config.add_if_missing.items())

    @classmethod
    def from_config(cls, config: HeadersConfig, route: RouteInfo | None = None) -> HeadersStage:
        return cls(config)

    def on_response(self, exchange: Exchange) -> Block | None:
        response = exchange.response
        if response is None:
            return None
        response.headers = rewrite_headers(response.headers, self._drop, self._set, self._add_if_missing)
        return None
