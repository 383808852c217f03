"""GraphQL attacks through a real gateway (``bastion serve`` on loopback) in front of a
real GraphQL server (graphql-core's executor, :mod:`tests.stages.graphql.upstream`), sent
by consumers with API keys: alice (no role) and root (``admin``).

Each attack is refused with 400/403 problem+json naming what it broke, and never reaches
the server (its login resolver is not called, its request log holds no trace of it); the
same requests within the limits pass and are answered by the server. A second gateway, on a
hand-written public route (`policies.graphql`), runs the persisted-query allow-list.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from bastion.testing import GatewayProcess
from tests.stages.graphql.upstream import SDL, GraphQLUpstream

#: The defaults, but for the roles, and a token limit high enough that a 1,000-alias
#: document (12,000 tokens) is refused by the alias limit itself (by default ``max_tokens``,
#: 2,000, refuses it first).
GRAPHQL_POLICY = {"introspection_roles": ["admin"], "admin_fields": ["deleteUser"], "max_tokens": 50_000}
API: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "social", "version": "1"},
    "security": [{"apiKey": []}],
    "paths": {"/graphql": {
        "get": {
            "operationId": "graphqlGet",
            "parameters": [{"name": n, "in": "query", "required": n == "query", "schema": {"type": "string"}}
                           for n in ("query", "variables", "operationName")],
            "responses": {"200": {"description": "ok"}},
            "x-bastion-graphql": GRAPHQL_POLICY,
        },
        "post": {
            "operationId": "graphql",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {}},
                                                          "application/graphql": {"schema": {"type": "string"}}}},
            "responses": {"200": {"description": "ok"}},
            "x-bastion-graphql": GRAPHQL_POLICY,
        },
    }},
    "components": {"securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[GraphQLUpstream]:
    with GraphQLUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def social(upstream: GraphQLUpstream) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    """The gateway, and the API keys of alice and root, accepted by it."""
    config = {
        "access_log": {"path": "access.log"},
        "consumers": [{"name": "alice"}, {"name": "root", "roles": ["admin"]}],
        "services": [{"name": "social", "openapi": "api.yaml", "upstream": upstream.url}],
    }
    with GatewayProcess(config, files={"api.yaml": yaml.safe_dump(API)}) as gw:
        keys = {}
        for name in ("alice", "root"):
            made = subprocess.run([sys.executable, "-m", "bastion", "keys", "create", name, "-c", "bastion.yaml"],
                                  cwd=gw.folder, capture_output=True, text=True, timeout=60, check=True)
            keys[name] = made.stdout.strip().splitlines()[-1]
        deadline = time.monotonic() + 10
        while _post(gw, keys["root"], {"query": "{ me { id } }"}).status_code != 200:
            assert time.monotonic() < deadline, "the keys were never accepted"
            time.sleep(0.1)  # the key snapshot polls the store every second
        yield gw, keys


def _post(gw: GatewayProcess, key: str, payload: object) -> httpx.Response:
    return httpx.post(gw.url + "/graphql", json=payload, headers={"X-API-Key": key}, timeout=10)


def _refused(gw: GatewayProcess, resp: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    """``resp`` is a problem+json refusal by the graphql stage with ``reason`` in the record."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = resp.json()
    record = gw.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert record["blocked_by"] == "graphql"
    assert record["decisions"] == [{"stage": "graphql", "action": "block", "reason": reason}]
    return doc


@pytest.fixture
def token() -> str:
    """A marker unique to the test, put in its documents (as an operation name)."""
    return f"T{uuid.uuid4().hex[:12]}"


