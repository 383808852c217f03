"""Which operations the scan may call: classified before anything is sent.

Every operation of the document gets one :class:`Verdict`:

* **held back** — never sent, by any check, in any form: the user excluded it (``--exclude``), or its
  operationId, path, summary or description says it resets, reseeds, drops, wipes, shuts down, logs out
  or otherwise changes the application as a whole (``bastion.tester.audit.methods.state_change_words``),
  whatever its method — a ``GET /reset-db`` is the textbook case. Only ``--include`` brings such an
  operation back; ``--allow-destructive`` does not.
* **destructive** — DELETE, and writes that change passwords or e-mail addresses: checks call them only
  with ``--allow-destructive`` (or in a form that cannot change data, such as a nonexistent ID).
* **write** — other POST/PUT/PATCH: called, and probes that change a value restore it.
* **read** — GET/HEAD/OPTIONS.

:class:`Gate` enforces "held back" at the request level: the engine refuses any request whose method and
path match a held-back operation, so no check can reach one by accident (a method switch, a path built
by hand). The verdicts go into every report, with their reasons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from bastion.tester.audit.context import Operation, Spec
from bastion.tester.audit.methods import state_change_words

__all__ = ["Gate", "SafetyClass", "Verdict", "classify", "find_operation", "resolve_refs"]

SafetyClass = Literal["read", "write", "destructive", "held"]

#: Path or operationId words that mark a write changing credentials or contact data.
SENSITIVE_CHANGE = re.compile(r"password|passwd|email|credential", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the scan may do with one operation, and why."""

    op: Operation
    safety: SafetyClass
    reason: str


def dangerous_reason(op: Operation) -> str | None:
    """Why ``op``'s own words say it changes the whole application (and how to call it anyway), or None."""
    said = state_change_words(op)
    if said is None:
        return None
    if said.startswith("its description"):
        return f"{said} (pass --include to call it)"
    return f"{said} (state-changing by name; pass --include to call it)"


def method_destructive(op: Operation) -> bool:
    """DELETE, and writes that change passwords or e-mail addresses (on real accounts)."""
    method = op.method.upper()
    if method == "DELETE":
        return True
    if method in ("POST", "PUT", "PATCH"):
        op_id = str(op.node.get("operationId", ""))
        return bool(SENSITIVE_CHANGE.search(op.template + " " + op_id))
    return False


def find_operation(spec: Spec, ref: str) -> Operation | None:
    """An operation by operationId, or by ``"METHOD /path"`` (the template as written in the document)."""
    for op in spec.operations:
        if op.node.get("operationId") == ref:
            return op
    method, _, path = ref.strip().partition(" ")
    for op in spec.operations:
        if op.method == method.lower() and op.template == path.strip():
            return op
    return None


def resolve_refs(spec: Spec, refs: Iterable[str], option: str) -> list[Operation]:
    """The operations ``refs`` name; raise ValueError naming every reference the document lacks."""
    found: list[Operation] = []
    missing: list[str] = []
    for ref in refs:
        op = find_operation(spec, ref)
        if op is None:
            missing.append(ref)
        else:
            found.append(op)
    if missing:
        raise ValueError(f"{option}: no operation {', '.join(repr(m) for m in missing)} in the OpenAPI document "
                         '(use an operationId or "METHOD /path" as written in the document)')
    return found


def classify(spec: Spec, *, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[Verdict]:
    """A verdict for every operation of ``spec`` (see the module docstring); ValueError for unknown refs."""
    included = {id(op) for op in resolve_refs(spec, include, "--include")}
    excluded = {id(op) for op in resolve_refs(spec, exclude, "--exclude")}
    out: list[Verdict] = []
    for op in spec.operations:
        if id(op) in excluded:
            out.append(Verdict(op, "held", "excluded by the user (--exclude)"))
            continue
        reason = dangerous_reason(op)
        if reason is not None and id(op) not in included:
            out.append(Verdict(op, "held", reason))
        elif method_destructive(op):
            out.append(Verdict(op, "destructive", "deletes data or changes credentials; runs only with "
                               "--allow-destructive (or with a nonexistent ID)"))
        elif op.method.upper() in ("POST", "PUT", "PATCH"):
            out.append(Verdict(op, "write", "changes data; probes restore what they change"))
        else:
            out.append(Verdict(op, "read", "reads" if reason is None else "reads (included by the user)"))
    return out


def _template_regex(template: str) -> re.Pattern[str]:
    # Case-insensitive: some servers route /Reset-DB to /reset-db, and refusing too much is the safe side.
    parts = re.split(r"\{[^}]+\}", template.rstrip("/"))
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "/?$", re.IGNORECASE)


class Gate:
    """Refuses requests to held-back operations (any method on a path held back by its name)."""

    def __init__(self, verdicts: Sequence[Verdict], base_path: str) -> None:
        self._held = [(v.op, _template_regex(base_path + v.op.template), v.reason)
                      for v in verdicts if v.safety == "held"]
        self._by_name = {id(v.op) for v in verdicts if v.safety == "held" and dangerous_reason(v.op) is not None}

    def refusal(self, method: str, path: str) -> str | None:
        """Why a ``method`` request to ``path`` (without query) must not be sent, or None. The path is
        percent-decoded first (``/reset%2Ddb`` is ``/reset-db`` to the server)."""
        path = unquote(path)
        for op, pattern, reason in self._held:
            if not pattern.match(path):
                continue
            if op.method.upper() == method.upper() or id(op) in self._by_name:
                return f"held back: {op.label} {reason}"
        return None
