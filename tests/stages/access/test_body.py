"""The access stage's body hook: privileged and read-only properties, and an owner field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bastion.pipeline.stage import RequestStage, ResponseStage
from bastion.stages.access import AccessConfig, AccessStage
from bastion.types import Block

from .util import compile_stage, exchange, principal, refused, route

ALICE = principal("alice")
ADMIN = principal("root", roles=("admin",))
JSON = [("content-type", "application/json")]
FORM = [("content-type", "application/x-www-form-urlencoded")]

USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "readOnly": True},
        "name": {"type": "string"},
        "created": {"$ref": "#/components/schemas/Stamp"},
        "friends": {"type": "array", "items": {"$ref": "#/components/schemas/Ref"}},
        "profile": {"allOf": [{"$ref": "#/components/schemas/Profile"}]},
    },
}
DOC: dict[str, Any] = {
    "openapi": "3.1.0",
    "components": {
        "schemas": {
            "Stamp": {"type": "string", "readOnly": True},
            "Ref": {"type": "object", "properties": {"id": {"type": "string"}}},  # a writable reference id
            "Profile": {"type": "object", "properties": {"verifiedBy": {"type": "string", "readOnly": True},
                                                         "bio": {"type": "string"}}},
        }
    },
}
REGISTER = {"security": [], "requestBody": {"content": {"application/json": {"schema": USER_SCHEMA}}}, "responses": {}}


def post(stage: AccessStage, body: object, *, who: Any = None, headers: list[tuple[str, str]] | None = None) -> object:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    ex = exchange("POST", "/users", who=who, params={}, body=raw, headers=JSON if headers is None else headers)
    assert stage.on_request_head(ex) is None
    return stage.on_request(ex)


def registration(settings: dict[str, Any] | None = None) -> AccessStage:
    info = route(REGISTER, path="/users", methods=frozenset({"POST"}), public=True, doc=DOC)
    return compile_stage({"property_check": True} if settings is None else settings, info)


def test_the_check_is_on_only_where_configured() -> None:
    """The body hook (which makes the proxy read the whole body) exists where the check is
    turned on or the privileged properties are listed; not by default, not even on an
    operation with readOnly properties (validation refuses those, 400), and not when off."""
    stage = registration()
    assert isinstance(stage, RequestStage) and stage.needs_request_body
    assert not isinstance(registration({}), RequestStage)
    assert isinstance(registration({"privileged_properties": ["role"]}), RequestStage)
    assert not isinstance(registration({"property_check": False, "privileged_properties": ["role"]}), RequestStage)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "eve", "role": "admin"},
        {"name": "eve", "isAdmin": True},  # folded: isAdmin is is_admin
        {"name": "eve", "IS-ADMIN": True},
        {"name": "eve", "profile": {"bio": "hi", "permissions": ["*"]}},  # nested
        {"name": "eve", "friends": [{"id": "1"}, {"id": "2", "scopes": ["x"]}]},  # inside a list
        {"name": "eve", "id": "u-1"},  # readOnly at the top
        {"name": "eve", "created": "2020-01-01"},  # readOnly through $ref
        {"name": "eve", "profile": {"verified_by": "x"}},  # readOnly through allOf, folded
    ],
)
def test_privileged_properties_are_refused_on_a_public_registration(body: dict[str, Any]) -> None:
    """Anonymous callers (a public registration) and consumers without a privilege role may
    not set a privileged or read-only property, however deep or however cased; an admin may."""
    stage = registration()
    assert refused(post(stage, body)) == "access.property"
    assert refused(post(stage, body, who=ALICE)) == "access.property"
    assert post(stage, body, who=ADMIN) is None


def test_ordinary_bodies_pass_and_read_only_is_positional() -> None:
    """A body of ordinary properties passes; a reference's writable ``id`` nested in a list is
    not the object's own read-only ``id``; an empty body passes."""
    stage = registration()
    assert post(stage, {"name": "eve", "friends": [{"id": "u-2"}], "profile": {"bio": "hi"}}) is None
    assert post(stage, b"") is None


