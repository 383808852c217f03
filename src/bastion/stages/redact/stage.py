"""The ``redact`` stage: sensitive values in response bodies and headers masked, removed,
blocked or counted, per route and per type.

The body goes through :meth:`RedactStage.on_response_chunk` as it streams (decoded by the
proxy when gzipped), with :attr:`~bastion.pipeline.stage.ResponseBodyStage.overlap` held
back so a value split across the upstream's reads is seen whole once. A chunk's values are
decided up to ``hold`` bytes before its end, so that anything that may go on into the next
piece is decided with it. The one approximation against a scan of the whole body: a value
that starts exactly at the first byte of a held-back piece is judged without the byte
before it, which can only add a finding, never lose one.

``block`` needs the decision before the head goes out: a route with a type on ``block``
buffers the response body (up to ``max_response_body_bytes``, beyond which the route's
``response_body_over_limit`` applies; ``pass`` is then refused at load) and decides in
:meth:`RedactStage.on_response`, answering 502 problem+json.
"""

from __future__ import annotations

from bastion.errors import BastionError
from bastion.pipeline.stage import ResponseBodyStage, ResponseStage, RouteInfo
from bastion.sensitive import Finding, Scanner
from bastion.stages.redact.apply import apply_actions, count
from bastion.stages.redact.config import RedactConfig
from bastion.types import Block, Exchange, HeaderList

#: Clean header values remembered per route, and the longest one remembered: bounded memory
#: whatever the upstream sends (a Date changes every second).
MAX_REMEMBERED = 1024
MAX_REMEMBERED_LENGTH = 256

_BLOCK = Block(
    status=502,
    title="Bad Gateway",
    detail="The upstream's response contained data this route may not return.",
    reason="redact.blocked",
)


class SensitiveDataInStream(BastionError):
    """A value on ``block`` found in a body whose head already went out: the stage fails
    (closed: the response is cut), since the client may not have the rest."""


class RedactStage(ResponseStage, ResponseBodyStage):
    """Finds the route's sensitive types in responses and applies their actions."""

    #: A response it did not see could carry what it exists to hide.
    response_body_required = True

    def __init__(self, config: RedactConfig) -> None:
        super().__init__("redact", config)
        self._actions: dict[str, str] = dict(config.action_of())
        self._scanner = Scanner(list(self._actions))
        self._hold = self._scanner.hold
        self.overlap = self._hold + 1
        self._blocking = "block" in self._actions.values()
        #: Decide ``block`` on the whole body, before the head goes out.
        self.needs_response_body = self._blocking
        self._headers = config.headers
        #: Header values found clean before (see :meth:`_redact_headers`).
        self._clean_values: set[str] = set()

    @classmethod
    def from_config(cls, config: RedactConfig, route: RouteInfo | None = None) -> RedactStage:
        return cls(config)

    def on_response(self, exchange: Exchange) -> Block | None:
        response = exchange.response
        if response is None:
            return None
        if self._headers and response.headers and self._redact_headers(exchange, response.headers):
            return _BLOCK
        body = response.body
        if self._blocking and body:
            for finding in self._scanner.find(body):
                if self._actions[finding.kind] == "block":
                    count(exchange, finding.kind)
                    return _BLOCK
        return None

    def on_response_chunk(self, exchange: Exchange, chunk: bytes, final: bool) -> bytes:
        last = len(chunk) if final else len(chunk) - self._hold
        if last <= 0:
            return chunk  # held back whole, seen again with the next piece
        found = self._scanner.find(chunk, 0, last)
        if not found:
            return chunk
        return self._apply(exchange, chunk, found)

    def _apply(self, exchange: Exchange, data: bytes, found: list[Finding]) -> bytes:
        """``data`` with each finding's action applied (and counted)."""
        out = apply_actions(exchange, self._actions, data, found)
        if isinstance(out, Finding):
            # Only reached when the head is out (on_response decides otherwise).
            raise SensitiveDataInStream(f"a {out.kind} value in a response body already being sent")
        return out

    def _redact_headers(self, exchange: Exchange, headers: HeaderList) -> bool:
        """Apply the actions to the header values in place; whether one must block."""
        # An upstream sends the same few values in every response (its Server, Content-Type,
        # Cache-Control...): a value once found clean is not scanned again. The others go
        # through one scan (most responses have nothing), per header only on a hit.
        clean = self._clean_values
        unseen = [v for _, v in headers if v not in clean]
        if not unseen:
            return False
        joined = "\n".join(unseen).encode("latin-1", "replace")
        if not self._scanner.find(joined):
            self._remember_clean(unseen)
            return False
        enforce = self.config.enforce
        for i, (name, value) in enumerate(headers):
            raw = value.encode("latin-1", "replace")
            found = self._scanner.find(raw)
            if not found:
                continue
            if any(self._actions[f.kind] == "block" for f in found):
                for f in found:
                    count(exchange, f.kind)
                return True
            changed = self._apply(exchange, raw, found)
            if enforce:
                headers[i] = (name, changed.decode("latin-1"))
        return False

    def _remember_clean(self, values: list[str]) -> None:
        """Remember values a scan found nothing in (the scan depends on the value alone: a
        value never matches across the line that joins it to the next); bounded, forgotten
        all at once when full."""
        clean = self._clean_values
        for value in values:
            if len(value) <= MAX_REMEMBERED_LENGTH:
                if len(clean) >= MAX_REMEMBERED:
                    clean.clear()
                clean.add(value)
