"""The ``validation`` stage's hook: the request against its OpenAPI operation."""

from __future__ import annotations

from bastion.pipeline.stage import RequestStage, RouteInfo
from bastion.stages.validation.check import MAX_LOGGED, Checker, Unsupported
from bastion.stages.validation.compiled import CompiledOperation, compile_operation
from bastion.stages.validation.config import ValidationConfig
from bastion.stages.validation.messages import Problem
from bastion.types import Block, Exchange


class ValidationStage(RequestStage):
    """Refuses requests that do not match their OpenAPI operation (400, or 415 for a media type)."""

    def __init__(self, config: ValidationConfig, operation: CompiledOperation | None) -> None:
        super().__init__("validation", config)
        self._checker = None if operation is None else Checker(config, operation)
        self._max_problems = config.max_problems
        self.needs_request_body = operation is not None and operation.media is not None

    @classmethod
    def from_config(cls, config: ValidationConfig, route: RouteInfo) -> ValidationStage | None:
        """Compile the route's operation; a route without one (declared by hand) needs no stage."""
        operation = compile_operation(config, route)
        return None if operation is None else cls(config, operation)

    def on_request(self, exchange: Exchange) -> Block | None:
        checker = self._checker
        if checker is None:
            return None
        found = checker.check(exchange.request)
        if found is None:
            return None
        if isinstance(found, Unsupported):
            return self._unsupported(exchange, checker.op, found.why)
        return self._block(exchange, found)

    # -- outcomes --------------------------------------------------------------------------
    def _block(self, exchange: Exchange, problems: list[Problem]) -> Block:
        exchange.facts[self.name] = [p.as_dict() for p in problems[:MAX_LOGGED]]
        shown = "; ".join(str(p) for p in problems[: self._max_problems])
        more = len(problems) - self._max_problems
        if more > 0:
            shown += f" (and {more} more)"
        return Block(400, "Bad Request", shown, reason=f"validation.{problems[0].kind}")

    def _unsupported(self, exchange: Exchange, op: CompiledOperation, why: str) -> Block:
        accepted = ", ".join(sorted(op.media or ())) or "none"
        detail = f"{why}; expected one of: {accepted}"
        exchange.facts[self.name] = [{"location": "header 'content-type'", "rule": detail}]
        return Block(415, "Unsupported Media Type", detail, reason="validation.content_type")
