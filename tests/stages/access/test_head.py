"""The access stage's head hook, compiled from settings, decided with hand-made principals."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bastion.pipeline.registry import ORDER
from bastion.pipeline.stage import HeadStage, RequestStage, ResponseStage
from bastion.stages import access, auth
from bastion.stages.access import SPEC, AccessConfig, AccessStage
from bastion.types import Block

from .util import compile_stage, exchange, principal, refused, route

ALICE = principal("alice")
ADMIN = principal("root", roles=("admin",))


def test_spec_registry_position_and_public_api() -> None:
    """The stage is on by default, right after auth (authorization reads the principal auth
    proved, before anything else works on the request), and exports exactly ``__all__``."""
    assert (SPEC.name, SPEC.extension, SPEC.default_on) == ("access", "x-bastion-access", True)
    # Before auth: tracing (only notes the trace context), cors (only answers preflights) and
    # blocklist (only refuses blocked clients).
    assert [spec.name for spec in ORDER[:3]] == ["tracing", "cors", "blocklist"]
    assert ORDER[3] is auth.SPEC and ORDER[4] is SPEC
    assert sorted(access.__all__) == sorted(
        ["LEDGER_KEY", "SPEC", "AccessConfig", "AccessStage", "MemoryOwnership", "OwnershipLedger",
         "OwnershipRepository"]
    )


def test_a_route_with_no_rule_gets_the_override_guard_or_nothing() -> None:
    """With nothing configured the stage is a head hook only (the override guard: no body
    is buffered, no response is held); with the guard off too it is not built at all."""
    stage = compile_stage()
    assert isinstance(stage, HeadStage) and not isinstance(stage, (RequestStage, ResponseStage))
    assert not stage.needs_request_body and not stage.needs_response_body
    assert stage.on_request_head(exchange(who=ALICE)) is None
    assert stage.on_request_head(exchange(who=None)) is None  # nothing here needs a consumer
    assert AccessStage.from_config(AccessConfig(method_override="allow"), route()) is None


def test_roles_any_of_and_anonymous_is_401() -> None:
    """``roles`` asks for one of them; an anonymous request to such a route is 401 with a
    Bearer challenge, not 403."""
    stage = compile_stage({"roles": ["editor", "user"]})
    assert stage.on_request_head(exchange(who=ALICE)) is None
    assert refused(stage.on_request_head(exchange(who=principal("eve", roles=("guest",))))) == "access.role"
    assert refused(stage.on_request_head(exchange(who=principal("eve", roles=())))) == "access.role"
    anonymous = stage.on_request_head(exchange(who=None))
    assert isinstance(anonymous, Block) and anonymous.status == 401
    assert anonymous.reason == "access.unauthenticated"
    assert anonymous.headers == (("www-authenticate", 'Bearer realm="shop"'),)


def test_scopes_are_all_required() -> None:
    """Every scope listed must be in the credential's scopes."""
    stage = compile_stage({"scopes": ["books:read", "books:write"]})
    both = principal(scopes=("books:read", "books:write", "other"))
    one = principal(scopes=("books:read",))
    assert stage.on_request_head(exchange(who=both)) is None
    block = stage.on_request_head(exchange(who=one))
    assert isinstance(block, Block) and (block.status, block.reason) == (403, "access.scope")


@pytest.mark.parametrize(
    ("settings", "tags"),
    [
        ({"admin": True}, None),
        ({}, ["users", "admin"]),
        ({}, ["Admin"]),  # tags compare case-insensitively
        ({"admin": False}, ["ADMIN"]),  # false does not undo a tag
        ({"admin_tags": ["ops"]}, ["ops"]),
    ],
)
def test_admin_operations_need_an_admin_role(settings: dict[str, Any], tags: list[str] | None) -> None:
    """An operation marked admin (by setting, or by an OpenAPI tag however it is cased) is
    refused to a consumer without an admin role, and allowed to one with it."""
    operation = {"responses": {}, **({"tags": tags} if tags is not None else {})}
    stage = compile_stage(settings, route(operation, methods=frozenset({"DELETE"})))
    assert stage.admin
    block = stage.on_request_head(exchange("DELETE", who=ALICE))
    assert isinstance(block, Block) and (block.status, block.reason) == (403, "access.admin")
    assert stage.on_request_head(exchange("DELETE", who=ADMIN)) is None


