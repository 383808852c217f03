"""The ``graphql`` stage without a socket: documents measured against each limit, requests
read in each of their forms, roles and the persisted-query allow-list applied, and field
suggestions removed. Through a real gateway in ``test_graphql_gateway.py``."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest
import yaml
from pydantic import ValidationError

from bastion.config import ConfigError, load_config
from bastion.stages.graphql import GraphQLConfig, GraphQLStage
from bastion.stages.graphql.document import COSTS_KEPT, measure
from bastion.types import Block, Exchange, Principal, Request, Response


def _post(body: object, content_type: str = "application/json") -> Exchange:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    request = Request("POST", "/graphql", "/graphql", "", [("content-type", content_type)])
    request.body = raw
    return Exchange(request, "req-1")


def _get(**params: str) -> Exchange:
    query = urlencode(params)
    return Exchange(Request("GET", "/graphql?" + query, "/graphql", query, []), "req-1")


def _reason(outcome: Block | None) -> str | None:
    return None if outcome is None else outcome.reason


def _nested(depth: int) -> str:
    return "{ " + "friends { " * (depth - 1) + "id" + " }" * depth


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("{ user(id: 1) { name friends(first: 3) { name } } }", None),
        (_nested(10), None),
        (_nested(11), "graphql.depth"),
        ("{ " + " ".join(f"a{i}: login(user: \"ann\", password: \"p{i}\")" for i in range(16)) + " }",
         "graphql.aliases"),
        ("{ id id id id }", "graphql.duplicate_fields"),
        ("{ id ... on Query { id } ... { id ... { id } } }", "graphql.duplicate_fields"),
        ("{ id ... on Query { id } ... { id } }", None),
        ("{ a @skip(if: true) " + " ".join(f"b{i}: b @include(if: true)" for i in range(10)) + " }",
         "graphql.directives"),
        ("{ users(first: 100) { friends(first: 100) { id } } }", "graphql.cost"),
        ("{ " + "a " * 2001 + "}", "graphql.tokens"),
        ("{ user(id: ", "graphql.malformed"),
        ("type User { id: ID }", "graphql.malformed"),
        ("{ ...Missing }", "graphql.malformed"),
        ("query { ...A } fragment A on Query { ...B } fragment B on Query { user { ...A } }",
         "graphql.circular_fragments"),
    ],
)
def test_each_limit_refuses_with_its_own_reason(query: str, reason: str | None) -> None:
    """With the default settings, a document over one limit is refused with that limit's
    reason (and a typical query passes)."""
    assert _reason(measure(query, GraphQLConfig()).block) == reason


def test_a_document_nested_beyond_the_parser_is_refused_as_too_deep() -> None:
    """5,000 nested selection sets (within the token limit here) exhaust the parser: the
    answer is the depth limit, not a stage failure and not "does not parse"."""
    bomb = "{" + "a{" * 5000 + "b" + "}" * 5001
    measured = measure(bomb, GraphQLConfig(max_tokens=1_000_000))
    assert measured.block is not None and measured.block.reason == "graphql.depth"
    assert measured.block.detail == "The GraphQL document is nested deeper than 10 (max_depth)."


def test_depth_and_aliases_follow_fragments_each_time_they_are_spread() -> None:
    """A fragment adds its own depth where it is spread, and its aliases as many times as it
    is spread: 4 spreads of a fragment with 4 aliases are 16 aliases (over 15), and 5
    fragments nesting each other count as the depth they produce."""
    four = "fragment F on Query { " + " ".join(f"a{i}: login" for i in range(4)) + " }"
    assert _reason(measure("{ ...F ...F ...F }" + four, GraphQLConfig()).block) is None
    assert _reason(measure("{ ...F ...F ...F a: x { ...G } } fragment G on X { ...F }" + four,
                           GraphQLConfig()).block) == "graphql.aliases"
    chain = " ".join(f"fragment F{i} on T {{ f {{ ...F{i + 1} }} }}" for i in range(5)) + " fragment F5 on T { id }"
    assert _reason(measure("{ ...F0 }" + chain, GraphQLConfig(max_depth=6)).block) is None
    assert _reason(measure("{ ...F0 }" + chain, GraphQLConfig(max_depth=5)).block) == "graphql.depth"


def test_a_fragment_spread_exponentially_is_measured_in_linear_time() -> None:
    """Fragments spreading the next one twice, 40 levels down, are 3 * 2^40 - 2 fields once expanded:
    measured without expanding them (each fragment once), the cost is refused."""
    chain = " ".join(f"fragment F{i} on T {{ f {{ ...F{i + 1} }} g {{ ...F{i + 1} }} }}" for i in range(40))
    measured = measure("{ ...F0 }" + chain + " fragment F40 on T { id }", GraphQLConfig(max_depth=100))
    assert measured.block is not None
    assert measured.block.detail.startswith(f"The GraphQL document's cost is {3 * 2**40 - 2}; ")


def test_cost_uses_field_costs_and_the_request_variables() -> None:
    """``field_costs`` price a field by name or by root type, and a list size given by a
    variable is taken from the request's variables."""
    config = GraphQLConfig(field_costs={"Mutation.login": 600}, max_cost=1000)
    stage = GraphQLStage(config)
    assert _reason(stage.on_request(_post({"query": "mutation { login }"}))) is None
    assert _reason(stage.on_request(_post({"query": "mutation { a: login b: login }"}))) == "graphql.cost"
    paged = "query($n: Int) { users(first: $n) { id name } }"
    assert _reason(stage.on_request(_post({"query": paged, "variables": {"n": 10}}))) is None
    refused = stage.on_request(_post({"query": paged, "variables": {"n": 100_000}}))
    assert refused is not None and refused.reason == "graphql.cost"
    assert refused.detail == "The GraphQL document's cost is 200001; at most 1000 is allowed (max_cost)."