def test_queries_within_the_limits_pass_in_every_form(social: tuple[GatewayProcess, dict[str, str]]) -> None:
    """A nested query with fragments, the same as ``application/graphql`` and as ``GET
    ?query=``, and a batch of two are answered by the GraphQL server; the access record
    names the batch's operations and their cost."""
    gw, keys = social
    query = "query Me { me { ...U friends(first: 1) { ...U } } } fragment U on User { id name }"
    expected = {"data": {"me": {"id": "0", "name": "user0", "friends": [{"id": "0", "name": "user0"}]}}}
    assert _post(gw, keys["alice"], {"query": query}).json() == expected
    as_graphql = httpx.post(gw.url + "/graphql", content=query, timeout=10,
                            headers={"X-API-Key": keys["alice"], "content-type": "application/graphql"})
    assert as_graphql.json() == expected
    as_get = httpx.get(gw.url + "/graphql", params={"query": query}, headers={"X-API-Key": keys["alice"]}, timeout=10)
    assert as_get.json() == expected
    batch = _post(gw, keys["alice"], [{"query": query}, {"query": "{ user(id: 2) { name } }"}])
    assert batch.json() == [expected, {"data": {"user": {"name": "user2"}}}]
    record = gw.wait_for_access_record(lambda r: r["request_id"] == batch.headers["x-request-id"])
    assert record["graphql"] == {"operations": ["query Me", "query"], "cost": 8}


def test_a_malformed_document_is_refused(social: tuple[GatewayProcess, dict[str, str]], token: str,
                                          upstream: GraphQLUpstream) -> None:
    """A document that does not parse is refused with 400 ``graphql.malformed``, not forwarded."""
    gw, keys = social
    doc = _refused(gw, _post(gw, keys["alice"], {"query": f"query {token} {{ me {{ name "}), 400, "graphql.malformed")
    assert doc["detail"] == "The GraphQL document does not parse."
    assert not upstream.saw(token)


def test_a_depth_bomb_is_refused(social: tuple[GatewayProcess, dict[str, str]], token: str,
                                 upstream: GraphQLUpstream) -> None:
    """Friends of friends 30 levels deep (each level a list the server would resolve) is
    refused with 400 naming ``max_depth``; 10 levels pass."""
    gw, keys = social
    bomb = f"query {token} {{ me {{ " + "friends { " * 29 + "id" + " }" * 30 + " }"
    doc = _refused(gw, _post(gw, keys["alice"], {"query": bomb}), 400, "graphql.depth")
    assert doc["detail"] == "The GraphQL document's depth is 31; at most 10 is allowed (max_depth)."
    assert not upstream.saw(token)
    ten = "{ me { " + "friends { " * 8 + "id" + " }" * 9 + " }"
    assert _post(gw, keys["alice"], {"query": ten}).status_code == 200


def test_a_login_brute_force_through_1000_aliases_is_refused(
    social: tuple[GatewayProcess, dict[str, str]], upstream: GraphQLUpstream
) -> None:
    """One request with 1,000 aliased ``login`` mutations (1,000 password guesses that a
    per-request rate limit counts as one) is refused with 400 naming ``max_aliases``: the
    server's login resolver is not called once."""
    gw, keys = social
    guesses = " ".join(f'g{i}: login(user: "admin", password: "guess{i}")' for i in range(1000))
    before = upstream.logins
    doc = _refused(gw, _post(gw, keys["alice"], {"query": f"mutation {{ {guesses} }}"}), 400, "graphql.aliases")
    assert doc["detail"] == "The GraphQL document's number of aliases is 1000; at most 15 is allowed (max_aliases)."
    assert upstream.logins == before


def test_a_batching_attack_is_refused(social: tuple[GatewayProcess, dict[str, str]],
                                      upstream: GraphQLUpstream) -> None:
    """A JSON array of 100 login operations (the batched form of the same brute force) is
    refused with 400 naming ``max_batch``; the resolver is not called."""
    gw, keys = social
    batch = [{"query": f'mutation {{ login(user: "admin", password: "guess{i}") }}'} for i in range(100)]
    before = upstream.logins
    doc = _refused(gw, _post(gw, keys["alice"], batch), 400, "graphql.batch")
    assert doc["detail"] == "The request batches 100 GraphQL operations; at most 5 are allowed (max_batch)."
    assert upstream.logins == before