def test_admin_tags_can_be_cleared_and_admin_roles_changed() -> None:
    """``admin_tags: []`` stops tags from counting; ``admin_roles`` names who may call."""
    tagged = route({"tags": ["admin"], "responses": {}})
    assert not compile_stage({"admin_tags": []}, tagged).admin
    stage = compile_stage({"admin": True, "admin_roles": ["ops"]})
    assert refused(stage.on_request_head(exchange(who=ADMIN))) == "access.admin"
    assert stage.on_request_head(exchange(who=principal("op", roles=("ops",)))) is None


def test_owner_in_the_path() -> None:
    """A path parameter naming the owner must be the caller's name; another consumer's is
    403, an admin passes (bypass role), and the decision reason is in the exchange's facts."""
    stage = compile_stage({"owner": {"param": "username"}})
    assert stage.on_request_head(exchange(path="/users/alice", who=ALICE)) is None
    ex = exchange(path="/users/bob", who=ALICE)
    assert refused(stage.on_request_head(ex)) == "access.owner"
    assert ex.facts["access"] == {"rule": "owner"}
    assert stage.on_request_head(exchange(path="/users/bob", who=ADMIN)) is None
    assert refused(stage.on_request_head(exchange(path="/users/Alice", who=ALICE))) == "access.owner"  # exact


@pytest.mark.parametrize(
    ("equals", "who", "allowed"),
    [
        ("principal.sub", principal("alice", claims={"sub": "u-42"}), "u-42"),
        ("principal.consumer_id", principal("alice"), "id-alice"),
        ("claim:user_id", principal("alice", claims={"user_id": 42}), "42"),
    ],
)
def test_owner_compares_the_chosen_identifier(equals: str, who: Any, allowed: str) -> None:
    """``equals`` picks the principal's value: the ``sub`` claim, the consumer id, any claim
    (an integer claim compares as text); a principal without that value owns nothing."""
    stage = compile_stage({"owner": {"param": "username", "equals": equals}})
    assert stage.on_request_head(exchange(path=f"/users/{allowed}", who=who)) is None
    assert refused(stage.on_request_head(exchange(path="/users/alice", who=who))) == "access.owner"
    if equals != "principal.consumer_id":
        bare = principal("alice", claims={})
        assert refused(stage.on_request_head(exchange(path=f"/users/{allowed}", who=bare))) == "access.owner"


@pytest.mark.parametrize(
    ("query", "ok"),
    [
        ("user=alice", True),
        ("user=al%69ce&page=2", True),  # decoded like the backend decodes it
        ("USER=alice", True),  # names compare case-insensitively
        ("user=alice&user=alice", True),
        ("user=bob", False),
        ("user=alice&user=bob", False),  # parameter pollution: never guessed
        ("user=alice&User=bob", False),
        ("page=2", False),  # absent: refused
        ("", False),
    ],
)
def test_owner_in_the_query(query: str, ok: bool) -> None:
    """A query parameter naming the owner is decoded, compared case-insensitively by name,
    refused when absent or given twice with different values."""
    stage = compile_stage({"owner": {"param": "user", "in": "query"}})
    outcome = stage.on_request_head(exchange(path="/orders", query=query, who=ALICE, params={}))
    assert (outcome is None) == ok, outcome
    if not ok:
        assert refused(outcome) == "access.owner"


@pytest.mark.parametrize(
    ("client", "ok"),
    [
        ("10.1.2.3", True),
        ("10.9.9.9", False),  # denied inside the allowed network: deny wins
        ("192.168.1.1", False),
        ("::ffff:10.9.9.9", False),  # IPv4-mapped IPv6 is the IPv4 address it maps
        ("::ffff:10.1.2.3", True),
        ("2001:db8::7", True),
        ("2001:db8:1::7", False),
        ("fe80::1%eth0", False),
        ("not-an-address", False),  # fail closed
    ],
)
def test_route_ip_lists(client: str, ok: bool) -> None:
    """Route networks, IPv4 and IPv6: deny wins over allow, an address outside the allow
    list is refused (403 ``access.ip``), the decision is the same on the next request."""
    stage = compile_stage({"ip_allow": ["10.0.0.0/8", "2001:db8::/64"], "ip_deny": ["10.9.0.0/16"]})
    for _ in range(2):  # the second answer comes from the stage's per-address cache
        outcome = stage.on_request_head(exchange(client=client))
        assert (outcome is None) == ok, (client, outcome)
        if not ok:
            assert refused(outcome) == "access.ip"


