"""Passive verbose-error detection: every answer of the scan, looked at for internals.

The ``API8-VERBOSE-ERRORS`` check provokes errors on purpose; but a stack trace, a framework debug page or a
database error can show up in any answer — to a discovery request, a login, another check's ordinary
request. :class:`TraceWatch` sees every answer the scan receives (:meth:`Scan.send` and :meth:`Scan.raw`)
and keeps the first one per target whose body matches a signature of the class of trace formats
(``checks.misconfig.STACK_TRACE``: Python, Java, .NET, Node.js, PHP, Ruby and Go traces, framework debug
pages, exception names, SQL error texts). A signature that the request itself carried (an echoed payload)
does not count. After the checks, each such answer becomes an ``API8-VERBOSE-ERRORS`` finding on its target,
unless the active check already reported that target; the evidence is redacted like any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

from bastion.tester.scan.checks.misconfig import STACK_TRACE, VERBOSE
from bastion.tester.scan.interface import Exchange, ScanFinding

__all__ = ["MAX_TARGETS", "TraceWatch", "trace_in"]

#: Distinct targets kept (a broken API may trace on every operation; the first ones make the point).
MAX_TARGETS = 20
#: How much of each answer is looked at.
SCANNED_BYTES = 64 * 1024


def trace_in(exchange: Exchange) -> str | None:
    """What kind of internal detail the answer shows that its request did not carry, or None."""
    if not exchange.response_body:
        return None
    # A trace shows in the first kilobytes; the regexes need not walk a megabyte of echoed payload.
    text = exchange.response_body[:SCANNED_BYTES].decode("utf-8", "replace")
    sent = unquote_plus(exchange.url) + "\n" + exchange.request_body.decode("utf-8", "replace")
    for label, pattern in STACK_TRACE:
        for match in pattern.finditer(text):
            if match.group(0).strip() and match.group(0).strip() not in sent:
                return label
    return None


@dataclass(frozen=True, slots=True)
class _Seen:
    exchange: Exchange
    what: str
    during: str  # the check ID that sent the request, or "engine" (discovery, logins, health)


class TraceWatch:
    """The first answer per target that showed internals (see the module docstring)."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def observe(self, target: str, during: str, exchange: Exchange) -> None:
        if target in self._seen or len(self._seen) >= MAX_TARGETS or exchange.status == 0:
            return
        what = trace_in(exchange)
        if what is not None:
            self._seen[target] = _Seen(exchange, what, during)

    def findings(self, reported: Iterable[str]) -> list[ScanFinding]:
        """One finding per target not in ``reported`` (targets the active check already found)."""
        known = set(reported)
        out: list[ScanFinding] = []
        for target, seen in self._seen.items():
            if target in known:
                continue
            when = "during discovery or a login" if seen.during == "engine" else f"to a request of {seen.during}"
            out.append(ScanFinding(VERBOSE, target,
                                   f"An answer {when} ({seen.exchange.status}) contains {seen.what}: the API shows "
                                   "its internals to clients without being provoked.", (seen.exchange,)))
        return out
