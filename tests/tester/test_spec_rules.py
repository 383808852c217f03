"""Each OpenAPI audit rule: a document that triggers it and the fixed document that does not."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from bastion.tester.audit import ALL_RULES, run_audit
from tests.tester.util import baseline, rule_ids, spec_of

Doc = dict[str, Any]
Mutation = Callable[[Doc], None]


def get_op(d: Doc) -> Doc:
    op: Doc = d["paths"]["/things/{thingId}"]["get"]
    return op


def post_op(d: Doc) -> Doc:
    op: Doc = d["paths"]["/things"]["post"]
    return op


def body(d: Doc) -> Doc:
    schema: Doc = d["components"]["schemas"]["ThingCreate"]
    return schema


def schemes(d: Doc) -> Doc:
    out: Doc = d["components"]["securitySchemes"]
    return out


def use_scheme(name: str, scheme: Doc) -> Mutation:
    def mutate(d: Doc) -> None:
        schemes(d)[name] = scheme
        d["security"] = [{name: []}]

    return mutate


def add_query(param: Doc) -> Mutation:
    def mutate(d: Doc) -> None:
        get_op(d)["parameters"].append({"in": "query", **param})

    return mutate


def set_response(status: str, value: Doc | None) -> Mutation:
    def mutate(d: Doc) -> None:
        for op in (get_op(d), post_op(d)):
            if value is None:
                op["responses"].pop(status, None)
            else:
                op["responses"][status] = value

    return mutate


def chain(*steps: Mutation) -> Mutation:
    def mutate(d: Doc) -> None:
        for step in steps:
            step(d)

    return mutate


def nothing(d: Doc) -> None:
    """The baseline as it is."""


def admin_path(security: list[Doc]) -> Mutation:
    def mutate(d: Doc) -> None:
        op = {**get_op(d), "operationId": "adminThings", "security": security}
        d["paths"]["/admin/things/{thingId}"] = {"get": op}

    return mutate


def add_op(path: str, method: str, fields: Doc) -> Mutation:
    """A new operation (the baseline's responses unless given) at ``path``."""

    def mutate(d: Doc) -> None:
        op = {"responses": copy.deepcopy(get_op(d)["responses"]), **fields}
        if "{thingId}" in path:
            op["parameters"] = copy.deepcopy(get_op(d)["parameters"])
        d["paths"].setdefault(path, {})[method] = op

    return mutate


def password_body(*names: str) -> Doc:
    props = {n: {"type": "string", "maxLength": 128, "format": "password", "writeOnly": True} for n in names}
    schema = {"type": "object", "additionalProperties": False, "required": list(names), "properties": props}
    return {"content": {"application/json": {"schema": schema}}}


def token_response() -> Doc:
    schema = {"type": "object", "properties": {"access_token": {"type": "string", "maxLength": 2000}}}
    return {"description": "A token.", "content": {"application/json": {"schema": schema}}}


def oauth(flows: Doc) -> Doc:
    return {"type": "oauth2", "description": "Tokens expire after 10 minutes.", "flows": flows}


CODE_FLOW = {
    "authorizationCode": {
        "authorizationUrl": "https://id.example.com/authorize",
        "tokenUrl": "https://id.example.com/token",
        "scopes": {"admin": "Administer"},
    }
}

#: (rule, mutation that triggers it, mutation that does not)
CASES: list[tuple[str, Mutation, Mutation]] = [
    (
        "BAST-AUTH-001",
        use_scheme("basic", {"type": "http", "scheme": "basic"}),
        use_scheme("key", {"type": "apiKey", "in": "header", "name": "X-Key"}),
    ),
    (
        "BAST-AUTH-002",
        use_scheme("key", {"type": "apiKey", "in": "query", "name": "api_key"}),
        use_scheme("key", {"type": "apiKey", "in": "header", "name": "X-Key"}),
    ),
    (
        "BAST-AUTH-003",
        add_query({"name": "access_token", "schema": {"type": "string", "maxLength": 50}}),
        add_query({"name": "tokenType", "schema": {"type": "string", "maxLength": 50}}),
    ),
    (
        "BAST-AUTH-004",
        use_scheme("jwt", {"type": "http", "scheme": "bearer"}),
        use_scheme("jwt", {"type": "http", "scheme": "bearer", "bearerFormat": "opaque"}),
    ),
    (
        "BAST-AUTH-005",
        use_scheme("jwt", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
        use_scheme(
            "jwt",
            {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "Short-lived: 15 minutes."},
        ),
    ),
    ("BAST-AUTH-006", lambda d: d.pop("security"), lambda d: get_op(d).update(security=[])),
    ("BAST-AUTH-006", lambda d: get_op(d).update(security=[{}, {"apiKey": []}]), nothing),
    ("BAST-AUTH-007", lambda d: get_op(d).update(security=[{"nope": []}]), nothing),
    (
        "BAST-AUTH-008",
        admin_path([{"apiKey": []}]),
        chain(
            use_scheme("adminKey", {"type": "apiKey", "in": "header", "name": "X-Admin"}),
            lambda d: d.update(security=[{"apiKey": []}]),
            admin_path([{"adminKey": []}]),
        ),
    ),
    ("BAST-AUTH-008", admin_path([]), nothing),
    (
        "BAST-AUTH-009",
        use_scheme("oauth", oauth({"implicit": {"authorizationUrl": "https://id.example.com/a", "scopes": {}}})),
        use_scheme("oauth", oauth(CODE_FLOW)),
    ),
    (
        "BAST-OBJ-001",
        lambda d: get_op(d)["parameters"][0].update(schema={"type": "integer", "format": "int64"}),
        lambda d: get_op(d)["parameters"][0].update(schema={"type": "string", "format": "uuid"}),
    ),
    (
        "BAST-OBJ-001",
        lambda d: get_op(d)["parameters"][0].update(schema={"type": "string", "pattern": "^[0-9]{1,9}$"}),
        lambda d: get_op(d)["parameters"][0].update(schema={"type": "string", "pattern": "^[a-z]{1,9}$"}),
    ),
    ("BAST-OBJ-002", lambda d: body(d).pop("additionalProperties"), nothing),
    ("BAST-OBJ-002", lambda d: body(d).update(additionalProperties=True), nothing),
    (
        "BAST-OBJ-003",
        lambda d: get_op(d)["responses"]["200"].update(
            content={"application/json": {"schema": {"type": "object", "properties": {"passwordHash": {}}}}}
        ),
        lambda d: get_op(d)["responses"]["200"].update(
            content={
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"company": {}, "password": {"writeOnly": True}, "tokenType": {}},
                    }
                }
            }
        ),
    ),
    (
        "BAST-SCH-001",
        lambda d: body(d)["properties"]["name"].pop("maxLength"),
        lambda d: (
            body(d)["properties"]["name"].update(maxLength=None, pattern="^[a-z]{1,20}$")
            or body(d)["properties"]["name"].pop("maxLength")
        ),
    ),
    ("BAST-SCH-001", add_query({"name": "q", "schema": {"type": "string", "pattern": "^[a-z]+$"}}), nothing),
    ("BAST-SCH-002", lambda d: body(d)["properties"]["tags"].pop("maxItems"), nothing),
    (
        "BAST-SCH-003",
        lambda d: body(d)["properties"]["count"].pop("maximum"),
        lambda d: body(d)["properties"]["count"].update(enum=[1, 2]) or body(d)["properties"]["count"].pop("maximum"),
    ),
    ("BAST-RL-001", set_response("429", None), nothing),
    ("BAST-RL-002", set_response("429", {"description": "Slow down."}), nothing),
    (
        "BAST-RL-003",
        lambda d: get_op(d)["responses"]["200"].pop("headers"),
        lambda d: get_op(d)["responses"]["200"].update(headers={"X-RateLimit-Remaining": {"schema": {}}}),
    ),
    (
        "BAST-RSP-001",
        set_response("401", None),
        chain(set_response("401", None), set_response("4XX", {"description": "x"})),
    ),
    (
        "BAST-RSP-002",
        set_response("403", None),
        chain(set_response("403", None), set_response("404", {"description": "x"})),
    ),
    (
        "BAST-RSP-003",
        set_response("400", None),
        chain(set_response("400", None), set_response("422", {"description": "x"})),
    ),
    (
        "BAST-RSP-004",
        set_response("default", None),
        chain(set_response("default", None), set_response("500", {"description": "x"})),
    ),
    (
        "BAST-SSRF-001",
        lambda d: body(d)["properties"].update(callbackUrl={"type": "string", "maxLength": 200}),
        lambda d: body(d)["properties"].update(nickname={"type": "string", "maxLength": 200}),
    ),
    (
        "BAST-SSRF-001",
        add_query({"name": "image", "schema": {"type": "string", "format": "uri", "maxLength": 200}}),
        add_query({"name": "image", "schema": {"type": "string", "enum": ["https://cdn.example.com/a.png"]}}),
    ),
    (
        "BAST-TRN-001",
        lambda d: d["servers"][0].update(url="http://api.example.com"),
        lambda d: d["servers"][0].update(url="http://127.0.0.1:8080"),
    ),
    (
        "BAST-TRN-002",
        use_scheme("oauth", oauth({"clientCredentials": {"tokenUrl": "http://id.example.com/token", "scopes": {}}})),
        use_scheme("oauth", oauth(CODE_FLOW)),
    ),
    (
        "BAST-TRN-003",
        lambda d: get_op(d)["responses"]["200"]["headers"].update(
            {"Access-Control-Allow-Origin": {"schema": {"type": "string", "enum": ["*"]}}}
        ),
        lambda d: get_op(d)["responses"]["200"]["headers"].update(
            {"Access-Control-Allow-Origin": {"schema": {"type": "string", "enum": ["https://app.example.com"]}}}
        ),
    ),
    (
        "BAST-TRN-004",
        use_scheme("session", {"type": "apiKey", "in": "cookie", "name": "sid"}),
        use_scheme("session", {"type": "apiKey", "in": "header", "name": "X-Session"}),
    ),
    ("BAST-INV-001", lambda d: d.pop("servers"), nothing),
    ("BAST-INV-002", lambda d: d["servers"][0].pop("description"), nothing),
    (
        "BAST-INV-003",
        lambda d: d["servers"].append({"url": "https://staging.example.com", "description": "Staging"}),
        lambda d: d["servers"].append({"url": "https://eu.api.example.com", "description": "Production EU"}),
    ),
    (
        "BAST-INV-004",
        lambda d: d["paths"].update({"/v1/old": d["paths"]["/things"], "/v2/new": d["paths"]["/things"]}),
        lambda d: d["paths"].update({"/v2/new": d["paths"]["/things"]}),
    ),
    ("BAST-INV-005", lambda d: get_op(d).update(deprecated=True), lambda d: get_op(d).update(deprecated=False)),
    (
        "BAST-MTH-001",
        add_op("/seed", "get", {"operationId": "reseedDatabase"}),
        add_op("/seed", "post", {"operationId": "reseedDatabase"}),
    ),
    (
        "BAST-MTH-001",
        add_op("/maintenance", "get", {"operationId": "runMaintenance",
                                       "description": "Drops and reseeds the database."}),
        add_op("/things/{thingId}/initial-state", "get", {"operationId": "getInitialState"}),
    ),
    (
        "BAST-MTH-002",
        add_op("/me/password", "put", {"operationId": "setPassword", "requestBody": password_body("newPassword")}),
        add_op("/me/password", "put", {"operationId": "setPassword",
                                       "requestBody": password_body("newPassword", "currentPassword")}),
    ),
    (
        "BAST-OBJ-003",
        add_op("/session", "get", {"operationId": "getSession", "responses": {"200": token_response()}}),
        add_op("/auth/login", "post", {"operationId": "login", "responses": {"200": token_response()}}),
    ),
    (
        "BAST-INV-006",
        lambda d: body(d)["properties"].update(extra={"$ref": "other.yaml#/Extra"}),
        lambda d: body(d)["properties"].update(extra={"$ref": "#/components/schemas/ThingCreate/properties/name"}),
    ),
]


def test_the_baseline_document_is_clean() -> None:
    """The baseline every case starts from triggers no rule at all, so each case isolates its rule."""
    assert rule_ids(baseline()) == []


def test_every_spec_rule_has_cases() -> None:
    """Every OpenAPI rule in the registry has at least one triggering and one clean case below."""
    spec_rules = {r.id for r in ALL_RULES if r.scope == "openapi"}
    assert spec_rules == {rule for rule, _, _ in CASES}


@pytest.mark.parametrize(("rule", "bad", "good"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_fires_on_the_flaw_and_not_on_the_fix(rule: str, bad: Mutation, good: Mutation) -> None:
    """The rule reports the flawed document (with a line number) and stays silent on the fixed one."""
    doc = baseline()
    bad(doc)
    findings = [f for f in run_audit(spec_of(doc)).findings if f.rule.id == rule]
    assert findings, f"{rule} did not fire"
    assert all(f.location.line is not None and f.location.file == "api.yaml" for f in findings)
    fixed = baseline()
    good(fixed)
    assert rule not in rule_ids(fixed)
