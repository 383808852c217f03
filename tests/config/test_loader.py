"""The config loader: valid files load, broken ones fail with file, line, field and reason."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bastion.config import load_config
from bastion.demo.app import openapi_path

from .util import errors_of, write

MINIMAL = """\
listen: {host: 127.0.0.1, port: 8080}
admin: {host: 127.0.0.1, port: 9090}
services:
  - name: books
    upstream: http://127.0.0.1:9001
    openapi: books.openapi.yaml
"""


def test_issue_minimal_config_verbatim(tmp_path: Path) -> None:
    """The minimal file from the README works verbatim, its routes coming from the OpenAPI file."""
    (tmp_path / "books.openapi.yaml").write_text(openapi_path().read_text())
    loaded = load_config(write(tmp_path, MINIMAL))
    ids = {r.id for r in loaded.routes}
    assert {"listBooks", "getBook", "createOrder", "getUser"} <= ids
    get_book = next(r for r in loaded.routes if r.id == "getBook")
    assert get_book.path == "/books/{bookId}"
    assert get_book.methods == {"GET", "HEAD"}
    assert get_book.public is True  # security: [] in the document
    create = next(r for r in loaded.routes if r.id == "createOrder")
    assert create.public is False and create.methods == {"POST"}
    assert loaded.files[1] == tmp_path / "books.openapi.yaml"


def test_catch_all_route_accepts_every_method_but_trace(tmp_path: Path) -> None:
    """A hand-written prefix route without methods allows the usual methods, TRACE excluded."""
    path = write(
        tmp_path,
        """\
        services:
          - name: api
            upstream: http://127.0.0.1:9001
            routes: [{path: "/", prefix: true, public: true}]
        """,
    )
    (route,) = load_config(path).routes
    assert route.prefix and route.public
    assert "TRACE" not in route.methods and {"GET", "POST", "DELETE", "HEAD"} <= route.methods


def test_request_body_methods_are_decided_at_load(tmp_path: Path) -> None:
    """Which methods may carry a body is fixed per route when the config loads: POST, PUT
    and PATCH on a hand-written route by default, every method with ``request_body:
    allowed``, none with ``refused``; on an OpenAPI operation, its method if it declares a
    ``requestBody`` and none otherwise."""
    (tmp_path / "books.openapi.yaml").write_text(openapi_path().read_text())
    path = write(
        tmp_path,
        """\
        services:
          - name: books
            upstream: http://127.0.0.1:9001
            openapi: books.openapi.yaml
            routes:
              - {path: /by-method, public: true}
              - {path: /allowed, public: true, methods: [GET, DELETE], request_body: allowed}
              - {path: /refused, public: true, methods: [POST], request_body: refused}
        """,
    )
    routes = {r.id: r for r in load_config(path).routes}
    assert routes["books:/by-method"].body_methods == {"POST", "PUT", "PATCH"}
    assert routes["books:/allowed"].body_methods == {"GET", "HEAD", "DELETE"}
    assert routes["books:/refused"].body_methods == frozenset()
    assert routes["createOrder"].body_methods == {"POST"}  # declares a requestBody
    assert routes["getBook"].body_methods == frozenset()


def test_response_body_limit_is_resolved_per_route(tmp_path: Path) -> None:
    """``max_response_body_bytes`` and ``response_body_over_limit`` resolve like
    ``max_body_bytes``: a route's own setting, else its service's, else ``listen.limits``;
    the secure default is 10 MiB and ``block``."""
    (tmp_path / "books.openapi.yaml").write_text(openapi_path().read_text())
    path = write(
        tmp_path,
        """\
        listen: {limits: {max_response_body_bytes: 1000}}
        services:
          - name: books
            upstream: http://127.0.0.1:9001
            openapi: books.openapi.yaml
            response_body_over_limit: pass
            routes:
              - {path: /own, public: true, max_response_body_bytes: 5, response_body_over_limit: block}
              - {path: /inherited, public: true}
          - name: plain
            upstream: http://127.0.0.1:9002
            routes: [{path: /plain, public: true}]
        """,
    )
    routes = {r.id: r for r in load_config(path).routes}
    own, inherited = routes["books:/own"], routes["books:/inherited"]
    assert (own.max_response_body_bytes, own.response_body_over_limit) == (5, "block")
    assert (inherited.max_response_body_bytes, inherited.response_body_over_limit) == (1000, "pass")
    assert routes["getBook"].response_body_over_limit == "pass"  # an OpenAPI operation too
    plain = routes["plain:/plain"]
    assert (plain.max_response_body_bytes, plain.response_body_over_limit) == (1000, "block")
    bare = "services: [{name: a, upstream: 'http://127.0.0.1:1', routes: [{path: /, public: true}]}]\n"
    default = write(tmp_path, bare, "d.yaml")
    (route,) = load_config(default).routes
    assert (route.max_response_body_bytes, route.response_body_over_limit) == (10 * 1024 * 1024, "block")



def test_request_limits_are_resolved_per_route(tmp_path: Path) -> None:
    """Header, target and query limits resolve field by field: a route's own ``limits``,
    else its service's, else ``listen.limits``; OpenAPI operations take the service's."""
    (tmp_path / "books.openapi.yaml").write_text(openapi_path().read_text())
    path = write(
        tmp_path,
        """\
        listen: {limits: {max_query_params: 50}}
        services:
          - name: books
            upstream: http://127.0.0.1:9001
            openapi: books.openapi.yaml
            limits: {max_headers: 40, max_query_bytes: 1000}
            routes:
              - {path: /own, public: true, limits: {max_headers: 20, max_url_bytes: 512, max_query_params: 500}}
              - {path: /inherited, public: true}
        """,
    )
    routes = {r.id: r.limits for r in load_config(path).routes}
    own, inherited, op = routes["books:/own"], routes["books:/inherited"], routes["getBook"]
    assert own is not None and inherited is not None and op is not None
    got = [(x.max_headers, x.max_url_bytes, x.max_query_bytes, x.max_query_params) for x in (own, inherited, op)]
    assert got == [(20, 512, 1000, 500), (40, 8192, 1000, 50), (40, 8192, 1000, 50)]
    assert own.max_header_bytes == 32 * 1024  # never set: the listener's


BROKEN: list[tuple[str, str, list[str]]] = [
    (
        "route head limit above the listener's",
        """\
        listen: {limits: {max_headers: 50}}
        services:
          - name: a
            upstream: "http://127.0.0.1:1"
            routes:
              - {path: /, public: true, limits: {max_headers: 60}}
        """,
        ["bastion.yaml:6: services[0].routes[0].limits.max_headers: 60 is above listen.limits.max_headers (50)"],
    ),
    (
        "unknown top-level key",
        """\
        listen: {port: 8080}
        servces: []
        """,
        ["bastion.yaml:2: servces: unknown field (did you mean 'services'?); expected one of: listen, admin, services"],
    ),
    (
        "port out of range",
        """\
        listen: {host: 127.0.0.1, port: 80800}
        services:
          - {name: a, upstream: "http://127.0.0.1:1", routes: [{path: /}]}
        """,
        ["bastion.yaml:1: listen.port: Input should be less than or equal to 65535 (got 80800)"],
    ),
    (
        "misspelt service field",
        """\
        services:
          - name: books
            upsteam: http://127.0.0.1:9001
            routes: [{path: /}]
        """,
        [
            "bastion.yaml:2: services[0].upstream: required field is missing",
            "bastion.yaml:3: services[0].upsteam: unknown field (did you mean 'upstream'?)",
        ],
    ),
    (
        "upstream not http",
        """\
        services:
          - name: books
            upstream: ftp://files.example
            routes: [{path: /}]
        """,
        ["bastion.yaml:3: services[0].upstream: expected an http:// or https:// URL, got 'ftp://files.example'"],
    ),
    (
        "route path without slash",
        """\
        services:
          - name: books
            upstream: http://127.0.0.1:9001
            routes:
              - path: books
        """,
        ["bastion.yaml:5: services[0].routes[0].path: a route path must start with '/', got 'books'"],
    ),
    (
        "unknown method",
        """\
        services:
          - name: books
            upstream: http://127.0.0.1:9001
            routes:
              - {path: /books, methods: [GET, FETCH]}
        """,
        ["bastion.yaml:5: services[0].routes[0].methods: unknown method 'FETCH'; expected one of GET, HEAD"],
    ),
    (
        "service without routes or openapi",
        """\
        services:
          - name: books
            upstream: http://127.0.0.1:9001
        """,
        ["bastion.yaml:2: services[0]: a service needs an 'openapi' document or at least one route in 'routes'"],
    ),
    (
        "duplicate key",
        """\
        services:
          - name: books
            name: again
            upstream: http://127.0.0.1:9001
        """,
        ["bastion.yaml:3: services[0].name: duplicate key (each key may appear once)"],
    ),
    (
        "YAML syntax error",
        """\
        services:
          - name: [books
        """,
        ["bastion.yaml:3: (top level): YAML syntax error"],
    ),
    (
        "missing environment variable",
        """\
        services:
          - name: books
            upstream: ${BASTION_TEST_SURELY_UNSET_UPSTREAM}
            routes: [{path: /}]
        """,
        ["bastion.yaml:3: services[0].upstream: environment variable BASTION_TEST_SURELY_UNSET_UPSTREAM is not set"],
    ),
    (
        "unknown stage in policies",
        """\
        services:
          - name: books
            upstream: http://127.0.0.1:9001
            routes: [{path: /}]
            policies:
              header: {}
        """,
        ["bastion.yaml:6: services[0].policies.header: unknown stage (did you mean 'headers'?)"],
    ),
    (
        "invalid stage setting",
        """\
        services:
          - name: books
            upstream: http://127.0.0.1:9001
            routes: [{path: /}]
            policies:
              headers: {enforce: sometimes}
        """,
        [
            "bastion.yaml:6: services[0].policies.headers.enforce: "
            "Input should be a valid boolean, unable to interpret input (got 'sometimes')"
        ],
    ),
    (
        "missing OpenAPI file",
        """\
        services:
          - name: books
            upstream: http://127.0.0.1:9001
            openapi: nowhere.yaml
        """,
        ["bastion.yaml:4: services[0].openapi: OpenAPI document"],
    ),
    (
        "two routes for the same method and path",
        """\
        services:
          - name: a
            upstream: http://127.0.0.1:9001
            routes: [{path: "/x/{id}", methods: [GET]}]
          - name: b
            upstream: http://127.0.0.1:9002
            routes: [{path: "/x/{other}", methods: [GET, POST]}]
        """,
        ["bastion.yaml:7: route 'b:/x/{other}': GET /x/{other} is also declared by bastion.yaml:4"],
    ),
    (
        "TLS cert without key",
        """\
        listen:
          tls: {cert: cert.pem}
        services:
          - {name: a, upstream: "http://127.0.0.1:1", routes: [{path: /}]}
        """,
        ["bastion.yaml:2: listen.tls.key: required field is missing"],
    ),
    (
        "unknown request_body setting",
        """\
        services:
          - name: a
            upstream: http://127.0.0.1:9001
            routes: [{path: /x, request_body: yes}]
        """,
        ["bastion.yaml:4: services[0].routes[0].request_body: Input should be 'by_method', 'allowed' or 'refused'"],
    ),
    (
        "empty file",
        "",
        ["bastion.yaml: (top level): the file is empty"],
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_is_rejected_precisely(tmp_path: Path, name: str, text: str, expected: list[str]) -> None:
    """Each broken file fails to load and every expected message (file:line: field: reason) is reported."""
    issues = errors_of(write(tmp_path, text))
    shown = [i.replace(str(tmp_path) + "/", "") for i in issues]
    for want in expected:
        assert any(s.startswith(want) for s in shown), f"{want!r} not in {shown!r}"


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    """openapi, TLS and access-log paths are relative to the config file, not the working directory."""
    sub = tmp_path / "conf"
    (sub / "certs").mkdir(parents=True)
    (sub / "certs/c.pem").write_text("placeholder")
    (sub / "certs/k.pem").write_text("placeholder")
    (sub / "api.yaml").write_text("openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /ping:\n    get: {}\n")
    loaded = load_config(
        write(
            sub,
            """\
        listen:
          tls: {cert: certs/c.pem, key: certs/k.pem}
        access_log: {path: logs/access.log}
        services:
          - {name: a, upstream: "http://127.0.0.1:1", openapi: api.yaml}
        """,
        )
    )
    tls = loaded.config.listen.tls
    assert tls is not None and tls.cert == sub / "certs/c.pem"
    assert loaded.config.access_log.path == str(sub / "logs/access.log")
    assert loaded.routes[0].path == "/ping"


def test_missing_certificate_files_are_reported_by_check(tmp_path: Path) -> None:
    """TLS files named in the config must exist at load time (so `bastion check` catches them)."""
    issues = errors_of(
        write(
            tmp_path,
            """\
        listen:
          tls: {cert: missing.pem, key: missing.key}
        services:
          - {name: a, upstream: "http://127.0.0.1:1", routes: [{path: /}]}
        """,
        )
    )
    shown = [i.replace(str(tmp_path) + "/", "") for i in issues]
    assert any(
        s.startswith("bastion.yaml:2: listen.tls.cert: file ") and "missing.pem' not found" in s for s in shown
    ), shown
    assert any(s.startswith("bastion.yaml:2: listen.tls.key: file ") for s in shown)


def test_explicit_head_operation_wins_over_implied_head(tmp_path: Path) -> None:
    """An OpenAPI document with both get and head on a path routes HEAD to the head operation."""
    (tmp_path / "api.yaml").write_text(
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n"
        "    get: {operationId: getA}\n    head: {operationId: headA}\n"
    )
    config = "services:\n  - {name: a, upstream: 'http://127.0.0.1:1', openapi: api.yaml}\n"
    loaded = load_config(write(tmp_path, config))
    routes = {r.id: r.methods for r in loaded.routes}
    assert routes == {"getA": {"GET"}, "headA": {"HEAD"}}


def test_stage_build_errors_are_config_errors(tmp_path: Path) -> None:
    """A stage that cannot compile its operation (here: an unresolvable $ref) fails the load, naming the route."""
    (tmp_path / "api.yaml").write_text(
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    post:\n      operationId: makeA\n"
        "      requestBody:\n        content:\n          application/json:\n"
        "            schema: {$ref: '#/components/schemas/Missing'}\n"
    )
    config = "services:\n  - {name: a, upstream: 'http://127.0.0.1:1', openapi: api.yaml}\n"
    issues = errors_of(write(tmp_path, config))
    shown = [i.replace(str(tmp_path) + "/", "") for i in issues]
    assert any(s.startswith("api.yaml#/paths/~1a/post: validation (makeA): ") and "Missing" in s for s in shown), shown


def test_deprecated_stage_setting_loads_with_a_located_warning(tmp_path: Path) -> None:
    """detection's stage-wide 'mode' still loads, as the settings it meant ('monitor' is shadow
    mode), and each place that sets it gives one warning with file, line, field and the
    replacement -- also in an OpenAPI extension, where one document-level layer serves many
    routes."""
    (tmp_path / "api.yaml").write_text(textwrap.dedent("""\
        openapi: 3.0.3
        info: {title: t, version: '1'}
        x-bastion-detection: {mode: 'off'}
        paths:
          /a: {get: {security: [], responses: {'200': {description: ok}}}}
          /b: {get: {security: [], responses: {'200': {description: ok}}}}
        """))
    path = write(
        tmp_path,
        """\
        policies:
          detection:
            mode: monitor
        services:
          - name: api
            upstream: http://127.0.0.1:9001
            routes: [{path: /x, public: true}, {path: /y, public: true}]
          - name: docs
            upstream: http://127.0.0.1:9002
            openapi: api.yaml
        """,
    )
    loaded = load_config(path)
    replacement = "'mode' is deprecated: shadow mode is 'enforce: false', as for every stage"
    warnings = [str(w) for w in loaded.warnings]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(f"{path}:3: policies.detection.mode: {replacement}")
    assert warnings[1].startswith(f"{tmp_path / 'api.yaml'}:3: x-bastion-detection.mode: {replacement}")
    x = next(r for r in loaded.routes if r.path == "/x")
    detection = next(cfg for spec, cfg in x.stages if spec.name == "detection")
    assert detection.enforce is False and detection.enabled is True
    a = next(r for r in loaded.routes if r.path == "/a")
    assert "detection" not in {spec.name for spec, _ in a.stages}  # 'mode: off' is enabled: false


def test_current_settings_give_no_warning(tmp_path: Path) -> None:
    """A configuration without deprecated settings loads without warnings."""
    path = write(
        tmp_path,
        """\
        policies: {detection: {enforce: false, categories: {recon: monitor}}}
        services:
          - {name: api, upstream: http://127.0.0.1:9001, routes: [{path: /x, public: true}]}
        """,
    )
    assert load_config(path).warnings == ()