def test_the_refused_property_is_in_the_facts_not_the_response() -> None:
    """The record names where the property was; the client's problem detail does not echo it."""
    stage = registration()
    ex = exchange("POST", "/users", params={}, headers=JSON, body=b'{"friends": [{"id": "1"}, {"Roles": []}]}')
    block = stage.on_request(ex)
    assert isinstance(block, Block) and block.status == 403
    assert "Roles" not in block.detail
    assert ex.facts["access"] == {"rule": "property", "property": "friends[1].Roles"}


@pytest.mark.parametrize(
    ("form", "ok"),
    [
        (b"name=eve&bio=hi", True),
        (b"name=eve&role=admin", False),
        (b"name=eve&user%5Brole%5D=admin", False),  # user[role], as nested form frameworks read it
        (b"name=eve&user.is_admin=1", False),
        (b"name=eve&id=1", False),  # readOnly in the schema applies to forms too
    ],
)
def test_form_bodies_are_checked(form: bytes, ok: bool) -> None:
    """A form body is checked by field name, nested names (``a[b]``, ``a.b``) included."""
    outcome = post(registration(), form, headers=FORM)
    assert (outcome is None) == ok, outcome
    if not ok:
        assert refused(outcome) == "access.property"


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b'{"name": "eve"', JSON, 400, "access.malformed"),
        (b'{"role": "user", "role": "admin"}', JSON, 400, "access.malformed"),  # duplicate key
        (b"[" * 70 + b"]" * 70, JSON, 400, "access.malformed"),
        (b"role=admin", [("content-type", "text/plain")], 403, "access.property"),
        (b'{"role": "admin"}', [], 403, "access.property"),  # no content type: cannot be read
        (b"\xff=1", FORM, 400, "access.malformed"),
    ],
)
def test_what_cannot_be_checked_is_refused(body: bytes, headers: list[tuple[str, str]], status: int,
                                           reason: str) -> None:
    """A body the check cannot read (malformed, duplicate keys, too deep, another media
    type) is refused, never passed unchecked."""
    outcome = post(registration(), body, headers=headers)
    assert isinstance(outcome, Block) and (outcome.status, outcome.reason) == (status, reason), outcome


def test_owner_in_the_body() -> None:
    """An owner field in the JSON body must be the caller's; absent or another's is refused,
    a bypass role passes; the owner field itself is not a privileged property there."""
    stage = compile_stage({"owner": {"param": "$.owner.name", "in": "body"}}, route(path="/orders"))
    assert isinstance(stage, RequestStage) and not isinstance(stage, ResponseStage)
    assert post(stage, {"owner": {"name": "alice"}, "qty": 1}, who=ALICE) is None
    assert refused(post(stage, {"owner": {"name": "bob"}}, who=ALICE)) == "access.owner"
    assert refused(post(stage, {"qty": 1}, who=ALICE)) == "access.owner"
    assert refused(post(stage, b"", who=ALICE)) == "access.owner"
    assert post(stage, {"owner": {"name": "bob"}}, who=ADMIN) is None
    form = compile_stage({"owner": {"param": "owner", "in": "body"}}, route(path="/orders"))
    assert post(form, b"owner=alice&qty=1", who=ALICE, headers=FORM) is None
    assert refused(post(form, b"owner=alice&owner=bob", who=ALICE, headers=FORM)) == "access.owner"


def test_a_parsed_body_is_left_for_later_stages() -> None:
    """The JSON value the check parsed is left on the request for later stages."""
    stage = compile_stage({"property_check": True})
    ex = exchange("POST", "/users", params={}, headers=JSON, body=b'{"name": "eve"}')
    assert stage.on_request(ex) is None
    assert ex.request.parsed_json == ({"name": "eve"},)


def test_a_recursive_schema_compiles() -> None:
    """A schema that refers to itself compiles (a cycle of shapes, not endless work), and a
    read-only property deep in the recursion is found."""
    node = {"type": "object", "properties": {"id": {"type": "string", "readOnly": True},
                                             "children": {"type": "array",
                                                          "items": {"$ref": "#/components/schemas/Node"}}}}
    doc = {"openapi": "3.1.0", "components": {"schemas": {"Node": node}}}
    op = {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}},
          "responses": {}}
    stage = AccessStage.from_config(AccessConfig(property_check=True), route(op, path="/nodes", doc=doc))
    assert stage is not None
    assert post(stage, {"children": [{"children": [{}]}]}) is None
    assert refused(post(stage, {"children": [{"children": [{"id": "x"}]}]})) == "access.property"