def test_consumer_ip_lists_apply_on_every_route() -> None:
    """A consumer's own networks are enforced wherever the stage runs, even with no rule of
    the route's own; another consumer from the same address is not affected."""
    stage = compile_stage()
    office = principal("alice", ip_allow=("192.0.2.0/24", "2001:db8::/32"))
    assert stage.on_request_head(exchange(who=office, client="192.0.2.10")) is None
    assert stage.on_request_head(exchange(who=office, client="2001:db8::1")) is None
    assert refused(stage.on_request_head(exchange(who=office, client="198.51.100.1"))) == "access.ip"
    banned = principal("mallory", ip_deny=("::/0", "0.0.0.0/0"))
    assert refused(stage.on_request_head(exchange(who=banned, client="::1"))) == "access.ip"
    assert stage.on_request_head(exchange(who=ALICE, client="198.51.100.1")) is None


@pytest.mark.parametrize(
    ("headers", "query", "ok"),
    [
        ([("x-http-method-override", "DELETE")], "", False),
        ([("x-http-method", "delete")], "", False),
        ([("x-method-override", " PUT ")], "", False),
        ([("x-http-method-override", "GET")], "", True),  # names the request's own method
        ([("x-original-url", "/admin/users")], "", False),
        ([("x-rewrite-url", "/admin")], "", False),
        ([], "_method=DELETE", False),
        ([], "%5Fmethod=DELETE", False),
        ([], "_method=get", True),
        ([("x-forwarded-method", "DELETE")], "", True),  # not one a backend honours as an override
    ],
)
def test_method_and_url_overrides_are_refused(headers: list[tuple[str, str]], query: str, ok: bool) -> None:
    """A request asking the backend for another method or path than the gateway authorized
    is refused (403 ``access.override``), even on a route with no rule of its own."""
    stage = compile_stage()
    outcome = stage.on_request_head(exchange(headers=headers, query=query, who=ALICE))
    assert (outcome is None) == ok, outcome
    if not ok:
        assert refused(outcome) == "access.override"
    relaxed = compile_stage({"method_override": "allow", "roles": ["user"]})
    assert relaxed.on_request_head(exchange(headers=headers, query=query, who=ALICE)) is None


def test_checks_run_in_a_fixed_order() -> None:
    """The first failing rule decides: network before identity, role before admin before owner."""
    stage = compile_stage(
        {"ip_deny": ["10.0.0.0/8"], "roles": ["user"], "admin": True, "owner": {"param": "username"}}
    )
    assert refused(stage.on_request_head(exchange(who=ADMIN))) == "access.ip"
    stage = compile_stage({"roles": ["user"], "admin": True, "owner": {"param": "username"}})
    assert refused(stage.on_request_head(exchange(who=principal("x", roles=())))) == "access.role"
    assert refused(stage.on_request_head(exchange(who=ALICE))) == "access.admin"
    boss = principal("boss", roles=("user", "admin"))
    assert stage.on_request_head(exchange(path="/users/alice", who=boss)) is None  # admin bypasses owner


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"owner": {"param": "u", "equals": "principal.email"}}, "equals"),
        ({"owner": {"param": "a b"}}, "param"),
        ({"owner": {"param": "u", "in": "header"}}, "in"),
        ({"learn_ownership": {"kind": "books", "id_from": "cookie:id"}}, "id_from"),
        ({"learn_ownership": {"kind": "b o", "id_from": "body:$.id"}}, "kind"),
        ({"ip_allow": ["10.0.0.1/8"]}, "ip_allow"),  # host bits set: a typo, not a network
        ({"admin": "yes please"}, "admin"),
    ],
)
def test_settings_errors_name_the_field(settings: dict[str, Any], field: str) -> None:
    """Wrong settings are load errors that name the field."""
    with pytest.raises(ValidationError) as err:
        AccessConfig.model_validate(settings)
    assert field in str(err.value)
