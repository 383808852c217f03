"""The ``detection`` stage: anomaly scoring of every request input against the rule set."""

from __future__ import annotations

from bastion.pipeline.stage import RequestHook, RequestStage, RouteInfo
from bastion.stages.detection.config import DetectionConfig
from bastion.stages.detection.content import ContentMap, content_map
from bastion.stages.detection.engine import DetectionEngine, DetectionHook, Verdict, decide, shared_matcher
from bastion.stages.detection.modsec import ModSecurityEngine
from bastion.stages.detection.rules import CATEGORIES
from bastion.types import Block, Exchange

__all__ = ["DetectionEngine", "DetectionStage", "Verdict", "shared_matcher"]


class DetectionStage(RequestStage):
    """Blocks requests whose inputs score as an attack; logs every detection."""

    needs_request_body = True

    def __init__(self, config: DetectionConfig, content: ContentMap | None = None) -> None:
        super().__init__("detection", config)
        self.engine: DetectionEngine | ModSecurityEngine = (
            ModSecurityEngine(config) if config.engine == "modsecurity" else DetectionEngine(config, content=content)
        )
        # Whatever blocks somewhere must not be let through half-inspected: an attack of
        # that category could sit past the limit.
        self._block_uninspectable = config.uninspectable == "block" and any(
            config.category_mode(c) == "block" for c in CATEGORIES
        )
        #: The native engine's hook, compiled: what the chain calls (see request_hook).
        self._hook = (
            DetectionHook(self.name, self.engine, self._block_uninspectable)
            if isinstance(self.engine, DetectionEngine)
            else None
        )

    @classmethod
    def from_config(cls, config: DetectionConfig, route: RouteInfo | None = None) -> DetectionStage:
        """The stage for ``route``; the content kinds its OpenAPI operation declares on JSON
        body properties (``x-bastion-content``, see :mod:`.content`) apply there."""
        content = content_map(route.operation, route.openapi) if route is not None else None
        return cls(config, content)

    def on_request(self, exchange: Exchange) -> Block | None:
        hook = self._hook
        if hook is not None:
            return hook.on_request(exchange)
        engine = self.engine
        if not engine.active:
            return None
        verdict = engine.evaluate(exchange.request)
        if not verdict.hits and verdict.uninspected is None:
            return None
        return decide(
            self.name, exchange, verdict.log_record(), verdict.block_category, verdict.monitor_category,
            verdict.uninspected, self._block_uninspectable,
        )

    def request_hook(self) -> RequestHook:
        # The compiled hook itself, for the native engine: no interpreted frame per request.
        hook = self._hook
        return self.on_request if hook is None else hook.on_request
