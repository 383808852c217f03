"""``/certificates`` and ``/consumers/{name}/certificates``: client certificates (mTLS) mapped
to consumers, by SHA-256 fingerprint, subject or subjectAltName. Reading needs a viewer;
mapping and unmapping an operator, and only for store consumers (a consumer the file declares
takes its certificates from the file: 409). Gateways see a change at their next poll of the
store, within about a second."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.control import certificates
from bastion.control.accounts.roles import Role
from bastion.control.api import Endpoint
from bastion.control.api.common import ApiError, audited, body_of
from bastion.control.auth import principal_of
from bastion.control.context import AdminContext
from bastion.store import consumers
from bastion.store.errors import StoreError

MATCHER = {"type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1, "properties": {
    "fingerprint": {"type": "string", "maxLength": 200, "description": "sha256:HEX (colons allowed)."},
    "subject": {"type": "string", "maxLength": 1024, "description": "The subject, e.g. `CN=svc,O=Example`."},
    "san": {"type": "string", "maxLength": 1024, "description": "A DNS name, URI or IP address of its SAN."}}}
CERTIFICATE = {"type": "object", "required": ["consumer", "kind", "value", "source"], "properties": {
    "consumer": {"type": "string"}, "kind": {"enum": ["fingerprint", "subject", "san"]}, "value": {"type": "string"},
    "source": {"enum": ["config", "store"], "description": "Where the mapping is declared."}}}


def _matcher(request: Request) -> dict[str, str]:
    try:
        return certificates.checked({k: str(v) for k, v in body_of(request).items()})
    except StoreError as exc:
        raise ApiError(422, str(exc)[0].upper() + str(exc)[1:] + ".") from None


async def list_certificates(ctx: AdminContext, request: Request) -> Response:
    name = request.query_params.get("consumer")

    def fetch() -> dict[str, Any]:
        with ctx.store().read() as session:
            found = [consumers.get(session, name)] if name else consumers.with_certificates(session)
            return {"items": [{"consumer": c.name, "kind": kind, "value": value,
                               "source": "config" if c.declared else "store"}
                              for c in found for m in c.certificates for kind, value in m.items()],
                    "next_cursor": None}

    return JSONResponse(await ctx.call(fetch))


async def add_certificate(ctx: AdminContext, request: Request) -> Response:
    name, who, matcher = request.path_params["name"], principal_of(request), _matcher(request)

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            added = certificates.add(session, name, matcher)
            if added:
                note("consumer.certificate.add", f"consumer:{name}", after={"certificate": matcher})
            return {"consumer": name, "certificate": matcher, "added": added}

    answer = await ctx.call(write)
    return JSONResponse(answer, status_code=201 if answer["added"] else 200)


async def remove_certificate(ctx: AdminContext, request: Request) -> Response:
    name, who, matcher = request.path_params["name"], principal_of(request), _matcher(request)

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            stored = certificates.remove(session, name, matcher)
            note("consumer.certificate.remove", f"consumer:{name}", before={"certificate": stored})
            return {"consumer": name, "removed": stored}

    return JSONResponse(await ctx.call(write))


_CHANGED = {404: "No consumer has that name (or, to remove, it has no such certificate).",
            409: "The file declares that consumer, or another consumer has that certificate.",
            422: "Not exactly one valid matcher."}
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/certificates", list_certificates, Role.VIEWER,
             "List the client certificates mapped to consumers (declared ones included).", "listCertificates",
             "consumers", response_schema={"type": "object", "properties": {
                 "items": {"type": "array", "items": CERTIFICATE}}},
             query={"consumer": ({"type": "string"}, "Only this consumer's certificates.")},
             responses={404: "No consumer has that name."}),
    Endpoint("POST", "/consumers/{name}/certificates", add_certificate, Role.OPERATOR,
             "Map a client certificate to a store consumer (201; 200 when it had it already).", "addCertificate",
             "consumers", request_schema=MATCHER,
             response_schema={"type": "object", "properties": {"consumer": {"type": "string"},
                                                               "certificate": MATCHER, "added": {"type": "boolean"}}},
             responses={201: "Mapped.", **_CHANGED}),
    Endpoint("POST", "/consumers/{name}/certificates/remove", remove_certificate, Role.OPERATOR,
             "Unmap a client certificate from a store consumer (any spelling of the matcher).", "removeCertificate",
             "consumers", request_schema=MATCHER,
             response_schema={"type": "object", "properties": {"consumer": {"type": "string"}, "removed": MATCHER}},
             responses=_CHANGED),
]
