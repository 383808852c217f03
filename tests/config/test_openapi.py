"""OpenAPI documents as route sources: x-bastion-* policies by level, base path, matrix
parameters, and errors that name the document."""

from __future__ import annotations

import textwrap
from pathlib import Path

from bastion.config import load_config

from .util import errors_of, write

OPENAPI_WITH_POLICIES = """\
openapi: 3.0.3
info: {title: t, version: '1'}
servers: [{url: "https://api.example.test/v2"}]
x-bastion-headers: {set: {x-doc: doc}, add_if_missing: {cache-control: no-store}}
security: [{key: []}]
paths:
  /items:
    x-bastion-headers: {set: {x-doc: path}}
    get:
      operationId: listItems
      security: []
    post:
      operationId: createItem
      x-bastion-headers: {set: {x-doc: op}}
  /health:
    get:
      operationId: health
      x-bastion-headers: {enabled: false}
"""


def test_openapi_policies_nearest_wins_and_base_path(tmp_path: Path) -> None:
    """x-bastion-* at document, path and operation level merge with the nearest winning, per field."""
    (tmp_path / "api.yaml").write_text(OPENAPI_WITH_POLICIES)
    loaded = load_config(
        write(
            tmp_path,
            """\
        services:
          - name: a
            upstream: http://127.0.0.1:1
            openapi: api.yaml
            policies:
              headers: {remove: [server, x-debug]}
        """,
        )
    )
    routes = {r.id: r for r in loaded.routes}
    assert routes["listItems"].path == "/v2/items"  # base path from servers[0]
    assert routes["listItems"].public and not routes["createItem"].public

    def headers_cfg(route_id: str) -> dict[str, object]:
        (cfg,) = [cfg for spec, cfg in routes[route_id].stages if spec.name == "headers"]
        return cfg.model_dump()

    assert headers_cfg("listItems")["set"] == {"x-doc": "path"}
    assert headers_cfg("createItem")["set"] == {"x-doc": "op"}
    # Fields not overridden nearer come from farther layers (service in bastion.yaml, document).
    assert headers_cfg("createItem")["remove"] == ["server", "x-debug"]
    assert headers_cfg("createItem")["add_if_missing"] == {"cache-control": "no-store"}
    assert "headers" not in [spec.name for spec, _ in routes["health"].stages]  # disabled at operation level


def test_openapi_matrix_path_parameters_are_named_on_the_route(tmp_path: Path) -> None:
    """The path parameters an operation declares ``style: matrix`` (on the path item, the
    operation, or through a $ref; the operation's own declaration wins) are on its route,
    for the router; other styles and locations are not."""
    (tmp_path / "api.yaml").write_text(textwrap.dedent("""\
        openapi: 3.1.0
        info: {title: t, version: "1"}
        components:
          parameters:
            Id: {name: id, in: path, required: true, style: matrix, schema: {type: integer}}
        paths:
          /items/{color}/{id}:
            parameters:
              - {name: color, in: path, required: true, style: matrix, schema: {type: string}}
              - {$ref: "#/components/parameters/Id"}
            get:
              operationId: both
              parameters: [{name: color, in: query, style: form, schema: {type: string}}]
              responses: {"200": {description: ok}}
            put:
              operationId: idOnly
              parameters: [{name: color, in: path, required: true, style: label, schema: {type: string}}]
              responses: {"200": {description: ok}}
        """))
    loaded = load_config(write(tmp_path, "services: [{name: a, upstream: 'http://127.0.0.1:1', openapi: api.yaml}]"))
    routes = {r.id: r for r in loaded.routes}
    assert routes["both"].matrix_params == {"color", "id"}
    assert routes["idOnly"].matrix_params == {"id"}


def test_openapi_errors_name_the_document(tmp_path: Path) -> None:
    """Problems inside the OpenAPI document are reported with its own file name and line."""
    (tmp_path / "api.yaml").write_text(
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      x-bastion-header: {}\n"
        "  /b:\n    get:\n      x-bastion-headers: {enforce: 3}\n"
    )
    issues = errors_of(write(tmp_path, "services:\n  - {name: a, upstream: 'http://127.0.0.1:1', openapi: api.yaml}\n"))
    shown = [i.replace(str(tmp_path) + "/", "") for i in issues]
    assert any(s.startswith("api.yaml:6: paths./a.get.x-bastion-header: unknown Bastion extension") for s in shown)
    assert any(
        s.startswith("api.yaml:9: paths./b.get.x-bastion-headers.enforce: Input should be a valid boolean")
        for s in shown
    ), shown


def test_swagger_2_is_refused_with_a_hint(tmp_path: Path) -> None:
    """A Swagger 2.0 document is refused with a message saying to convert it."""
    (tmp_path / "api.yaml").write_text("swagger: '2.0'\ninfo: {title: t, version: '1'}\npaths: {}\n")
    issues = errors_of(write(tmp_path, "services:\n  - {name: a, upstream: 'http://127.0.0.1:1', openapi: api.yaml}\n"))
    assert any("expected OpenAPI version 3.0.x or 3.1.x, got missing (Swagger 2.0" in i for i in issues)
