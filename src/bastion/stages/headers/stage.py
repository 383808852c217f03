"""The ``headers`` stage's hooks."""

from __future__ import annotations

from bastion.pipeline.stage import ResponseStage, RouteInfo
from bastion.stages.headers.config import HeadersConfig
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
        drop = self._drop
        headers = [(k, v) for k, v in response.headers if k not in drop]
        if self._add_if_missing:
            present = {k for k, _ in headers}
            headers.extend((k, v) for k, v in self._add_if_missing if k not in present)
        headers.extend(self._set)
        response.headers = headers
        return None