def test_every_request_form_is_read() -> None:
    """JSON (single and batched), ``application/graphql`` and ``GET ?query=`` are read;
    anything else is refused as malformed or of the wrong media type, and so is a POST that
    also has a ``query`` in its URL (which of the two would the upstream run?)."""
    stage = GraphQLStage(GraphQLConfig())
    ok = "{ user(id: 1) { name } }"
    assert stage.on_request(_post({"query": ok})) is None
    assert stage.on_request(_post([{"query": ok}, {"query": ok, "variables": {"a": 1}}])) is None
    assert stage.on_request(_post(ok.encode(), "application/graphql")) is None
    assert stage.on_request(_get(query=ok, variables='{"a": 1}')) is None
    assert _reason(stage.on_request(_post([{"query": ok}] * 6))) == "graphql.batch"
    assert _reason(stage.on_request(_post(b"{not json"))) == "graphql.malformed"
    assert _reason(stage.on_request(_post({"extensions": {"persistedQuery": {"sha256Hash": "ab"}}}))) == (
        "graphql.malformed")
    assert _reason(stage.on_request(_post([]))) == "graphql.malformed"
    assert _reason(stage.on_request(_post({"query": ok, "variables": [1]}))) == "graphql.malformed"
    assert _reason(stage.on_request(_get())) == "graphql.malformed"
    assert _reason(stage.on_request(_get(query=ok, variables="[1"))) == "graphql.malformed"
    assert _reason(stage.on_request(_post(ok.encode(), "text/plain"))) == "graphql.media_type"
    smuggled = _post({"query": ok})
    smuggled.request.query = urlencode({"query": "{ __schema { types { name } } }"})
    assert _reason(stage.on_request(smuggled)) == "graphql.malformed"


