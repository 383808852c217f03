"""The ``validation`` stage's hook: the request against its OpenAPI operation."""

from __future__ import annotations

from bastion.pipeline.stage import RequestHook, RequestStage, RouteInfo
from bastion.stages.validation.check import STAGE_NAME, Checker
from bastion.stages.validation.compiled import CompiledOperation, compile_operation
from bastion.stages.validation.config import ValidationConfig
from bastion.types import Block, Exchange


class ValidationStage(RequestStage):
    """Refuses requests that do not match their OpenAPI operation (400, or 415 for a media type)."""

    def __init__(self, config: ValidationConfig, operation: CompiledOperation | None) -> None:
        super().__init__(STAGE_NAME, config)
        self._checker = None if operation is None else Checker(config, operation)
        self.needs_request_body = operation is not None and operation.media is not None

    @classmethod
    def from_config(cls, config: ValidationConfig, route: RouteInfo) -> ValidationStage | None:
        """Compile the route's operation; a route without one (declared by hand) needs no stage."""
        operation = compile_operation(config, route)
        return None if operation is None else cls(config, operation)

    def on_request(self, exchange: Exchange) -> Block | None:
        checker = self._checker
        return None if checker is None else checker.on_request(exchange)

    def request_hook(self) -> RequestHook:
        # The compiled checker's hook itself: no interpreted frame per request.
        checker = self._checker
        return self.on_request if checker is None else checker.on_request
