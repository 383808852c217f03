"""What the scan created on the target, and removing it again at the end.

Every answer the scan receives passes :meth:`Ledger.observe`. A request *created* something when it was

* a POST that answered 201, or a 2xx with a ``Location`` header or — on a collection the document has an
  item path for (``POST /orders`` next to ``/orders/{orderId}``) — an ID in its body or the key it sent;
* a 2xx to a public sign-up (the account it made, whatever the answer says);
* a PUT that answered 201 (it created the resource at its own path);

but not an identity's login (a session is not a resource).

The resource's address is the item path filled with that ID (from the body property named like the item's
path parameter, else ``id``; else the ``Location`` header; else the request's own field named like the
parameter, as discovery sends for ``/books/{book_title}``). A 201 the scan cannot address (a sign-up whose
account has no path in the document) is still listed.

At the end, :func:`remove_created` removes each addressed resource, newest first (children before their
parents), with the identity that created it, through the operation the document declares for that: a
DELETE on the item path, else a cancel/close-like action on it (``POST /orders/{orderId}/cancel``). It
never calls an operation the safety classifier holds back (the reason is listed instead), and reads the
item again to say whether it is gone or only cancelled. Every report lists what was created, what was
removed, and what could not be, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote, urlsplit

from bastion.tester.audit.context import Operation, Spec
from bastion.tester.audit.interface import Severity
from bastion.tester.scan.identities import signup_fields
from bastion.tester.scan.interface import CheckInfo, Exchange, Identity, RequestPlan
from bastion.tester.scan.objects import extract_id, norm, path_params
from bastion.tester.scan.safety import Verdict

if TYPE_CHECKING:  # context.py builds on this module: the Scan type only for the checker
    from bastion.tester.scan.context import Scan

__all__ = ["CLEANUP", "Created", "Ledger", "Removal", "cleanup_json", "cleanup_notes", "remove_created"]

#: The cleanup's requests are counted under their own name (not a check: it never reports a finding).
CLEANUP = CheckInfo(
    id="cleanup", title="Remove what the scan created", category="API8:2023", cwe=0, severity=Severity.INFO,
    phase="discovery", checks="Removes each resource the scan created, with the identity that created it.",
    advice="",
)
#: The last path segment of an action that ends a resource's life without a DELETE.
_ENDING = re.compile(r"^(?:cancel|close|archive|withdraw|revoke|void|deactivate|delete|remove|discard)\w*$",
                     re.IGNORECASE)

Outcome = Literal["removed", "cancelled", "already gone", "left"]


@dataclass(slots=True)
class Created:
    """One resource a request of the scan created."""

    via: Operation  # the operation that created it
    owner: Identity
    #: The item operations' template and its path values (None: the document gives the resource no address).
    template: str | None
    values: dict[str, str]

    @property
    def path(self) -> str | None:
        if self.template is None:
            return None
        path = self.template
        for name, value in self.values.items():
            path = path.replace("{" + name + "}", quote(value, safe=""))
        return path


@dataclass(frozen=True, slots=True)
class Removal:
    """What became of one created resource."""

    created: Created
    outcome: Outcome
    #: How it was removed ("DELETE /orders/{orderId} answered 204"), or why it could not be.
    detail: str


def _template_values(template: str, path: str) -> dict[str, str] | None:
    """The path values of ``path`` if it fills ``template`` (``/orders/{id}``, ``/orders/7`` -> {"id": "7"})."""
    names = path_params(template)
    parts = re.split(r"\{[^}]+\}", template.rstrip("/"))
    pattern = "^" + "([^/]+)".join(re.escape(p) for p in parts) + "/?$"
    match = re.match(pattern, path)
    if match is None:
        return None
    return {name: unquote(value) for name, value in zip(names, match.groups(), strict=True)}


class Ledger:
    """Records what the scan's requests created (see the module docstring)."""

    def __init__(self, spec: Spec, base_path: str) -> None:
        self._ops = list(spec.operations)
        self._base_path = base_path
        self._signups = {id(op) for op in self._ops if signup_fields(spec, op) is not None}
        self.created: list[Created] = []

    def items_of(self, template: str) -> list[Operation]:
        """Operations on ``template/{param}`` (one more path segment, a parameter)."""
        prefix = template.rstrip("/") + "/{"
        return [op for op in self._ops if op.template.startswith(prefix) and op.template.endswith("}")
                and op.template.count("/") == template.rstrip("/").count("/") + 1]

    def observe(self, plan: RequestPlan, identity: Identity, answer: Exchange) -> None:
        op = plan.operation
        if op is None or plan.method != op.method.upper() or not 200 <= answer.status < 300:
            return
        if plan.method == "PUT" and answer.status == 201:
            values = _template_values(op.template, plan.path.partition("?")[0])
            self._add(Created(op, identity, op.template, values or {}) if values is not None
                      else Created(op, identity, None, {}))
        elif plan.method == "POST":
            self._observe_post(op, plan, identity, answer)

    def _observe_post(self, op: Operation, plan: RequestPlan, identity: Identity, answer: Exchange) -> None:
        items = self.items_of(op.template)
        location = answer.header("location")
        body = answer.json()
        if answer.status != 201 and location is None and not items and id(op) not in self._signups:
            return  # an action (a login, a search): nothing says it created anything
        parents = _template_values(op.template, plan.path.partition("?")[0]) or {}
        for item in items:
            param = path_params(item.template)[-1]
            new_id = extract_id(body, param)
            if new_id is None and location:
                loc = urlsplit(location).path
                if loc.startswith(self._base_path):
                    loc = loc[len(self._base_path):]
                found = _template_values(item.template, loc)
                new_id = found.get(param) if found else None
            if new_id is None and isinstance(plan.json, dict):
                sent = next((v for k, v in plan.json.items() if norm(str(k)) == norm(param)), None)
                new_id = sent if isinstance(sent, str) and sent else None
            if new_id is not None:
                self._add(Created(op, identity, item.template, {**parents, param: new_id}))
                return
        if answer.status == 201 or id(op) in self._signups:  # a sign-up's account, whatever it answered
            self._add(Created(op, identity, None, {}))

    def _add(self, created: Created) -> None:
        if created.path is None or all(c.path != created.path for c in self.created):
            self.created.append(created)


