"""The ``discovery`` stage's hooks: observation for ``bastion discover``, never a decision.

At the head, the query's parameter names and the kind of each value (``integer``,
``number``, ``boolean``, ``uuid``, ``string``) go into the exchange's facts. One response in
``1 / sample`` is chosen there too; its body is scanned as it streams, up to
``max_scan_bytes``, by the response-protection detectors, and the kinds found (``card``,
``email``...; never the values) are added to the facts. The audit log keeps the facts; the
work is the scan of a sampled body, nothing else waits on it.
"""

from __future__ import annotations

import random
import re
from urllib.parse import parse_qsl

from bastion.pipeline.stage import HeadStage, ResponseBodyStage, RouteInfo
from bastion.sensitive.scanner import Scanner
from bastion.stages.discovery.config import DiscoveryConfig
from bastion.types import Exchange

#: Parameters kept per request, and the longest name kept: a client chooses both.
MAX_PARAMETERS = 32
MAX_NAME = 64
_INTEGER = re.compile(r"^-?\d{1,18}$")
_NUMBER = re.compile(r"^-?\d+\.\d+(?:[eE][-+]?\d+)?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def value_kind(value: str) -> str:
    """The type a query value looks like: ``integer``, ``number``, ``boolean``, ``uuid`` or ``string``."""
    if _INTEGER.match(value):
        return "integer"
    if _NUMBER.match(value):
        return "number"
    if value in ("true", "false"):
        return "boolean"
    if _UUID.match(value):
        return "uuid"
    return "string"


class DiscoveryStage(HeadStage, ResponseBodyStage):
    """Leaves ``facts["discovery"]``: ``query`` (name -> kind), and on a sampled response
    ``returns`` (the sensitive data types its body carried) and ``scanned`` (bytes)."""

    def __init__(self, config: DiscoveryConfig) -> None:
        super().__init__("discovery", config)
        self._scanner = Scanner(config.types)
        # A value straddling two pieces is seen whole once (see ResponseBodyStage.overlap).
        self.overlap = self._scanner.hold
        self._sample = config.sample
        self._max = config.max_scan_bytes
        self._random = random.Random()

    @classmethod
    def from_config(cls, config: DiscoveryConfig, route: RouteInfo | None = None) -> DiscoveryStage:
        return cls(config)

    def on_request_head(self, exchange: Exchange) -> None:
        seen: dict[str, object] = {}
        query = exchange.request.query
        if query:
            params: dict[str, str] = {}
            for name, value in parse_qsl(query, keep_blank_values=True):
                if len(params) >= MAX_PARAMETERS:
                    break
                kind = value_kind(value)
                name = name[:MAX_NAME]
                known = params.get(name)
                params[name] = kind if known is None or known == kind else "string"
            seen["query"] = params
        if self._random.random() < self._sample:
            seen["returns"] = []
            seen["scanned"] = 0
        exchange.facts["discovery"] = seen

    def on_response_chunk(self, exchange: Exchange, chunk: bytes, final: bool) -> bytes:
        seen = exchange.facts.get("discovery")
        if not isinstance(seen, dict) or "scanned" not in seen:
            return chunk
        scanned = seen["scanned"]
        returns = seen["returns"]
        if not isinstance(scanned, int) or not isinstance(returns, list) or scanned >= self._max or not chunk:
            return chunk
        piece = chunk[: self._max - scanned]
        seen["scanned"] = scanned + len(piece)
        for finding in self._scanner.find(piece):
            if finding.kind not in returns:
                returns.append(finding.kind)
        return chunk