def test_circular_fragments_are_refused(social: tuple[GatewayProcess, dict[str, str]], token: str,
                                        upstream: GraphQLUpstream) -> None:
    """Fragments that spread each other (infinite depth once expanded) are refused with 400
    ``graphql.circular_fragments`` before they reach the server."""
    gw, keys = social
    query = (f"query {token} {{ me {{ ...A }} }} fragment A on User {{ friends {{ ...B }} }} "
             "fragment B on User { friends { ...A } }")
    _refused(gw, _post(gw, keys["alice"], {"query": query}), 400, "graphql.circular_fragments")
    assert not upstream.saw(token)


def test_introspection_needs_a_role(social: tuple[GatewayProcess, dict[str, str]], token: str,
                                    upstream: GraphQLUpstream) -> None:
    """``__schema`` from alice is refused with 403 ``graphql.introspection`` (also inside a
    fragment, and over GET); root, who holds the ``admin`` role, gets the schema."""
    gw, keys = social
    query = f"query {token} {{ __schema {{ queryType {{ name }} }} }}"
    _refused(gw, _post(gw, keys["alice"], {"query": query}), 403, "graphql.introspection")
    hidden = f"query {token} {{ ...S }} fragment S on Query {{ __type(name: \"User\") {{ name }} }}"
    _refused(gw, _post(gw, keys["alice"], {"query": hidden}), 403, "graphql.introspection")
    over_get = httpx.get(gw.url + "/graphql", params={"query": query}, headers={"X-API-Key": keys["alice"]},
                         timeout=10)
    _refused(gw, over_get, 403, "graphql.introspection")
    assert not upstream.saw(token)
    assert _post(gw, keys["root"], {"query": query}).json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


def test_field_suggestions_are_stripped(social: tuple[GatewayProcess, dict[str, str]]) -> None:
    """The server's "Did you mean 'name'?" (which lets a client map the schema without
    introspection) does not reach alice; the rest of the error does. Root, allowed
    introspection, gets the message whole."""
    gw, keys = social
    typo = {"query": "{ me { nme } }"}
    errors = _post(gw, keys["alice"], typo).json()["errors"]
    assert [e["message"] for e in errors] == ["Cannot query field 'nme' on type 'User'."]
    errors = _post(gw, keys["root"], typo).json()["errors"]
    assert [e["message"] for e in errors] == ["Cannot query field 'nme' on type 'User'. Did you mean 'name'?"]


def test_an_admin_field_needs_the_admin_role(social: tuple[GatewayProcess, dict[str, str]],
                                             upstream: GraphQLUpstream) -> None:
    """``deleteUser`` (an ``admin_fields`` entry) from alice is refused with 403
    ``graphql.forbidden`` and deletes nothing; from root it runs."""
    gw, keys = social
    _refused(gw, _post(gw, keys["alice"], {"query": 'mutation { deleteUser(id: "3") }'}), 403, "graphql.forbidden")
    assert "3" not in upstream.deleted
    assert _post(gw, keys["root"], {"query": 'mutation { deleteUser(id: "4") }'}).json() == {
        "data": {"deleteUser": True}}
    assert "4" in upstream.deleted


def test_a_costly_query_is_refused_with_its_variables(social: tuple[GatewayProcess, dict[str, str]],
                                                      token: str, upstream: GraphQLUpstream) -> None:
    """A list size given as a variable counts: the same document passes with ``first: 3``
    and is refused with 400 naming ``max_cost`` with ``first: 1000``."""
    gw, keys = social
    query = f"query {token}($n: Int) {{ users(first: $n) {{ friends(first: $n) {{ id name }} }} }}"
    assert _post(gw, keys["alice"], {"query": query, "variables": {"n": 3}}).status_code == 200
    before = len(upstream.bodies)
    doc = _refused(gw, _post(gw, keys["alice"], {"query": query, "variables": {"n": 1000}}), 400, "graphql.cost")
    assert doc["detail"] == "The GraphQL document's cost is 2001001; at most 1000 is allowed (max_cost)."
    assert len(upstream.bodies) == before


