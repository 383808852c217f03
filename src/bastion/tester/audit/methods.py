"""What operations do, as their own words say (API2, API8): state-changing reads, password changes.

* *State-changing GET*: a GET or HEAD whose operationId, path, summary or description says it resets,
  reseeds, drops, wipes, shuts down or logs out (:func:`state_change_words`; ``bastion scan`` holds such
  operations back, see ``bastion.tester.scan.safety``). Browsers, crawlers, prefetchers and caches call GETs
  freely: one link or one scanner run wipes the application.
* *Password change without the current password*: a secured write whose path or operationId mentions a
  password and whose request body has a password property but none holding the current one
  (``old``/``current``/``existing`` in its name): a stolen session becomes a stolen account.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from bastion.tester.audit.context import Operation, Spec
from bastion.tester.audit.interface import Hit, Rule, RuleInfo, Severity

#: Words in an operationId, path or summary that mark an operation changing the application as a whole.
DANGEROUS_WORDS = re.compile(
    r"(?:^|[^a-z])(?:re-?seed|seed|reset|re-?init|init(?:iali[sz]e)?|setup|set-?up|install|drop|purge|wipe|"
    r"truncate|flush|shutdown|shut-?down|restart|reboot|kill|destroy|factory|populate|migrate|"
    r"(?:re-?)?create-?(?:db|database|schema|tables?)|"
    r"delete-?all|remove-?all|clear-?all|logout|log-?out|sign-?out|signout|revoke-?all)(?:e?s)?(?:$|[^a-z])",
    re.IGNORECASE,
)
#: Phrases in a description that say the same in prose ("drops and reseeds the database").
DANGEROUS_PROSE = re.compile(
    r"(?:re-?seed|drops?\b|wipes?\b|truncates?\b|purges?\b|shuts? down|restarts?\b|"
    r"(?:deletes?|removes?|clears?) (?:all|every)\b|"
    r"resets? (?:the )?(?:whole |entire )?(?:database|db|data|application|app|state|server|system)|"
    r"(?:re)?(?:creates?|builds?|populates?|initiali[sz]es?) (?:and populates )?(?:the |a )?(?:new |whole )?"
    r"(?:database|db|schema|tables)\b|"
    r"(?:loads?|populates?|fills?|inserts?|with) (?:the |some )?(?:dummy|sample|demo|seed|fake|test) data|"
    r"(?:logs?|signs?) (?:the (?:user|caller) )?out\b|invalidates? (?:the |all )?(?:session|token)s?)",
    re.IGNORECASE,
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def state_change_words(op: Operation) -> str | None:
    """Where ``op``'s own words say it changes the application as a whole ("its operationId says 'reset'"),
    or None. ``resetDatabase`` is split at its capitals and ``create_db`` read as ``create-db`` so word
    boundaries apply."""
    op_id = str(op.node.get("operationId", ""))
    summary = str(op.node.get("summary", ""))
    description = str(op.node.get("description", ""))
    for where, text in (("operationId", op_id), ("path", op.template), ("summary", summary)):
        match = DANGEROUS_WORDS.search(_CAMEL.sub("-", text).replace("_", "-"))
        if match:
            return f"its {where} says {match.group(0).strip('/-_ {}.').lower()!r}"
    match = DANGEROUS_PROSE.search(description) or DANGEROUS_PROSE.search(summary)
    if match:
        return f"its description says {match.group(0).lower()!r}"
    return None

STATE_CHANGING_GET = RuleInfo(
    id="BAST-MTH-001",
    title="State-changing GET",
    category="API8:2023",
    cwe=650,
    severity=Severity.HIGH,
    scope="openapi",
    checks="A GET or HEAD operation's operationId, path, summary or description says it resets, reseeds, drops, "
    "wipes, shuts down or logs out: safe methods are called freely by browsers, crawlers, prefetchers, caches "
    "and scanners.",
    fix="Make the operation a POST (or DELETE) that requires an administrator, or remove it from deployed builds; "
    "`bastion scan` holds such operations back, but every other client will not.",
)

PASSWORD_NO_CURRENT = RuleInfo(
    id="BAST-MTH-002",
    title="Password change without the current password",
    category="API2:2023",
    cwe=620,
    severity=Severity.MEDIUM,
    scope="openapi",
    checks="A secured write on a password (by path or operationId) takes a new password but no current one: "
    "whoever holds a session (a stolen token, an unlocked device) takes the account over for good.",
    fix="Require the current password (or a fresh re-authentication) in the same request, and end the other "
    "sessions when it changes.",
)

_PASSWORD = re.compile(r"pass(?:word|wd|phrase)?|pwd", re.IGNORECASE)
_CURRENT = re.compile(r"old|current|existing|previous", re.IGNORECASE)


def state_changing_get(spec: Spec) -> Iterator[Hit]:
    for op in spec.operations:
        if op.method not in ("get", "head"):
            continue
        said = state_change_words(op)
        if said is not None:
            yield Hit(f"{op.label} changes state although it is a {op.method.upper()}: {said}", spec.source, op.path)


def password_no_current(spec: Spec) -> Iterator[Hit]:
    for op in spec.operations:
        if op.method not in ("put", "post", "patch") or op.public:
            continue
        if "password" not in f"{op.template} {op.node.get('operationId', '')}".lower():
            continue
        names: list[str] = []
        for node in spec.request_schemas(op):
            props = node.schema.get("properties")
            if isinstance(props, dict):
                names += [str(k) for k in props]
        passwords = [n for n in names if _PASSWORD.search(n)]
        if passwords and not any(_CURRENT.search(n) for n in passwords):
            yield Hit(f"{op.label} sets a password ({', '.join(passwords)}) without the current one", spec.source,
                      (*op.path, "requestBody"))


RULES: tuple[Rule[Spec], ...] = (
    Rule(STATE_CHANGING_GET, state_changing_get),
    Rule(PASSWORD_NO_CURRENT, password_no_current),
)