class Remover:
    """Finds the operation that removes a resource on an item template, and the safety verdict on it."""

    def __init__(self, verdicts: Sequence[Verdict]) -> None:
        self._verdicts = list(verdicts)

    def find(self, template: str) -> Verdict | None:
        base = template.rstrip("/")
        delete = next((v for v in self._verdicts if v.op.template.rstrip("/") == base and v.op.method == "delete"),
                      None)
        if delete is not None:
            return delete
        for v in self._verdicts:
            head, _, last = v.op.template.rstrip("/").rpartition("/")
            if head == base and v.op.method in ("post", "put", "patch", "delete") and _ENDING.match(last):
                return v
        return None


async def remove_created(scan: Scan) -> list[Removal]:
    """Remove everything :attr:`Scan.ledger` recorded (see the module docstring); what became of each."""
    remover = Remover(scan.verdicts)
    # A login that answers 201 created a session, not a resource of the API.
    logins = {id(i.login_operation) for i in [*scan.users, scan.admin] if i is not None and i.login_operation}
    out: list[Removal] = []
    for created in reversed([c for c in scan.ledger.created if id(c.via) not in logins]):
        out.append(await _remove(scan, remover, created))
    out.reverse()
    return out


async def _remove(scan: Scan, remover: Remover, created: Created) -> Removal:
    if created.template is None:
        return Removal(created, "left", f"the document gives what {created.via.label} created no path, so the "
                                        "scan cannot address it to remove it")
    verdict = remover.find(created.template)
    if verdict is None:
        return Removal(created, "left", f"the document declares no DELETE (or cancel/close operation) for "
                                        f"{created.template}")
    if verdict.safety == "held":
        return Removal(created, "left", f"{verdict.op.label} is held back by the safety classifier "
                                        f"({verdict.reason})")
    plan = scan.plan(verdict.op, created.owner, path_values=created.values)
    if verdict.op.method == "delete":
        plan = plan.copy(json=None, body=None, content_type=None)
    answer = await scan.send(plan, created.owner, check=CLEANUP)
    done = f"{verdict.op.label} as {created.owner.name} answered {answer.status or answer.error}"
    if answer.status in (404, 410):
        return Removal(created, "already gone", done)
    if not 200 <= answer.status < 300:
        return Removal(created, "left", done)
    reader = next((v.op for v in scan.verdicts if v.op.template == created.template and v.op.method == "get"
                   and v.safety != "held"), None)
    if reader is None:
        return Removal(created, "removed", done)
    again = await scan.send(scan.plan(reader, created.owner, path_values=created.values), created.owner,
                                      check=CLEANUP)
    if again.status in (404, 410):
        return Removal(created, "removed", done)
    if 200 <= again.status < 300:
        return Removal(created, "cancelled", f"{done}; {reader.label} still shows it (the API keeps it, ended)")
    return Removal(created, "removed", f"{done}; {reader.label} then answered {again.status}")


def cleanup_json(removals: Sequence[Removal]) -> dict[str, Any]:
    """The cleanup for the JSON report (and the HTML page built from it): counts and one entry per resource."""
    entries = [{"created_by": r.created.via.label, "identity": r.created.owner.name, "resource": r.created.path,
                "outcome": r.outcome, "detail": r.detail} for r in removals]
    return {
        "created": len(removals),
        "removed": sum(1 for r in removals if r.outcome != "left"),
        "left": sum(1 for r in removals if r.outcome == "left"),
        "resources": entries,
    }


def cleanup_notes(removals: Sequence[Removal]) -> list[str]:
    """One line per creating operation and outcome, for the text, SARIF and JUnit reports and the notes."""
    groups: dict[tuple[str, Outcome, str], int] = {}
    for r in removals:
        # A resource left for a reason of its own (an answer) is told apart; the others are counted together.
        reason = r.detail if r.outcome == "left" else ""
        key = (r.created.via.label, r.outcome, reason)
        groups[key] = groups.get(key, 0) + 1
    lines: list[str] = []
    for (label, outcome, reason), count in groups.items():
        if outcome == "left":
            lines.append(f"left on the target: {count} object(s) the scan created through {label} and did not "
                         f"remove: {reason}")
        else:
            lines.append(f"created through {label} and {outcome} at the end of the scan: {count} object(s)")
    return lines