PERSISTED = "query Profile { me { id name } }"


@pytest.fixture(scope="module")
def persisted(upstream: GraphQLUpstream) -> Iterator[GatewayProcess]:
    """A hand-written public route with ``policies.graphql`` in allow-list mode: only
    :data:`PERSISTED` may run."""
    digest = hashlib.sha256(PERSISTED.encode()).hexdigest()
    config = {
        "access_log": {"path": "access.log"},
        "services": [{"name": "app", "upstream": upstream.url, "routes": [
            {"path": "/graphql", "methods": ["GET", "POST"], "public": True,
             "policies": {"graphql": {"persisted_queries": [digest]}}}]}],
    }
    with GatewayProcess(config) as gw:
        yield gw


def test_only_persisted_documents_run_in_allow_list_mode(persisted: GatewayProcess, token: str,
                                                         upstream: GraphQLUpstream) -> None:
    """The listed document runs (POST and GET); any other, even a harmless one, is refused
    with 403 ``graphql.not_persisted`` and never reaches the server."""
    gw = persisted
    expected = {"data": {"me": {"id": "0", "name": "user0"}}}
    assert httpx.post(gw.url + "/graphql", json={"query": PERSISTED}, timeout=10).json() == expected
    assert httpx.get(gw.url + "/graphql", params={"query": PERSISTED}, timeout=10).json() == expected
    other = httpx.post(gw.url + "/graphql", json={"query": f"query {token} {{ me {{ id }} }}"}, timeout=10)
    doc = _refused(gw, other, 403, "graphql.not_persisted")
    assert doc["detail"] == "Only persisted GraphQL documents may run on this route."
    assert not upstream.saw(token)