def test_introspection_and_admin_operations_need_a_role() -> None:
    """Introspection is refused (403) unless the consumer holds an ``introspection_roles``
    role; admin fields and (with ``admin_mutations``) every mutation need an admin role;
    ``__typename`` is not introspection."""
    stage = GraphQLStage(GraphQLConfig(introspection_roles=["schema"], admin_fields=["deleteUser"],
                                       admin_mutations=True))
    schema = _post({"query": "{ __schema { types { name } } }"})
    assert _reason(stage.on_request(schema)) == "graphql.introspection"
    schema.principal = Principal("c1", roles=frozenset({"schema"}))
    assert stage.on_request(schema) is None
    assert stage.on_request(_post({"query": "{ user(id: 1) { __typename } }"})) is None
    for query in ("{ me { deleteUser(id: 1) } }", "mutation { rename(name: \"x\") }"):
        exchange = _post({"query": query})
        exchange.principal = Principal("c2", roles=frozenset({"user"}))
        assert _reason(stage.on_request(exchange)) == "graphql.forbidden"
        exchange.principal = Principal("c3", roles=frozenset({"admin"}))
        assert stage.on_request(exchange) is None


def test_field_and_operation_access_need_their_roles_and_scopes() -> None:
    """``field_access`` guards a field wherever it is selected (by name, or ``Type.field``
    where the type is known, fragments followed) and ``operation_access`` every operation of
    a kind: a principal needs one of the rule's roles and all of its scopes, an anonymous
    request is refused (403 ``graphql.forbidden`` naming the field); other fields pass."""
    stage = GraphQLStage(GraphQLConfig(
        field_access={"salary": {"roles": ["hr", "payroll"]}, "Mutation.refund": {"scopes": ["pay:write", "pay"]}},
        operation_access={"subscription": {"roles": ["live"], "scopes": ["stream"]}},
    ))
    hr = Principal("c1", roles=frozenset({"payroll"}))
    payer = Principal("c2", scopes=frozenset({"pay", "pay:write", "other"}))
    half = Principal("c3", roles=frozenset({"live"}), scopes=frozenset({"pay"}))
    cases: list[tuple[str, Principal | None, str | None]] = [
        ("{ me { name } }", None, None),
        ("{ me { salary } }", None, "graphql.forbidden"),
        ("{ me { ...Pay } } fragment Pay on User { salary }", payer, "graphql.forbidden"),
        ("{ me { ...Pay } } fragment Pay on User { salary }", hr, None),
        ("mutation { refund(id: 1) }", half, "graphql.forbidden"),
        ("mutation { refund(id: 1) }", payer, None),
        ("{ refund(id: 1) }", None, None),  # a query's refund is not Mutation.refund
        ("subscription { ticks }", Principal("c4", roles=frozenset({"live"})), "graphql.forbidden"),
        ("subscription { ticks }", Principal("c5", roles=frozenset({"live"}), scopes=frozenset({"stream"})), None),
    ]
    for query, principal, reason in cases:
        exchange = _post({"query": query})
        exchange.principal = principal
        outcome = stage.on_request(exchange)
        assert _reason(outcome) == reason, (query, principal)
    refused = _post({"query": "{ me { salary } }"})
    outcome = stage.on_request(refused)
    assert outcome is not None and outcome.status == 403 and "'salary'" in outcome.detail


def test_an_access_rule_without_roles_or_scopes_is_refused() -> None:
    """A ``field_access`` entry that names neither roles nor scopes (which would read as
    "anyone") is a load error, as is an operation kind GraphQL does not have."""
    with pytest.raises(ValidationError, match="give roles, scopes or both"):
        GraphQLConfig(field_access={"salary": {}})
    with pytest.raises(ValidationError, match="is not a field name"):
        GraphQLConfig(field_access={"a.b.c": {"roles": ["x"]}})
    with pytest.raises(ValidationError, match="operation_access"):
        GraphQLConfig(operation_access={"mutations": {"roles": ["x"]}})


def test_persisted_query_mode_lets_only_known_documents_through() -> None:
    """With ``persisted_queries``, a document whose SHA-256 is listed passes and any other is
    refused with 403, however small, by its hash alone (not parsed, not cached)."""
    known = "query Me { me { name } }"
    stage = GraphQLStage(GraphQLConfig(persisted_queries=[hashlib.sha256(known.encode()).hexdigest().upper()]))
    assert stage.on_request(_post({"query": known})) is None
    assert _reason(stage.on_request(_post({"query": "{ me { name } }"}))) == "graphql.not_persisted"
    assert _reason(stage.on_request(_post({"query": "{ me { name "}))) == "graphql.not_persisted"
    assert list(stage._cache) == [known]  # the unknown ones were neither parsed nor kept


