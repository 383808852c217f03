"""Each identity and access rule of the gateway audit (BAST-GW-018..025): a configuration (and
OpenAPI document) that triggers it and the fixed one that does not, audited from real files."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.config import ConfigError
from bastion.tester.audit import load_gateway, run_audit
from bastion.tester.audit.identity import RULES
from tests.tester.test_gateway_rules import PUBLIC_API, config, gateway_ids, service
from tests.tester.util import baseline, responses, spec_of

HS_SECRET_ENV = "AUDIT_TEST_HS_SECRET"
CLIENT_SECRET_ENV = "AUDIT_TEST_INTROSPECTION_SECRET"


def _ec_public_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def jwt_policy(**issuer: Any) -> dict[str, Any]:
    """Top-level ``policies`` with one JWT issuer (``issuer`` overrides the defaults)."""
    entry: dict[str, Any] = {"issuer": "https://idp.example", "audiences": ["things"], **issuer}
    return {"auth": {"jwt": {"issuers": [entry]}}}


HS256 = {"algorithms": ["HS256"], "secret_env": HS_SECRET_ENV}
EC_KEYS = {"algorithms": ["ES256"], "keys": [_ec_public_pem()]}


def operation(operation_id: str, **extra: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "responses": responses(), **extra}


def api_with(paths: dict[str, Any], **schemes: Any) -> dict[str, Any]:
    """The clean baseline document with its paths replaced (secured by its header API key)."""
    doc = baseline()
    doc["paths"] = copy.deepcopy(paths)
    doc["components"]["securitySchemes"].update(schemes)
    return doc


ID_PARAM = [{"name": "thingId", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}]
LOGIN_BODY = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ThingCreate"}}}}
PUBLIC_LOGIN = api_with({"/login": {"post": operation("logIn", security=[], requestBody=LOGIN_BODY)}})
SECURED_LOGIN = api_with({"/login": {"post": operation("logIn", requestBody=LOGIN_BODY)}})
QUERY_KEY_API = api_with(
    {"/things": {"get": operation("listThings", security=[{"queryKey": []}])}},
    queryKey={"type": "apiKey", "in": "query", "name": "api_key"},
)
ADMIN_API = api_with({"/users": {"get": operation("listUsers", tags=["Admin"])}})
OBJECT_API = api_with({"/things/{thingId}": {"get": operation("getThing", parameters=ID_PARAM)}})
OWNED_OBJECT_API = api_with(
    {
        "/things/{thingId}": {
            "get": operation(
                "getThing",
                parameters=ID_PARAM,
                **{"x-bastion-access": {"learned_owner": {"kind": "things", "param": "thingId"}}},
            )
        }
    }
)

INTROSPECTION = {"url": "https://as.example/introspect", "client_id": "bastion", "client_secret_env": CLIENT_SECRET_ENV}

#: (rule, bad config, bad document, good config, good document)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "BAST-GW-018",
        config(policies=jwt_policy(**HS256)),
        PUBLIC_API,
        config(policies=jwt_policy(**EC_KEYS)),
        PUBLIC_API,
    ),
    (
        "BAST-GW-020",
        config(policies=jwt_policy(algorithms=["RS256"], jwks_url="http://127.0.0.1:9/jwks.json")),
        PUBLIC_API,
        config(policies=jwt_policy(algorithms=["RS256"], jwks_url="https://idp.example/jwks.json")),
        PUBLIC_API,
    ),
    (
        "BAST-GW-020",
        config(policies={"auth": {"introspection": {**INTROSPECTION, "url": "http://localhost:9/introspect"}}}),
        PUBLIC_API,
        config(policies={"auth": {"introspection": INTROSPECTION}}),
        PUBLIC_API,
    ),
    (
        "BAST-GW-021",
        config(policies={"auth": {"api_keys": {"query": True}}}),
        QUERY_KEY_API,
        config(policies={"auth": {"api_keys": {"query": False}}}),
        QUERY_KEY_API,
    ),
    (
        "BAST-GW-022",
        config(),
        SECURED_LOGIN,
        config(policies={"auth": {"lockout": {"enabled": True}}}),
        SECURED_LOGIN,
    ),
    (
        "BAST-GW-023",
        config(policies={"auth": {"introspection": {**INTROSPECTION, "cache_ttl": 3600}}}),
        PUBLIC_API,
        config(policies={"auth": {"introspection": {**INTROSPECTION, "cache_ttl": 120}}}),
        PUBLIC_API,
    ),
    ("BAST-GW-024", config(policies={"access": {"admin_tags": []}}), ADMIN_API, config(), ADMIN_API),
    ("BAST-GW-024", config(services=service(policies={"access": {"enabled": False}})), ADMIN_API, config(), ADMIN_API),
    ("BAST-GW-025", config(), OBJECT_API, config(), OWNED_OBJECT_API),
]


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HS_SECRET_ENV, "s" * 64)
    monkeypatch.setenv(CLIENT_SECRET_ENV, "client-secret")


def test_every_identity_rule_has_cases() -> None:
    """Each rule of the family has a triggering and a clean case here (GW-019 has its own test)."""
    assert {r.info.id for r in RULES} == {c[0] for c in CASES} | {"BAST-GW-019"}


@pytest.mark.parametrize(
    ("rule", "bad", "bad_api", "good", "good_api"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_fires_on_the_flaw_and_not_on_the_fix(
    tmp_path: Path,
    rule: str,
    bad: dict[str, Any],
    bad_api: dict[str, Any],
    good: dict[str, Any],
    good_api: dict[str, Any],
) -> None:
    """The rule reports the flawed setup (each finding with a line) and stays silent on the fixed one."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    assert rule in gateway_ids(tmp_path / "bad", bad, bad_api)
    assert rule not in gateway_ids(tmp_path / "good", good, good_api)


