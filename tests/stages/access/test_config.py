"""The access policy as users write it: layered in bastion.yaml and OpenAPI, errors that name
the file, the line and the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bastion.config import load_config
from bastion.stages.access import AccessStage
from tests.config.util import errors_of, write

OPENAPI = """\
openapi: 3.1.0
info: {title: shop, version: "1"}
x-bastion-access: {admin_roles: [ops]}
paths:
  /users/{username}:
    parameters: [{name: username, in: path, required: true, schema: {type: string}}]
    get:
      operationId: getUser
      x-bastion-access:
        owner: {param: username, equals: principal.sub}
      responses: {"200": {description: ok}}
    delete:
      operationId: deleteUser
      tags: [Admin]
      responses: {"200": {description: ok}}
"""


def stages(path: Path) -> dict[str, AccessStage]:
    loaded = load_config(path)
    return {r.id: s for r in loaded.routes for s in r.built if isinstance(s, AccessStage)}


def test_layers_merge_and_tags_count(tmp_path: Path) -> None:
    """A document-level ``x-bastion-access`` reaches every operation, an operation's own adds
    to it, and a tag makes an operation administrative; ``bastion check``'s summary says so."""
    write(tmp_path, OPENAPI, "shop.yaml")
    path = write(tmp_path, """\
        services:
          - name: shop
            upstream: http://127.0.0.1:9
            openapi: shop.yaml
        """)
    found = stages(path)
    assert found["getUser"].summary == "owner path:username = principal.sub"
    assert found["deleteUser"].admin and found["deleteUser"].summary == "admin (ops)"


def test_errors_name_the_document_and_field(tmp_path: Path) -> None:
    """A wrong ownership rule in the OpenAPI document is a load error naming the document,
    the extension's path and the field (a misspelt ``in`` is suggested as ``in``, the name
    users write); a wrong network in bastion.yaml is one message naming its line."""
    write(tmp_path, OPENAPI.replace("principal.sub", "principal.email, inn: path"), "shop.yaml")
    path = write(tmp_path, """\
        policies:
          access:
            ip_allow: [10.0.0.1/8]
        services:
          - name: shop
            upstream: http://127.0.0.1:9
            openapi: shop.yaml
        """)
    errors = errors_of(path)
    assert any("shop.yaml" in e and "x-bastion-access.owner.equals" in e and "principal.consumer" in e
               for e in errors), errors
    assert any("owner.inn: unknown field (did you mean 'in'?); expected one of: param, in, equals" in e
               for e in errors), errors
    networks = [e for e in errors if "policies.access.ip_allow" in e]
    assert len(networks) == 1 and "bastion.yaml:3" in networks[0], errors
    assert "'10.0.0.1/8' is not a network in CIDR notation" in networks[0]


def test_check_prints_what_access_checks(tmp_path: Path) -> None:
    """`bastion check` names, per route, what the access stage checks beyond its override
    guard (public routes here, so that the stages are listed)."""
    write(tmp_path, OPENAPI.replace("paths:", "security: []\npaths:"), "shop.yaml")
    write(tmp_path, """\
        services:
          - name: shop
            upstream: http://127.0.0.1:9
            openapi: shop.yaml
            routes:
              - {path: /health, public: true}
        """)
    result = subprocess.run([sys.executable, "-m", "bastion", "check"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "getUser (public; stages: access(owner path:username = principal.sub),validation,headers)" in (
        result.stdout), result.stdout
    assert "deleteUser (public; stages: access(admin (ops)),validation,headers)" in result.stdout, result.stdout
    assert "shop:/health (public; stages: access,headers)" in result.stdout, result.stdout


def test_a_rule_on_a_path_parameter_the_route_lacks_is_a_load_error(tmp_path: Path) -> None:
    """An owner rule naming a path parameter the route does not have would refuse every
    request; it is a load error naming the route, the parameter and the path instead."""
    path = write(tmp_path, """\
        services:
          - name: shop
            upstream: http://127.0.0.1:9
            routes:
              - path: /users/{name}
                policies: {access: {owner: {param: username}}}
        """)
    (error,) = errors_of(path)
    assert "bastion.yaml:5" in error and "access (shop:/users/{name})" in error, error
    assert "owner.param names the path parameter 'username', which /users/{name} does not have" in error