def test_the_cache_is_bounded_and_keeps_the_verdict() -> None:
    """A document seen before is not parsed again (its verdict is the cached one), and the
    cache never holds more than ``cache_size`` documents."""
    stage = GraphQLStage(GraphQLConfig(cache_size=2))
    for i in range(5):
        assert stage.on_request(_post({"query": f"{{ a{i} }}"})) is None
    assert list(stage._cache) == ["{ a3 }", "{ a4 }"]
    bomb = _nested(30)
    first = stage.on_request(_post({"query": bomb}))
    assert first is not None and stage.on_request(_post({"query": bomb})) is first


def test_field_suggestions_are_removed_for_consumers_without_the_role() -> None:
    """"Did you mean ...?" is cut from every error message of a response (single or batched)
    for anyone without an introspection role; the rest of the message and the data stay."""
    stage = GraphQLStage(GraphQLConfig(introspection_roles=["schema"]))
    body = orjson.dumps({"data": None, "errors": [
        {"message": "Cannot query field 'nme' on type 'User'. Did you mean 'name' or 'names'?"},
        {"message": "Unknown argument 'fist'."}]})
    exchange = _post({"query": "{ x }"})
    exchange.response = Response(200, [("content-type", "application/json"), ("content-length", str(len(body)))],
                                 body)
    assert stage.on_response(exchange) is None
    assert orjson.loads(exchange.response.body or b"")["errors"] == [
        {"message": "Cannot query field 'nme' on type 'User'."}, {"message": "Unknown argument 'fist'."}]
    assert exchange.response.header("content-length") is None
    schema = _post({"query": "{ x }"})
    schema.principal = Principal("c1", roles=frozenset({"schema"}))
    schema.response = Response(200, [("content-type", "application/json")], body)
    assert stage.on_response(schema) is None and schema.response.body == body


def test_settings_are_checked_at_load() -> None:
    """A persisted hash that is not a SHA-256, or a field name that is not one, is refused."""
    with pytest.raises(ValidationError, match="is not a SHA-256"):
        GraphQLConfig(persisted_queries=["abc"])
    with pytest.raises(ValidationError, match="is not a field name"):
        GraphQLConfig(admin_fields=["a.b.c"])


def test_a_bad_setting_is_a_load_error_naming_file_and_field(tmp_path: Path) -> None:
    """In bastion.yaml, a persisted hash that is not one is refused with the file and
    ``policies.graphql.persisted_queries``."""
    config = {"services": [{"name": "app", "upstream": "http://127.0.0.1:9", "routes": [
        {"path": "/graphql", "methods": ["POST"], "public": True,
         "policies": {"graphql": {"persisted_queries": ["not-a-hash"]}}}]}]}
    path = tmp_path / "bastion.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert str(path) in text and "policies.graphql.persisted_queries" in text
    assert "'not-a-hash' is not a SHA-256 in hex" in text


def test_the_cost_by_variables_is_kept_per_list_size_and_bounded() -> None:
    """A document paged by variables is walked once per distinct list size, and keeps at
    most ``COSTS_KEPT`` of them; a size kept still gives the same verdict."""
    stage = GraphQLStage(GraphQLConfig())
    paged = "query($n: Int, $q: String) { users(first: $n) { id name } }"
    for n in range(COSTS_KEPT + 5):
        assert stage.on_request(_post({"query": paged, "variables": {"n": n, "q": str(n)}})) is None
    measured = stage._cache[paged]
    assert measured.size_variables == ("n",)
    assert 0 < len(measured.costs) <= COSTS_KEPT
    for _ in range(2):
        assert _reason(stage.on_request(_post({"query": paged, "variables": {"n": 600}}))) == "graphql.cost"
    assert measured.costs[(600,)] == 1201


