"""API3:2023 Broken Object Property Level Authorization: excessive data exposure and mass assignment.

Heuristics (all from the OpenAPI document and the responses, nothing API-specific):

* *Undeclared fields*: a JSON response field is undeclared when the response schema for that
  status declares ``properties`` (merged over ``allOf``/``anyOf``/``oneOf``) without making the
  object a map (``additionalProperties`` true or a schema) and does not name it. Nested objects
  and array items are walked.
* *Sensitive data*: a value that is a password hash (bcrypt, argon2, crypt/pbkdf2/scrypt formats),
  a private key, a payment card number (13-19 digits, a card brand prefix, Luhn-valid), or a JWT
  that is not one of the scan's own tokens; a hex digest under a name containing hash, digest,
  password, secret, token or key; and, in undeclared fields only, any non-empty string under a
  credential-like name (password, secret, api_key, private_key, credential, ``*token``).
  A declared ``access_token`` in a login response is therefore not flagged.
* *Mass assignment*: write operations (PATCH/PUT/POST) get a property they should not accept:
  properties the request schema marks ``readOnly``, and privileged-looking properties (role,
  is_admin, admin, permissions, scopes, verified, balance, credits, tier, plan...) that the
  resource's representation has but the request schema does not let the client write. The
  value sent is one the target is known to accept, so the probe cannot leave a row the
  application can no longer read: an ``enum`` value like admin, ``true``, a number within the
  schema's bounds, or — for a free-form string such as ``role`` — a value another scan identity's
  own representation shows (the admin's role); a free-form string no identity shows is not sent
  (the skip says so). The resource is read back with the GET operation on the same path and the
  finding is made only when the value took effect. The old value is written back and read again;
  a value that could not be restored, or a write after which the resource answers 5xx, is said
  in the finding.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import orjson

from bastion.tester.audit.context import Operation, Spec, types_of
from bastion.tester.audit.interface import Severity
from bastion.tester.scan.checks.probing import (
    allows_extra,
    body_fields,
    caller,
    finding,
    json_request_schema,
    object_properties,
    resolve,
    response_schema,
    skip,
    success,
)
from bastion.tester.scan.checks.restore import restore_account
from bastion.tester.scan.identities import credential_fields
from bastion.tester.scan.interface import (
    Check,
    CheckInfo,
    Exchange,
    Identity,
    RequestPlan,
    ScanContext,
    ScanFinding,
    Skip,
)

__all__ = ["CHECKS", "ExcessiveData", "MassAssignment", "SensitiveData"]

#: GET operations looked at, at most (keeps the check low-volume on large APIs).
MAX_READ_OPERATIONS = 40
MAX_WRITE_OPERATIONS = 20
MAX_PROPERTIES_PER_OPERATION = 4
MAX_ARRAY_ITEMS = 20

UNDECLARED = CheckInfo(
    id="API3-UNDECLARED-FIELDS",
    title="Response fields not in the schema",
    category="API3:2023",
    cwe=213,
    severity=Severity.MEDIUM,
    phase="properties",
    checks="Calls each readable operation and compares the JSON response with its declared response schema; "
    "fields the schema does not declare are data the API's contract never meant to expose.",
    advice="Return only the fields the response schema declares (serialise through an explicit view model). "
    "Declare `additionalProperties: false` on response schemas so the contract is exact. Bastion's "
    "`policies.response` (`schema: filter`, the default) removes undeclared properties at the gateway "
    "meanwhile.",
)

SENSITIVE = CheckInfo(
    id="API3-SENSITIVE-DATA",
    title="Sensitive data in responses",
    category="API3:2023",
    cwe=200,
    severity=Severity.HIGH,
    phase="properties",
    checks="Looks for password hashes, private keys, card numbers, other users' tokens and credential-named "
    "undeclared fields in JSON responses.",
    advice="Never serialise secrets (password hashes, API tokens, keys) in API responses; mask card numbers. "
    "Keep such fields out of the response model, and out of the response schema, so "
    "`bastion audit` and reviews can see what is exposed.",
)

MASS_ASSIGNMENT = CheckInfo(
    id="API3-MASS-ASSIGNMENT",
    title="Mass assignment of read-only or privileged properties",
    category="API3:2023",
    cwe=915,
    severity=Severity.HIGH,
    phase="properties",
    checks="Sends write operations with readOnly or privileged-looking properties (role, is_admin, "
    "permissions, balance...) set to an escalated value, reads the resource back and reports when the "
    "value took effect (and restores the old value).",
    advice="Bind request bodies to an explicit list of writable fields. In front of the API, Bastion's "
    "`policies.validation` refuses readOnly properties in requests with 400 (`reject_read_only`, on by "
    "default) and, with `strict: true`, properties the request schema does not declare; mark server-set "
    "properties `readOnly: true` and declare `additionalProperties: false` on request schemas.",
)

# -- sensitive patterns ------------------------------------------------------------------------
_PASSWORD_HASH = re.compile(
    r"^(?:\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}"
    r"|\$argon2(?:id|i|d)\$\S+"
    r"|\$(?:1|5|6|y|scrypt|pbkdf2(?:-sha\d+)?)\$\S{8,}"
    r"|(?:pbkdf2_sha\d+|bcrypt_sha256|argon2|scrypt)\$\S{8,})$"
)
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
_JWT = re.compile(r"^eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]*$")
_HEX_DIGEST = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}|[0-9a-fA-F]{128})$")
_CARD = re.compile(r"^(?:\d[ -]?){12,18}\d$")
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|6(?:011|5))")
_CREDENTIAL_NAME = re.compile(
    r"(?:password|passwd|passphrase|secret|api_?key|private_?key|credential|(?:^|_)token$|^pwd$|_pwd$)"
)
_DIGEST_NAME = re.compile(r"(?:hash|digest|pass|secret|token|key)")
_MASKED = re.compile(r"^[*xX•.\-_ ]*$")


def snake(name: str) -> str:
    """``isAdmin`` -> ``is_admin``; ``API-Key`` -> ``api_key``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def sensitive_value(name: str, value: str, own_tokens: frozenset[str]) -> str | None:
    """Why ``value`` (under field ``name``) is sensitive, or None."""
    if _PASSWORD_HASH.match(value):
        return "a password hash"
    if _PRIVATE_KEY.search(value):
        return "a private key"
    if _JWT.match(value) and value not in own_tokens:
        return "a JWT that is not the caller's own token"
    key = snake(name)
    if _HEX_DIGEST.match(value) and _DIGEST_NAME.search(key):
        return "a hex digest under a credential-like name"
    if _CARD.match(value):
        digits = re.sub(r"\D", "", value)
        if _CARD_PREFIX.match(digits) and luhn(digits) and len(set(digits)) > 1:
            return "a payment card number"
    return None