def findings(tmp_path: Path, cfg: dict[str, Any], api: dict[str, Any], rule: str) -> list[tuple[str, str, str]]:
    """``(message, file:line, field)`` of ``rule``'s findings on the written files."""
    gateway_ids(tmp_path, cfg, api)
    result = run_audit(spec_of(api), load_gateway(tmp_path / "bastion.yaml"))
    return [(f.message, str(f.location), f.location.field) for f in result.findings if f.rule.id == rule]


def test_short_hs256_secret_is_measured_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GW-019 reads the secret where the issuer says (the environment here) and reports its
    length at the field naming it, never its value; 64 bytes or more is silent."""
    monkeypatch.setenv(HS_SECRET_ENV, "k" * 40)
    found = findings(tmp_path, config(policies=jwt_policy(**HS256)), PUBLIC_API, "BAST-GW-019")
    assert [(m, f) for m, _, f in found] == [
        (
            "the HS256 secret of JWT issuer 'https://idp.example' has 40 bytes",
            "policies.auth.jwt.issuers[0].secret_env",
        )
    ]
    assert "kkkk" not in found[0][0]
    monkeypatch.setenv(HS_SECRET_ENV, "k" * 64)
    assert findings(tmp_path, config(policies=jwt_policy(**HS256)), PUBLIC_API, "BAST-GW-019") == []


def test_shared_secret_finding_points_at_the_algorithm(tmp_path: Path) -> None:
    """GW-018 names the issuer and points at HS256 in its algorithm list, in the file that says it."""
    cfg = config(policies=jwt_policy(algorithms=["ES256", "HS256"], keys=EC_KEYS["keys"], secret_env=HS_SECRET_ENV))
    found = findings(tmp_path, cfg, PUBLIC_API, "BAST-GW-018")
    assert [(m, f) for m, _, f in found] == [
        (
            "JWT issuer 'https://idp.example' accepts HS256 (a shared secret)",
            "policies.auth.jwt.issuers[0].algorithms[1]",
        )
    ]
    assert found[0][1].startswith(str(tmp_path / "bastion.yaml") + ":")


def test_login_traits_and_what_protects_them(tmp_path: Path) -> None:
    """GW-022 recognises logins by operationId, path or summary (not plain object operations,
    a summary that mentions a token in passing, or reads), says that a lockout cannot help a
    public login, and is silenced on an authenticated one by the lockout."""
    api = api_with(
        {
            "/login": {"post": operation("logIn", security=[], requestBody=LOGIN_BODY)},
            "/oauth/token": {"post": operation("issue", requestBody=LOGIN_BODY)},
            "/users/{userId}/credentials": {
                "put": operation(
                    "changeCredentials",
                    summary="Change the password",
                    requestBody=LOGIN_BODY,
                    parameters=[{**ID_PARAM[0], "name": "userId"}],
                )
            },
            "/things": {"post": operation("createThing", requestBody=LOGIN_BODY, summary="Needs a token")},
            "/session": {"get": operation("showSession")},
        }
    )
    found = findings(tmp_path, config(policies={"auth": {"lockout": {"enabled": True}}}), api, "BAST-GW-022")
    assert len(found) == 1, found
    message, where, _ = found[0]
    assert "looks like a login (operationId 'logIn')" in message
    assert "it is public" in message and "its lockout setting does nothing there" in message
    assert where.rpartition(":")[0].endswith("api.yaml"), where  # the operation's line in the document
    found = findings(tmp_path, config(), api, "BAST-GW-022")
    assert sorted(m.split(":")[0] for m, _, _ in found) == [
        "route 'changeCredentials' looks like a login (summary 'Change the password')",
        "route 'issue' looks like a login (path '/oauth/token')",
        "route 'logIn' looks like a login (operationId 'logIn')",
    ]


def test_a_public_login_marked_with_its_account_is_protected(tmp_path: Path) -> None:
    """GW-022 is silenced on a public login by `policies.login` naming where its account is
    (failed logins counted per account), and only there: with `login` set but no `account`,
    the stage does nothing and the finding stays."""
    marked = copy.deepcopy(PUBLIC_LOGIN)
    marked["paths"]["/login"]["post"]["x-bastion-login"] = {"account": "body:/name"}
    assert findings(tmp_path, config(), marked, "BAST-GW-022") == []
    marked["paths"]["/login"]["post"]["x-bastion-login"] = {"max_failures": 3}
    assert len(findings(tmp_path, config(), marked, "BAST-GW-022")) == 1


def test_admin_operation_by_path_and_what_guards_it(tmp_path: Path) -> None:
    """GW-024 finds administrative operations by path segment too, and is silenced by a role
    requirement or `admin: true` as well as by the default admin tag."""
    api = api_with({"/admin/reports": {"get": operation("listReports")}})
    found = findings(tmp_path, config(), api, "BAST-GW-024")
    assert [m for m, _, _ in found] == [
        "route 'listReports' looks administrative (path segment 'admin') but any authenticated consumer "
        "may call it: no `admin` or `roles` rule applies"
    ]
    assert findings(tmp_path, config(policies={"access": {"roles": ["ops"]}}), api, "BAST-GW-024") == []
    assert findings(tmp_path, config(policies={"access": {"admin": True}}), api, "BAST-GW-024") == []


def test_object_ids_by_name_and_admin_operations_spared(tmp_path: Path) -> None:
    """GW-025 takes `{id}`, `{order_id}` and `{username}` for object ids but not `{slug}`-like
    names, skips public and administrative operations, and is silenced by an `owner` rule."""
    param = ID_PARAM[0]
    api = api_with(
        {
            "/orders/{order_id}": {"get": operation("getOrder", parameters=[{**param, "name": "order_id"}])},
            "/users/{username}": {"get": operation("getUser", parameters=[{**param, "name": "username"}])},
            "/items/{id}": {"get": operation("getItem", parameters=[{**param, "name": "id"}], security=[])},
            "/pages/{page}": {"get": operation("getPage", parameters=[{**param, "name": "page"}])},
            "/accounts/{accountId}": {
                "get": operation("getAccount", parameters=[{**param, "name": "accountId"}], tags=["admin"])
            },
        }
    )
    found = findings(tmp_path, config(), api, "BAST-GW-025")
    assert sorted(m for m, _, _ in found) == [
        "route 'getOrder': {order_id} names an object, and no `owner` or `learned_owner` rule checks "
        "that it belongs to the caller",
        "route 'getUser': {username} names an object, and no `owner` or `learned_owner` rule checks "
        "that it belongs to the caller",
    ]
    owned = copy.deepcopy(api)
    owned["paths"]["/users/{username}"]["get"]["x-bastion-access"] = {"owner": {"param": "username"}}
    assert len(findings(tmp_path, config(), owned, "BAST-GW-025")) == 1


def test_admin_tag_outside_custom_admin_tags_is_named(tmp_path: Path) -> None:
    """GW-024 says why a tagged operation is unguarded: `admin_tags` was changed to other
    tags, and the access stage is on."""
    found = findings(tmp_path, config(policies={"access": {"admin_tags": ["staff"]}}), ADMIN_API, "BAST-GW-024")
    assert [m for m, _, _ in found] == [
        "route 'listUsers' looks administrative (tag 'Admin') but any authenticated consumer may call it: "
        "`admin_tags` (staff) does not name its tag and no `admin` or `roles` rule applies"
    ]


@pytest.mark.parametrize(
    ("issuer", "leeway", "field"),
    [({"audiences": []}, 30, r"issuers\[0\]\.audiences"), ({}, 301, r"jwt\.leeway")],
    ids=["issuer-without-audiences", "leeway-over-five-minutes"],
)
def test_what_the_loader_refuses_needs_no_rule(tmp_path: Path, issuer: dict[str, Any], leeway: int, field: str) -> None:
    """An issuer without audiences and a leeway above five minutes never reach the audit: the
    configuration does not load (so there is no rule for them, and this fails if that changes)."""
    policies = jwt_policy(**EC_KEYS, **issuer)
    policies["auth"]["jwt"]["leeway"] = leeway
    with pytest.raises(ConfigError, match=field):
        gateway_ids(tmp_path, config(policies=policies), PUBLIC_API)
