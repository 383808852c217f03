"""The ``auth`` stage's settings: where it runs, and the settings that would open a private route."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bastion.config import ConfigError, load_config
from bastion.stages.auth import AuthStage, auth_stage

OPENAPI = """\
openapi: 3.1.0
info: {title: shop, version: "1"}
security:
  - apiKey: []
paths:
  /orders:
    get:
      operationId: listOrders
      responses: {"200": {description: ok}}
  /catalog:
    get:
      operationId: catalog
      security: []
      responses: {"200": {description: ok}}
components:
  securitySchemes:
    apiKey: {type: apiKey, in: header, name: X-API-Key}
"""


def write(tmp_path: Path, config: str, openapi: str = OPENAPI) -> Path:
    (tmp_path / "shop.yaml").write_text(openapi)
    path = tmp_path / "bastion.yaml"
    path.write_text(textwrap.dedent(config))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(i) for i in info.value.issues]


def stage_of(path: Path, route_id: str) -> AuthStage | None:
    route = next(r for r in load_config(path).routes if r.id == route_id)
    return auth_stage(route.built)


def test_auth_runs_on_private_routes_only(tmp_path: Path) -> None:
    """With no method that could verify a credential (API keys off), every route that is not
    public gets the auth stage (refusing, not delegated); public ones (`security: []`,
    `public: true`) get none."""
    path = write(
        tmp_path,
        """\
        policies: {auth: {api_keys: {enabled: false}}}
        services:
          - name: shop
            upstream: http://127.0.0.1:9001
            openapi: shop.yaml
            routes:
              - {path: /static, prefix: true, public: true}
              - {path: /internal, operation_id: internal}
        """,
    )
    orders = stage_of(path, "listOrders")
    assert orders is not None and orders.refusal is not None and not orders.delegated
    internal = stage_of(path, "internal")
    assert internal is not None and internal.refusal is not None
    assert stage_of(path, "catalog") is None
    assert stage_of(path, "shop:/static") is None


@pytest.mark.parametrize(
    ("where", "config", "expected"),
    [
        (
            "top level",
            """\
            policies: {auth: {enabled: false}}
            services:
              - {name: shop, upstream: "http://127.0.0.1:9001", openapi: shop.yaml}
            """,
            "bastion.yaml:1: policies.auth.enabled: ",
        ),
        (
            "a route",
            """\
            services:
              - name: shop
                upstream: http://127.0.0.1:9001
                routes:
                  - path: /internal
                    policies:
                      auth: {enabled: false}
            """,
            "bastion.yaml:7: services[0].routes[0].policies.auth.enabled: ",
        ),
    ],
)
def test_turning_auth_off_on_a_private_route_is_a_load_error(
    tmp_path: Path, where: str, config: str, expected: str
) -> None:
    """`enabled: false` on a route that requires authentication is refused once, at the line
    that says it (here: at the {where}), naming the explicit ways instead of turning the route
    silently public."""
    errors = errors_of(write(tmp_path, config))
    assert len(errors) == 1, errors
    assert expected in errors[0], errors
    assert "authentication cannot be turned off on a route that requires it" in errors[0]
    assert "`public: true` (`security: []` in OpenAPI)" in errors[0]
    assert "`delegate: upstream`" in errors[0]


def test_turning_auth_off_in_the_openapi_document_names_the_operation(tmp_path: Path) -> None:
    """`x-bastion-auth: {enabled: false}` on an operation that has a security requirement is
    reported at that operation in the OpenAPI document."""
    op_id = "      operationId: listOrders\n"
    doc = OPENAPI.replace(op_id, op_id + "      x-bastion-auth: {enabled: false}\n")
    path = write(
        tmp_path,
        """\
        services:
          - {name: shop, upstream: "http://127.0.0.1:9001", openapi: shop.yaml}
        """,
        doc,
    )
    errors = errors_of(path)
    assert len(errors) == 1, errors
    assert "shop.yaml:9: paths./orders.get.x-bastion-auth.enabled: authentication cannot be turned off" in errors[0]


def test_auth_may_be_disabled_where_every_route_is_public(tmp_path: Path) -> None:
    """`enabled: false` is harmless (and accepted) where it only reaches public routes."""
    path = write(
        tmp_path,
        """\
        policies: {auth: {enabled: false}}
        services:
          - name: shop
            upstream: http://127.0.0.1:9001
            routes: [{path: /, prefix: true, public: true}]
        """,
    )
    assert stage_of(path, "shop:/") is None


def test_shadow_mode_without_delegation_is_a_load_error(tmp_path: Path) -> None:
    """`enforce: false` alone would forward what nothing authenticated: refused at its line."""
    errors = errors_of(
        write(
            tmp_path,
            """\
            services:
              - name: shop
                upstream: http://127.0.0.1:9001
                openapi: shop.yaml
                policies: {auth: {enforce: false}}
            """,
        )
    )
    assert len(errors) == 1, errors
    assert "bastion.yaml:5: services[0].policies.auth.enforce: shadow mode (enforce: false)" in errors[0]
    assert "`delegate: upstream`" in errors[0]


def test_delegation_layers_like_any_policy(tmp_path: Path) -> None:
    """`delegate: upstream` set per service applies to its private routes, a route may take it
    back (`delegate: null`), and shadow mode is accepted together with delegation (nothing
    verifies credentials here: API keys are off)."""
    path = write(
        tmp_path,
        """\
        policies: {auth: {api_keys: {enabled: false}}}
        services:
          - name: shop
            upstream: http://127.0.0.1:9001
            openapi: shop.yaml
            policies: {auth: {delegate: upstream, enforce: false}}
            routes:
              - path: /internal
                operation_id: internal
                policies: {auth: {delegate: null, enforce: true}}
        """,
    )
    orders = stage_of(path, "listOrders")
    assert orders is not None and orders.delegated and orders.refusal is None
    assert orders.summary == "authentication (apiKey) delegated to upstream; shadow mode, nothing to observe"
    internal = stage_of(path, "internal")
    assert internal is not None and not internal.delegated and internal.refusal is not None


def test_delegation_from_the_openapi_document(tmp_path: Path) -> None:
    """`x-bastion-auth: {delegate: upstream}` at document level delegates every private operation."""
    doc = OPENAPI.replace("paths:\n", "x-bastion-auth: {delegate: upstream}\npaths:\n", 1)
    path = write(
        tmp_path,
        """\
        services:
          - {name: shop, upstream: "http://127.0.0.1:9001", openapi: shop.yaml}
        """,
        doc,
    )
    orders = stage_of(path, "listOrders")
    assert orders is not None and orders.delegated


def test_unknown_delegate_is_refused(tmp_path: Path) -> None:
    """Only `upstream` can be delegated to; anything else is named as wrong."""
    errors = errors_of(
        write(
            tmp_path,
            """\
            services:
              - name: shop
                upstream: http://127.0.0.1:9001
                openapi: shop.yaml
                policies: {auth: {delegate: backend}}
            """,
        )
    )
    assert len(errors) == 1, errors
    assert "bastion.yaml:5: services[0].policies.auth.delegate: " in errors[0]
    assert "'upstream'" in errors[0]


def test_failing_open_without_delegation_is_a_load_error(tmp_path: Path) -> None:
    """`failure_mode: open` would forward, as if authenticated, requests whose credentials
    could not be checked (key store or JWKS endpoint down): refused at its line."""
    errors = errors_of(
        write(
            tmp_path,
            """\
            services:
              - name: shop
                upstream: http://127.0.0.1:9001
                openapi: shop.yaml
                policies: {auth: {failure_mode: open}}
            """,
        )
    )
    assert len(errors) == 1, errors
    assert "bastion.yaml:5: services[0].policies.auth.failure_mode: failure_mode: open would forward" in errors[0]


def test_lockout_bounds_are_checked(tmp_path: Path) -> None:
    """A lockout whose longest back-off is shorter than its first is refused."""
    errors = errors_of(
        write(
            tmp_path,
            """\
            policies: {auth: {lockout: {enabled: true, backoff: 600, max_backoff: 60}}}
            services:
              - {name: shop, upstream: "http://127.0.0.1:9001", openapi: shop.yaml}
            """,
        )
    )
    assert len(errors) == 1 and "max_backoff must be at least backoff" in errors[0], errors