def credential_name(name: str) -> bool:
    return bool(_CREDENTIAL_NAME.search(snake(name)))


# -- walking a response against its schema -----------------------------------------------------
def walk_response(spec: Spec, schema: dict[str, Any] | None, value: Any,
                  path: str = "") -> Iterator[tuple[str, str, Any, bool]]:
    """``(json path, field name, value, declared)`` for every field of ``value``; fields under an
    undeclared field are not walked (the undeclared field is reported as a whole)."""
    if isinstance(value, dict):
        props = object_properties(spec, schema) if schema is not None else None
        checkable = props is not None and schema is not None and not allows_extra(spec, schema)
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            sub = props.get(str(key)) if props is not None else None
            declared = not checkable or sub is not None
            yield where, str(key), item, declared
            if declared:
                yield from walk_response(spec, sub, item, where)
            else:
                yield from _all_fields(item, where)
    elif isinstance(value, list):
        items = resolve(spec, schema.get("items")) if schema is not None else None
        for i, item in enumerate(value[:MAX_ARRAY_ITEMS]):
            yield from walk_response(spec, items, item, f"{path}[{i}]")


def _all_fields(value: Any, path: str) -> Iterator[tuple[str, str, Any, bool]]:
    """Fields below an undeclared one: reported as undeclared too, for the sensitive-data check."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            yield where, str(key), item, False
            yield from _all_fields(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value[:MAX_ARRAY_ITEMS]):
            yield from _all_fields(item, f"{path}[{i}]")


async def _read_responses(ctx: ScanContext, info: CheckInfo) -> list[tuple[Operation, Exchange]]:
    """Each in-scope GET operation called once (as the first user, or anonymously when public)."""
    out: list[tuple[Operation, Exchange]] = []
    for op in [o for o in ctx.operations() if o.method == "get"][:MAX_READ_OPERATIONS]:
        ident = caller(ctx, op)
        ex = await ctx.send(ctx.plan(op, ident), ident, check=info)
        if success(ex) and ex.json() is not None:
            out.append((op, ex))
    return out


def _own_tokens(ctx: ScanContext) -> frozenset[str]:
    idents = [*ctx.users, *([ctx.admin] if ctx.admin else [])]
    return frozenset(i.token for i in idents if i.token)


class ExcessiveData(Check):
    """Response fields the response schema does not declare."""

    info = UNDECLARED

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        out: list[ScanFinding | Skip] = []
        checked = 0
        for op, ex in await _read_responses(ctx, self.info):
            schema = response_schema(ctx.spec, op, ex.status)
            if schema is None or (object_properties(ctx.spec, schema) is None and "items" not in schema):
                continue
            checked += 1
            extra = [where for where, _, _, declared in walk_response(ctx.spec, schema, ex.json()) if not declared]
            top = _outermost(extra)
            if top:
                shown = ", ".join(top[:8]) + (" ..." if len(top) > 8 else "")
                out.append(finding(self.info, op.label,
                                   f"The {ex.status} response has {len(top)} field(s) its schema does not declare: "
                                   f"{shown}.", ex))
        if not checked:
            out.append(skip(self.info, "no successful JSON response of a GET operation with a declared object schema"))
        return out


def _outermost(paths: list[str]) -> list[str]:
    """Drop paths under another reported path, and collapse array indexes (``items[3].x`` -> ``items[].x``)."""
    collapsed = sorted({re.sub(r"\[\d+\]", "[]", p) for p in paths})
    return [p for p in collapsed
            if not any(p != q and (p.startswith(q + ".") or p.startswith(q + "[")) for q in collapsed)]


class SensitiveData(Check):
    """Secrets and personal data in responses."""

    info = SENSITIVE

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        out: list[ScanFinding | Skip] = []
        own = _own_tokens(ctx)
        responses = await _read_responses(ctx, self.info)
        for op, ex in responses:
            schema = response_schema(ctx.spec, op, ex.status)
            reasons: dict[str, str] = {}
            for where, name, value, declared in walk_response(ctx.spec, schema, ex.json()):
                if not isinstance(value, str) or not value or _MASKED.match(value):
                    continue
                key = re.sub(r"\[\d+\]", "[]", where)
                why = sensitive_value(name, value, own)
                if why is None and not declared and credential_name(name) and value not in own and len(value) >= 4:
                    why = "an undeclared credential-named field"
                if why is not None:
                    reasons.setdefault(key, why)
            if reasons:
                listed = "; ".join(f"`{k}`: {v}" for k, v in list(reasons.items())[:8])
                out.append(finding(self.info, op.label, f"The response exposes sensitive data: {listed}.", ex))
        if not responses:
            out.append(skip(self.info, "no successful JSON response of a GET operation"))
        return out


# -- mass assignment -------------------------------------------------------------------------------
_PRIVILEGED = re.compile(
    r"^(?:role|roles|user_role|is_?admin|admin|is_?staff|staff|is_?superuser|superuser|permissions?|privileges?|"
    r"scopes?|groups?|is_?verified|verified|email_?verified|balance|credits?|account_?type|tier|plan|"
    r"subscription|is_?premium|premium|approved|is_?approved|trusted)$"
)
_HIGH_VALUES = re.compile(r"admin|super|root|owner|staff|manager|premium|enterprise|unlimited|all|\*", re.IGNORECASE)


def escalated_value(spec: Spec, schema: dict[str, Any], current: Any) -> Any:
    """A value for ``schema`` that grants more than ``current``, or None when none can be chosen."""
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        choices = [v for v in enum if v != current]
        ranked = [v for v in choices if isinstance(v, str) and _HIGH_VALUES.search(v)]
        return (ranked or choices or [None])[0]
    kinds = types_of(schema)
    if "boolean" in kinds:
        return current is not True
    if kinds & {"integer", "number"}:
        maximum = schema.get("maximum")
        value = maximum if isinstance(maximum, (int, float)) and not isinstance(maximum, bool) else 999999
        return None if value == current else value
    if "array" in kinds:
        items = resolve(spec, schema.get("items")) or {}
        item_enum = items.get("enum")
        if isinstance(item_enum, list) and item_enum:
            return list(item_enum)
        values = ["admin", "*"]
        return None if values == current else values
    if "object" in kinds:
        return None
    return None if current == "admin" else "admin"


#: Undeclared boolean properties a sign-up is tried with (a privileged role is taken from the admin's profile).
SIGNUP_FLAGS = ("admin", "is_admin", "isAdmin")


def _json(value: Any) -> str:
    """A value as the API's JSON shows it (``true``, ``"admin"``), for messages."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def _token_in(body: Any) -> str | None:
    """The first token-named string in a login answer."""
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if "token" in str(key).lower() and isinstance(value, str) and len(value) >= 8:
                    return value
                stack.append(value)
    return None


