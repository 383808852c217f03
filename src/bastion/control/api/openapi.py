"""The admin API's OpenAPI 3.1 document, made from the same :class:`Endpoint` declarations
that mount the routes (so the two cannot disagree), plus the admin listener's own routes.

Each operation names the least role it needs twice: in ``x-bastion-role`` (for tools) and
in its description (for people); the open routes say ``x-bastion-role: none``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from bastion import __version__
from bastion.control.accounts.roles import Role
from bastion.control.api import OPENAPI_ENDPOINT, OPENAPI_PATH, PREFIX, Endpoint, endpoints

#: The admin listener's routes outside the API (control/admin.py): method, path, least role
#: (``None``: open), summary, operationId.
CORE: tuple[tuple[str, str, Role | None, str, str], ...] = (
    ("GET", "/health", None, "Whether the workers are alive (503 when none is).", "getHealth"),
    ("GET", "/ready", None, "Whether the gateway is ready to serve (503 until it is).", "getReady"),
    ("GET", "/version", None, "The running Bastion's name and version.", "getVersion"),
    ("GET", "/metrics", None, "Prometheus metrics (a viewer token when admin.public_metrics is false).",
     "getMetrics"),
    ("POST", "/reload", Role.OPERATOR, "Reload the configuration file (422 and the old one keeps serving "
     "when the new one is invalid).", "reload"),
)

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_STANDARD = {400: "Bad request: a query parameter or the cursor is wrong.",
             401: "No credentials, or they are not valid.",
             403: "The caller's role is too low (or a session request lacks its CSRF token)."}
_WITH_BODY = {413: "The body is too large.", 415: "The body is not JSON.",
              422: "The body does not match the schema (the problem lists why)."}


def _role_text(role: Role | None) -> str:
    return "none" if role is None else role.label


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", path)]


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    role = endpoint.role.label
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "description": f"{endpoint.summary}\n\nNeeds the role **{role}** (or higher).",
        "tags": [endpoint.tag],
        "x-bastion-role": role,
        "security": [{"bearer": []}, {"session": []}],
    }
    parameters = _path_parameters(endpoint.path) + [
        {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
        for name, (schema, text) in endpoint.query.items()]
    if parameters:
        operation["parameters"] = parameters
    success = 201 if endpoint.method == "POST" and 201 in endpoint.responses else 200
    answers: dict[str, Any] = {}
    if success == 200:
        answers["200"] = {"description": "Done.", "content": {
            "application/json": {"schema": endpoint.response_schema or {"type": "object"}}}}
    if endpoint.request_schema is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": endpoint.request_schema}}}
    described = {**_STANDARD, **(_WITH_BODY if endpoint.request_schema is not None else {}), **endpoint.responses}
    for status, text in sorted(described.items()):
        if status < 300:
            answers[str(status)] = {"description": text, "content": {
                "application/json": {"schema": endpoint.response_schema or {"type": "object"}}}}
        else:
            answers[str(status)] = {"description": text, "content": {"application/problem+json": {"schema": _PROBLEM}}}
    operation["responses"] = answers
    return operation


def _core_operation(method: str, role: Role | None, summary: str, operation_id: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id, "summary": summary, "tags": ["listener"],
        "description": f"{summary}\n\nNeeds the role **{_role_text(role)}**.", "x-bastion-role": _role_text(role),
        "responses": {"200": {"description": "Done."}},
    }
    if role is None:
        operation["security"] = []
    else:
        operation["security"] = [{"bearer": []}, {"session": []}]
        operation["responses"].update({str(s): {"description": t, "content": {
            "application/problem+json": {"schema": _PROBLEM}}} for s, t in _STANDARD.items() if s != 400})
    return operation


@functools.cache
def document() -> dict[str, Any]:
    """The whole document (built once: the declarations do not change while running)."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, role, summary, operation_id in CORE:
        paths.setdefault(path, {})[method.lower()] = _core_operation(method, role, summary, operation_id)
    paths.setdefault(OPENAPI_PATH, {})["get"] = _operation(OPENAPI_ENDPOINT)
    for endpoint in endpoints():
        paths.setdefault(PREFIX + endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Bastion admin API",
            "version": __version__,
            "description": "The control plane of a Bastion gateway: consumers, credentials, routes, alerts, "
                           "blocks, the audit log, admin users and configuration. Every operation states the "
                           "least role it needs (viewer < operator < admin) in `x-bastion-role`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "bsa_<id>_<secret>",
                           "description": "An admin token (`bastion admin token create`)."},
                "session": {"type": "apiKey", "in": "cookie", "name": "bastion_session",
                            "description": "A dashboard session (`__Host-bastion_session` over TLS); unsafe "
                                           "methods also need its X-CSRF-Token header."},
            },
            "schemas": {"Problem": {
                "type": "object", "required": ["type", "title", "status", "detail"],
                "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                               "status": {"type": "integer"}, "detail": {"type": "string"}},
                "description": "RFC 9457 problem details.",
            }},
        },
    }