def test_the_record_names_the_operations_that_ran_and_their_cost() -> None:
    """A request that passes leaves its operations (kind and name) and their summed cost in
    the exchange's facts, for the access record."""
    stage = GraphQLStage(GraphQLConfig())
    exchange = _post([{"query": "query Me { me { id } } mutation Rename { rename }"},
                      {"query": "query($n: Int) { users(first: $n) { id } }", "variables": {"n": 20}}])
    assert stage.on_request(exchange) is None
    assert exchange.facts["graphql"] == {"operations": ["query Me", "mutation Rename", "query"], "cost": 2 + 21}


def _schema_config(tmp_path: Path, sdl: str | None, schema: str = "schema.graphql") -> Path:
    """A bastion.yaml in ``tmp_path/conf`` whose route names ``schema`` (``sdl`` written there)."""
    folder = tmp_path / "conf"
    folder.mkdir()
    if sdl is not None:
        (folder / "schema.graphql").write_text(sdl)
    config = {"services": [{"name": "app", "upstream": "http://127.0.0.1:9", "routes": [
        {"path": "/graphql", "methods": ["POST"], "public": True, "policies": {"graphql": {"schema": schema}}}]}]}
    path = folder / "bastion.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_a_schema_file_is_read_relative_to_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``schema: schema.graphql`` is the file beside bastion.yaml, wherever the gateway runs
    from; the stage built from it validates against it, and the file is among those watched
    for reload."""
    monkeypatch.chdir(tmp_path)
    loaded = load_config(_schema_config(tmp_path, SDL))
    (stage,) = [s for s in loaded.routes[0].built if isinstance(s, GraphQLStage)]
    assert stage.settings.schema_file == tmp_path / "conf" / "schema.graphql"
    assert stage.on_request(_post({"query": "{ me { name } }"})) is None
    assert _reason(stage.on_request(_post({"query": "{ me { nme } }"}))) == "graphql.invalid"
    # Watched for reload with the config: an edited schema is read again.
    assert loaded.files.count(tmp_path / "conf" / "schema.graphql") == 1


@pytest.mark.parametrize(
    ("sdl", "message"),
    [
        (None, ": cannot read the GraphQL schema (No such file or directory)"),
        ("tpye Query { me: User }", ":1:1: Syntax Error: Unexpected Name 'tpye'."),
        ("type Query {\n  me: Usr\n}", ":2:7: Unknown type 'Usr'."),
        ("type Foo { id: ID }", ": Query root type must be provided."),
    ],
)
def test_a_missing_or_invalid_schema_is_a_load_error(tmp_path: Path, sdl: str | None, message: str) -> None:
    """A schema file that is missing, does not parse or is not a valid schema stops the load
    with the config file, the field and graphql-core's message at the schema file's line and
    column."""
    path = _schema_config(tmp_path, sdl)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert str(path) in text and "policies.graphql.schema" in text
    assert str(tmp_path / "conf" / "schema.graphql") + message in text


SDL = """
type Query { me: User  users(first: Int): [User!]! }
type User { id: ID!  name: String!  friends(first: Int): [User!]! }
type Mutation { login(user: String!, password: String!): String }
"""


def test_a_document_the_schema_refuses_is_refused_without_suggestions(tmp_path: Path) -> None:
    """With a schema, an unknown field or argument is refused with 400 ``graphql.invalid``
    naming graphql-core's first error, without "Did you mean ...?" unless the caller holds
    an introspection role; the refusal is cached with the document; valid documents and the
    limits are unchanged."""
    (tmp_path / "s.graphql").write_text(SDL)
    stage = GraphQLStage(GraphQLConfig(schema=tmp_path / "s.graphql", introspection_roles=["schema"]))
    assert stage.on_request(_post({"query": "query Me { me { id name friends(first: 2) { id } } }"})) is None
    typo = _post({"query": "{ me { nme } }"})
    refused = stage.on_request(typo)
    assert refused is not None and refused.status == 400 and refused.reason == "graphql.invalid"
    assert refused.detail == (
        "The GraphQL document does not match the API's schema: Cannot query field 'nme' on type 'User'.")
    reader = _post({"query": "{ me { nme } }"})
    reader.principal = Principal("c1", roles=frozenset({"schema"}))
    shown = stage.on_request(reader)
    assert shown is not None and shown.detail.endswith("Did you mean 'name'?")
    assert _reason(stage.on_request(_post({"query": "{ users(frist: 3) { id } }"}))) == "graphql.invalid"
    assert _reason(stage.on_request(_post({"query": 'mutation { login(user: "a") }'}))) == "graphql.invalid"
    assert _reason(stage.on_request(_post({"query": _nested(11)}))) == "graphql.depth"
    assert stage._cache["{ me { nme } }"].block is refused


TYPED_SDL = """
schema { query: Root }
interface Node { id: ID! }
type Root { me: User  node(id: ID!): Node  all: [User!]!  secret: String }
type User implements Node { id: ID!  name: String!  salary: Int }
"""


def test_the_schema_gives_every_field_its_type(tmp_path: Path) -> None:
    """With a schema, ``User.salary`` guards a user's salary wherever it is selected (through
    a field's type, an inline fragment or an interface), where without one only ``... on
    User`` names the type; the root type is the schema's own (``Root.secret``); a list field
    without a size argument costs ``default_list_size`` times what it selects."""
    (tmp_path / "s.graphql").write_text(TYPED_SDL)
    settings = {"field_access": {"User.salary": {"roles": ["hr"]}}, "admin_fields": ["Root.secret"],
                "default_list_size": 10}
    typed = GraphQLStage(GraphQLConfig(schema=tmp_path / "s.graphql", **settings))
    untyped = GraphQLStage(GraphQLConfig(**settings))
    hr = Principal("c1", roles=frozenset({"hr"}))
    for query in ("{ me { salary } }", "{ node(id: 1) { ... on User { salary } } }", "{ all { id salary } }"):
        assert _reason(typed.on_request(_post({"query": query}))) == "graphql.forbidden", query
        allowed = _post({"query": query})
        allowed.principal = hr
        assert typed.on_request(allowed) is None, query
    assert untyped.on_request(_post({"query": "{ me { salary } }"})) is None
    assert _reason(typed.on_request(_post({"query": "{ secret }"}))) == "graphql.forbidden"
    assert measure("{ all { id name } }", typed.settings, typed._schema).cost == 1 + 10 * 2
    assert measure("{ all { id name } }", untyped.settings).cost == 1 + 2
    # A field of an interface is the field of every type that implements it.
    ids = GraphQLStage(GraphQLConfig(schema=tmp_path / "s.graphql", field_access={"User.id": {"roles": ["hr"]}}))
    assert _reason(ids.on_request(_post({"query": "{ node(id: 1) { id } }"}))) == "graphql.forbidden"


def test_settings_must_name_fields_the_schema_has(tmp_path: Path) -> None:
    """With a schema, a ``Type.field`` in ``admin_fields``, ``field_access`` or
    ``field_costs`` that the schema lacks is a load error (the rule would never apply); the
    conventional ``Mutation``/``Query`` names stand for a schema's own root types, so
    ``Query.secret`` guards ``Root.secret``."""
    (tmp_path / "s.graphql").write_text(TYPED_SDL)
    schema = tmp_path / "s.graphql"
    with pytest.raises(ValidationError, match=re.escape("'User.salry': the schema's type 'User' has no field 'salry'")):
        GraphQLConfig(schema=schema, field_access={"User.salry": {"roles": ["hr"]}})
    with pytest.raises(ValidationError, match=re.escape("'Usr.id': the schema has no object or interface type 'Usr'")):
        GraphQLConfig(schema=schema, admin_fields=["Usr.id"])
    with pytest.raises(ValidationError, match=re.escape("'Query.nope'")):
        GraphQLConfig(schema=schema, field_costs={"Query.nope": 5})
    stage = GraphQLStage(GraphQLConfig(schema=schema, admin_fields=["Query.secret", "salary"]))
    assert _reason(stage.on_request(_post({"query": "{ secret }"}))) == "graphql.forbidden"