def _free_string(schema: dict[str, Any]) -> bool:
    """A string (or untyped) property without an enum: a guessed value may be one the target's storage refuses."""
    kinds = types_of(schema)
    return (not kinds or "string" in kinds) and not isinstance(schema.get("enum"), list) and \
        not ({"boolean", "integer", "number", "array", "object"} & kinds)


def _read_back_op(ctx: ScanContext, op: Operation) -> Operation | None:
    for other in ctx.spec.operations:
        if other.method == "get" and other.template == op.template:
            return other
    return None


def _item_op(ctx: ScanContext, op: Operation) -> tuple[Operation, str] | None:
    """For a POST on a collection, the GET of one item (``/orders`` -> ``/orders/{orderId}``)."""
    prefix = op.template.rstrip("/") + "/{"
    for other in ctx.spec.operations:
        if other.method == "get" and other.template.startswith(prefix) and other.template.endswith("}") \
                and other.template.count("{") == op.template.count("{") + 1:
            return other, other.template[len(prefix):-1]
    return None


def _created_id(body: Any) -> str | None:
    """The identifier of a created object in a POST response (``id``, ``uuid`` or ``_id``)."""
    if not isinstance(body, dict):
        return None
    for key in ("id", "uuid", "_id"):
        value = body.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
    return None


