"""The ``detection`` stage: anomaly scoring of every request input against the rule set."""

from __future__ import annotations

from bastion.pipeline.stage import RequestStage, RouteInfo
from bastion.stages.detection.config import DetectionConfig
from bastion.stages.detection.content import ContentMap, content_map
from bastion.stages.detection.engine import DetectionEngine, Verdict, shared_matcher
from bastion.stages.detection.modsec import ModSecurityEngine
from bastion.stages.detection.rules import CATEGORIES
from bastion.types import Block, Decision, Exchange, Response

BLOCK_TITLE = "Forbidden"
BLOCK_DETAIL = "The request was blocked by the gateway's attack detection."
UNINSPECTABLE_TITLE = "Content Too Large"
UNINSPECTABLE_DETAIL = "The request carries more content than the gateway inspects for attacks."

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

    @classmethod
    def from_config(cls, config: DetectionConfig, route: RouteInfo | None = None) -> DetectionStage:
        """The stage for ``route``; the content kinds its OpenAPI operation declares on JSON
        body properties (``x-bastion-content``, see :mod:`.content`) apply there."""
        content = content_map(route.operation, route.openapi) if route is not None else None
        return cls(config, content)

    def on_request(self, exchange: Exchange) -> Block | Response | None:
        if not self.engine.active:
            return None
        verdict = self.engine.evaluate(exchange.request)
        if not verdict.hits and verdict.uninspected is None:
            return None
        exchange.facts[self.name] = verdict.log_record()
        if verdict.block_category is not None:
            return Block(403, BLOCK_TITLE, BLOCK_DETAIL, reason=f"detection.{verdict.block_category}")
        if verdict.uninspected is not None:
            # Part of the request was not inspected: an attack could sit past the limit.
            if self._block_uninspectable:
                return Block(413, UNINSPECTABLE_TITLE, UNINSPECTABLE_DETAIL, reason="detection.uninspectable")
            exchange.decisions.append(Decision(self.name, "monitor", "detection.uninspectable", 413))
        if verdict.monitor_category is not None:
            exchange.decisions.append(Decision(self.name, "monitor", f"detection.{verdict.monitor_category}", 403))
        return None
