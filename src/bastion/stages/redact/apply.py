"""The redact stage's per-piece work, apart from its class so that it can be compiled with
mypyc (stage classes stay interpreted: the chain checks them against their abstract bases).

:func:`apply_actions` turns a piece of body (or a header value) and its findings into what
the client gets; :func:`count` records each value found in the exchange's facts.
"""

from __future__ import annotations

from bastion.sensitive.replace import mask, removal_mark
from bastion.sensitive.scanner import Finding
from bastion.types import Exchange


def apply_actions(exchange: Exchange, actions: dict[str, str], data: bytes, found: list[Finding]) -> bytes | Finding:
    """``data`` with each finding's action applied and counted; the first finding on
    ``block`` instead (counted, and the ones before it), for the caller to refuse."""
    out: list[bytes] = []
    pos = 0
    for finding in found:
        action = actions[finding.kind]
        count(exchange, finding.kind)
        if action == "alert":
            continue
        if action == "block":
            return finding
        out.append(data[pos : finding.start])
        out.append(mask(data[finding.start : finding.end]) if action == "mask" else removal_mark(finding.kind))
        pos = finding.end
    if pos == 0:
        return data
    out.append(data[pos:])
    return b"".join(out)


def count(exchange: Exchange, kind: str) -> None:
    """Count a value found in the exchange's record (``redact: {"found": {kind: n}}``)."""
    facts = exchange.facts.get("redact")
    found: dict[str, int]
    if isinstance(facts, dict):
        found = facts["found"]
    else:
        found = {}
        exchange.facts["redact"] = {"found": found}
    found[kind] = found.get(kind, 0) + 1