class MassAssignment(Check):
    """Write operations that accept readOnly or privileged properties."""

    info = MASS_ASSIGNMENT

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        out: list[ScanFinding | Skip] = []
        tried = 0
        self._unsent: list[str] = []
        writes = [o for o in ctx.operations() if o.method in ("patch", "put", "post")
                  and "password" not in o.template.lower() and json_request_schema(ctx.spec, o) is not None]
        for op in writes[:MAX_WRITE_OPERATIONS]:
            ident = caller(ctx, op)
            if op.public:
                # A sign-up is the one public write with a resource to escalate: the account it creates.
                signup = await self._probe_signup(ctx, op)
                if signup is not None:
                    tried += 1
                    if isinstance(signup, ScanFinding):
                        out.append(signup)
                continue
            candidates = self._candidates(ctx, op)
            if not candidates:
                continue
            tried += 1
            result = await self._probe(ctx, op, ident, candidates)
            if result is not None:
                out.append(result)
        if not tried:
            out.append(skip(self.info, "no authenticated write operation with readOnly or privileged properties"))
        for unsent in dict.fromkeys(self._unsent):
            out.append(skip(self.info, unsent))
        return out

    async def _probe_signup(self, ctx: ScanContext, op: Operation) -> ScanFinding | bool | None:
        """Register two throwaway accounts — one with undeclared privileged properties, a control without —,
        log each in and read its profile: a property that took effect only on the first is mass assignment.
        None when ``op`` is not a sign-up the scan can follow through (no login, no profile operation)."""
        from bastion.tester.scan.checks.authn.logins import find_login, looks_logged_in
        from bastion.tester.scan.checks.authn.passwords import own_profile

        names = {f.name for f in body_fields(ctx.spec, op)}
        user_field, password_field = credential_fields(names)
        login = find_login(ctx)
        if not (user_field and password_field) or login is None or login.op is op or not ctx.users:
            return None
        declared = {snake(n) for n in names}
        extra: dict[str, Any] = {k: True for k in SIGNUP_FLAGS if snake(k) not in declared}
        admin_profile = await own_profile(ctx, ctx.admin, self.info) if ctx.admin else None
        for key in ("role", "roles"):
            value = admin_profile.get(key) if isinstance(admin_profile, dict) else None
            if key not in declared and isinstance(value, str | list) and value:
                extra[key] = value  # the admin's own value: one the target surely stores
        if not extra:
            return None
        accounts: list[tuple[dict[str, Any] | None, list[Exchange], Identity | None]] = []
        for props in (extra, {}):
            accounts.append(await self._signup(ctx, op, login, user_field, password_field, props,
                                               looks_logged_in, own_profile))
        (probe, evidence, account), (control, _, _) = accounts
        if probe is None or control is None or account is None:
            return True
        took = {k: v for k, v in extra.items() if probe.get(k) == v and control.get(k) != v}
        if not took:
            return True
        shown = ", ".join(f"`{k}: {_json(v)}`" for k, v in took.items())
        control_shows = ", ".join(f"{k}: {_json(control.get(k))}" for k in took)
        # Demote the account the probe made privileged: back to what the control sign-up got (false for a flag
        # an ordinary account does not show at all).
        ordinary = {k: control.get(k, False) for k, v in took.items() if k in control or v is True}
        restored = await restore_account(ctx, self.info, account, ordinary)
        unknown = [k for k in took if k not in ordinary]
        if unknown:
            restored += (f" The scan could NOT restore {', '.join(f'`{k}`' for k in unknown)} on {account.username}: "
                         "an ordinary account shows no value for it to write back.")
        return finding(self.info, op.label,
                       f"Signing up with {shown} (not in the request schema) created an account that has "
                       f"{'it' if len(took) == 1 else 'them'}; a control sign-up without got "
                       f"{control_shows}. No login is needed to become "
                       f"privileged. {restored} (The scan's two throwaway accounts remain.)", *evidence)

    async def _signup(self, ctx: ScanContext, op: Operation, login: Any, user_field: str, password_field: str,
                      props: dict[str, Any], logged_in: Any,
                      profile_of: Any) -> tuple[dict[str, Any] | None, list[Exchange], Identity | None]:
        """Register a throwaway account with ``props``, log it in, and return its profile, the exchanges and the
        logged-in account."""
        plan = ctx.plan(op, ctx.anonymous)
        name = "bscan" + secrets.token_hex(5)
        password = "Bscan-" + secrets.token_hex(8) + "!9a"
        body = dict(plan.json) if isinstance(plan.json, dict) else {}
        for key in list(body):
            if "mail" in key.lower():
                body[key] = name + "@example.com"
        body.update({user_field: name + "@example.com" if "mail" in user_field.lower() else name,
                     password_field: password, **props})
        made = await ctx.send(plan.copy(json=body), ctx.anonymous, check=self.info)
        if not success(made):
            return None, [made], None
        from bastion.tester.scan.checks.authn.logins import attempt

        answer = await attempt(ctx, login, self.info, str(body[user_field]), password)
        token = _token_in(answer.json()) if logged_in(answer) else None
        template = ctx.users[0]
        if token is None or not template.token:
            return None, [made, answer], None
        headers = {k: v.replace(template.token, token) for k, v in template.headers.items() if template.token in v}
        fresh = Identity(name, headers=headers, token=token, username=str(body[user_field]))
        return await profile_of(ctx, fresh, self.info), [made, answer], fresh

    async def _observed(self, ctx: ScanContext, read_plan: RequestPlan | None, ident: Identity, name: str,
                        current: Any) -> Any:
        """A value of ``name`` another identity's own representation shows (the admin's first), or None."""
        if read_plan is None:
            return None
        others = [*([ctx.admin] if ctx.admin else []), *[u for u in ctx.users if u is not ident]]
        for other in others:
            answer = await ctx.send(read_plan, other, check=self.info)
            body = answer.json() if success(answer) else None
            value = body.get(name) if isinstance(body, dict) else None
            if isinstance(value, str) and value and value != current:
                return value
        return None

    def _candidates(self, ctx: ScanContext, op: Operation) -> list[tuple[str, dict[str, Any]]]:
        fields = body_fields(ctx.spec, op)
        writable = {f.name for f in fields if not f.read_only}
        found: dict[str, dict[str, Any]] = {f.name: f.schema for f in fields if f.read_only}
        representation: dict[str, dict[str, Any]] = {}
        sources = [op]
        reader = _read_back_op(ctx, op)
        if reader is not None:
            sources.append(reader)
        for source in sources:
            for status in (200, 201):
                schema = response_schema(ctx.spec, source, status)
                props = object_properties(ctx.spec, schema) if schema is not None else None
                for name, sub in (props or {}).items():
                    representation.setdefault(name, sub)
        for name, sub in representation.items():
            if name not in writable and _PRIVILEGED.match(snake(name)):
                found.setdefault(name, sub)
        ranked = sorted(found.items(), key=lambda kv: (not _PRIVILEGED.match(snake(kv[0])), kv[0]))
        return ranked[:MAX_PROPERTIES_PER_OPERATION]

    async def _probe(self, ctx: ScanContext, op: Operation, ident: Identity,
                     candidates: list[tuple[str, dict[str, Any]]]) -> ScanFinding | None:
        plan = ctx.plan(op, ident)
        reader = _read_back_op(ctx, op)
        read_plan = ctx.plan(reader, ident).copy(path=plan.path) if reader is not None else None
        before_ex = await ctx.send(read_plan, ident, check=self.info) if read_plan is not None else None
        before = before_ex.json() if before_ex is not None and success(before_ex) else None
        if read_plan is not None and not isinstance(before, dict):
            return None  # cannot tell whether anything changed
        # Values the schema constrains first (an enum, a boolean, a number): the target surely stores them.
        ordered = sorted(candidates, key=lambda kv: _free_string(kv[1]))
        for name, schema in ordered:
            current = before.get(name) if isinstance(before, dict) else None
            if _free_string(schema):
                value = await self._observed(ctx, read_plan, ident, name, current)
                if value is None:
                    self._unsent.append(f"{op.label}: `{name}` is a free-form string and no other identity shows a "
                                        "value for it; a guessed value (\"admin\") could break the account, so none "
                                        "was sent (add an admin identity to test it)")
                    continue
            else:
                value = escalated_value(ctx.spec, schema, current)
            if value is None:
                continue
            sent = await ctx.send(plan.copy(json=self._body(ctx, op, plan, before, name, value)), ident,
                                  check=self.info)
            if not success(sent):
                continue
            evidence: list[Exchange] = [sent]
            after: Any = None
            if read_plan is not None:
                after_ex = await ctx.send(read_plan, ident, check=self.info)
                evidence.append(after_ex)
                after = after_ex.json() if success(after_ex) else None
                if after_ex.status >= 500 or after_ex.status == 0:
                    restored = await self._restore(ctx, op, plan, read_plan, ident, before, name, current)
                    return finding(self.info, op.label,
                                   f"`{name}` set to {value!r} was accepted ({sent.status}), and {plan.path} then "
                                   f"answered {after_ex.status}: the API stores a property clients must not "
                                   f"control, and the value broke the resource. {restored}", *evidence)
            else:
                item = _item_op(ctx, op)
                created = _created_id(sent.json())
                if item is not None and created is not None:
                    item_plan = ctx.plan(item[0], ident, path_values={item[1]: created})
                    after_ex = await ctx.send(item_plan, ident, check=self.info)
                    evidence.append(after_ex)
                    after = after_ex.json() if success(after_ex) else None
                else:
                    after = sent.json()
            if isinstance(after, dict) and after.get(name) == value and current != value:
                restored = ""
                if read_plan is not None:
                    restored = " " + await self._restore(ctx, op, plan, read_plan, ident, before, name, current)
                was = "" if read_plan is None else f" (it was {current!r})"
                return finding(self.info, op.label,
                               f"`{name}` set to {value!r} in the request took effect{was}: the API lets "
                               f"clients write a property they must not control.{restored}", *evidence)
        return None

    async def _restore(self, ctx: ScanContext, op: Operation, plan: RequestPlan, read_plan: RequestPlan,
                       ident: Identity, before: Any, name: str, current: Any) -> str:
        """Write the old value back and read it again; say whether that worked."""
        await ctx.send(plan.copy(json=self._body(ctx, op, plan, before, name, current)), ident, check=self.info)
        check = await ctx.send(read_plan, ident, check=self.info)
        body = check.json() if success(check) else None
        if isinstance(body, dict) and body.get(name) == current:
            return f"The scan restored `{name}` to {_json(current)}."
        now = _json(body.get(name)) if isinstance(body, dict) else f"HTTP {check.status}"
        return (f"The scan could NOT restore `{name}` to {_json(current)} (it reads {now}): restore it by hand "
                f"for {ident.name}.")

    @staticmethod
    def _body(ctx: ScanContext, op: Operation, plan: RequestPlan, before: Any, name: str, value: Any) -> Any:
        """PATCH: only the property (a partial update changes nothing else); PUT: the current
        representation's writable fields (a no-op) plus the property; POST: the normal body plus it."""
        schema = json_request_schema(ctx.spec, op) or {}
        required = schema.get("required")
        base: dict[str, Any] = {}
        if op.method == "patch" and not required:
            base = {}
        elif isinstance(plan.json, dict):
            base = dict(plan.json)
            if op.method == "put" and isinstance(before, dict):
                base.update({k: before[k] for k in base if k in before})
        base[name] = value
        return base


CHECKS: list[Check] = [ExcessiveData(), SensitiveData(), MassAssignment()]
