"""Small OpenAPI documents for audit tests: a clean baseline that every rule accepts."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from bastion.config.yamlsrc import parse_source
from bastion.tester.audit import Spec, run_audit

ERROR = {"description": "An error.", "content": {"application/problem+json": {"schema": {"type": "object"}}}}
RATE_HEADERS = {"RateLimit": {"schema": {"type": "string", "maxLength": 100}}}


def responses() -> dict[str, Any]:
    return {
        "200": {"description": "The thing.", "headers": copy.deepcopy(RATE_HEADERS)},
        "400": ERROR,
        "401": ERROR,
        "403": ERROR,
        "429": {"description": "Slow down.", "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
        "default": ERROR,
    }


def baseline() -> dict[str, Any]:
    """A small document no audit rule complains about."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Things", "version": "1.0.0"},
        "servers": [{"url": "https://api.example.com", "description": "Production"}],
        "security": [{"apiKey": []}],
        "paths": {
            "/things/{thingId}": {
                "get": {
                    "operationId": "getThing",
                    "parameters": [
                        {
                            "name": "thingId",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "format": "uuid"},
                        }
                    ],
                    "responses": responses(),
                },
            },
            "/things": {
                "post": {
                    "operationId": "createThing",
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ThingCreate"}}}
                    },
                    "responses": responses(),
                },
            },
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": {
                "ThingCreate": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 100},
                        "count": {"type": "integer", "minimum": 0, "maximum": 10},
                        "tags": {"type": "array", "maxItems": 5, "items": {"type": "string", "maxLength": 20}},
                    },
                }
            },
        },
    }


def spec_of(doc: dict[str, Any]) -> Spec:
    """Parse ``doc`` the way the audit parses files (YAML text with line numbers)."""
    return Spec(parse_source(yaml.safe_dump(doc, sort_keys=False), "api.yaml", interpolate=False))


def rule_ids(doc: dict[str, Any]) -> list[str]:
    """Rule ids of every finding on ``doc``, in report order, one per finding."""
    return [f.rule.id for f in run_audit(spec_of(doc)).findings]