@pytest.fixture(scope="module")
def schema_checked(upstream: GraphQLUpstream) -> Iterator[GatewayProcess]:
    """A public route whose OpenAPI document (in a sub-folder) names the server's schema as
    ``schema: schema.graphql``, a file beside the document."""
    api = {
        "openapi": "3.1.0",
        "info": {"title": "social", "version": "1"},
        "paths": {"/graphql": {"post": {
            "operationId": "graphql",
            "security": [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
            "responses": {"200": {"description": "ok"}},
            "x-bastion-graphql": {"schema": "schema.graphql"},
        }}},
    }
    config = {
        "access_log": {"path": "access.log"},
        "services": [{"name": "social", "openapi": "api/api.yaml", "upstream": upstream.url}],
    }
    files = {"api/api.yaml": yaml.safe_dump(api), "api/schema.graphql": SDL}
    with GatewayProcess(config, files=files) as gw:
        yield gw


def test_a_document_the_schema_refuses_never_reaches_the_server(schema_checked: GatewayProcess, token: str,
                                                                 upstream: GraphQLUpstream) -> None:
    """With the server's schema, a valid query is answered by the server; one with an
    unknown field or a missing argument is refused with 400 ``graphql.invalid`` naming the
    error, without the "Did you mean" that would map the schema, and the server never sees
    it."""
    gw = schema_checked
    logins = upstream.logins
    ok = httpx.post(gw.url + "/graphql", json={"query": f"query {token}Ok {{ me {{ id name }} }}"}, timeout=10)
    assert ok.json() == {"data": {"me": {"id": "0", "name": "user0"}}}
    typo = httpx.post(gw.url + "/graphql", json={"query": f"query {token} {{ me {{ nme }} }}"}, timeout=10)
    doc = _refused(gw, typo, 400, "graphql.invalid")
    assert doc["detail"] == (
        "The GraphQL document does not match the API's schema: Cannot query field 'nme' on type 'User'.")
    missing = httpx.post(gw.url + "/graphql", json={"query": f"mutation {token}Login {{ login(user: \"ann\") }}"},
                         timeout=10)
    doc = _refused(gw, missing, 400, "graphql.invalid")
    assert doc["detail"].endswith(
        "Argument 'Mutation.login(password:)' of type 'String!' is required, but it was not provided.")
    assert not upstream.saw(token + " ") and not upstream.saw(token + "Login") and upstream.logins == logins


def _introspecting(upstream_url: str) -> GatewayProcess:
    """A gateway whose public GraphQL route has ``schema: introspect``, in front of ``upstream_url``."""
    config = {
        "access_log": {"path": "access.log"},
        "services": [{"name": "app", "upstream": upstream_url, "routes": [
            {"path": "/graphql", "methods": ["POST"], "public": True,
             "policies": {"graphql": {"schema": "introspect"}}}]}],
    }
    return GatewayProcess(config)


def test_an_introspected_schema_validates_documents(upstream: GraphQLUpstream, token: str) -> None:
    """``schema: introspect`` asks the server for its schema once the worker starts; then a
    valid query is answered by the server and one with an unknown field is refused with 400
    ``graphql.invalid`` without reaching it."""
    with _introspecting(upstream.url) as gw:
        deadline = time.monotonic() + 20
        while (ok := httpx.post(gw.url + "/graphql", json={"query": "{ me { id } }"}, timeout=10)).status_code == 503:
            assert time.monotonic() < deadline, "the schema was never introspected"
            time.sleep(0.1)
        assert ok.json() == {"data": {"me": {"id": "0"}}}
        typo = httpx.post(gw.url + "/graphql", json={"query": f"query {token} {{ me {{ nme }} }}"}, timeout=10)
        doc = _refused(gw, typo, 400, "graphql.invalid")
        assert doc["detail"].endswith("Cannot query field 'nme' on type 'User'.")
        assert not upstream.saw(token)


def test_without_an_introspected_schema_the_route_fails_closed() -> None:
    """When the upstream cannot be introspected (here nothing listens), the route answers
    503 ``graphql.schema_unavailable`` problem+json and the log says why, naming the URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with _introspecting(f"http://127.0.0.1:{port}") as gw:
        refused = httpx.post(gw.url + "/graphql", json={"query": "{ me { id } }"}, timeout=10)
        doc = _refused(gw, refused, 503, "graphql.schema_unavailable")
        assert doc["detail"] == "The GraphQL schema of this API is not known yet; try again shortly."
        deadline = time.monotonic() + 10
        expected = f"no schema yet, the route answers 503 until introspection succeeds: http://127.0.0.1:{port}/graphql"
        while expected not in gw.stderr_text():
            assert time.monotonic() < deadline, gw.stderr_text()
            time.sleep(0.1)



def test_an_introspected_schema_outlives_a_reload(token: str) -> None:
    """Once learnt, the schema stays with the worker: after a reload, with the server gone
    (so it cannot be asked again), the route still validates (400 ``graphql.invalid``, not
    503) and the log says the known schema stays."""
    server = GraphQLUpstream().__enter__()
    with _introspecting(server.url) as gw:
        deadline = time.monotonic() + 20
        while httpx.post(gw.url + "/graphql", json={"query": "{ me { id } }"}, timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the schema was never introspected"
            time.sleep(0.1)
        server.__exit__()
        assert gw.reload()[0] == 200
        typo = httpx.post(gw.url + "/graphql", json={"query": f"query {token} {{ me {{ nme }} }}"}, timeout=10)
        _refused(gw, typo, 400, "graphql.invalid")
        deadline = time.monotonic() + 10
        while "introspecting again failed, the schema known before stays" not in gw.stderr_text():
            assert time.monotonic() < deadline, gw.stderr_text()
            time.sleep(0.1)
