"""Path normalisation, routing bypasses and deny-by-default, against real routes.

The gateway here declares only ``/public`` (a prefix, any method but TRACE), ``/admin``
(GET only) and ``/items/{id}`` (GET). A normalised path is what Bastion routes on *and*
what the upstream receives, so every accepted case also asserts the upstream's view; every
refused case asserts that nothing reached the upstream.
"""

from __future__ import annotations

import pytest

from bastion.testing import GatewayProcess

from .scripted import ScriptedUpstream
from .util import assert_problem, one

REFUSED = [
    ("encoded-slash-climb", "/admin/..%2fpublic"),
    ("encoded-slash-climb-upper", "/public/..%2Fadmin"),
    ("encoded-dots", "/public/%2e%2e/admin"),
    ("encoded-dots-mixed-case", "/public/%2E%2e/admin"),
    ("half-encoded-dots", "/public/.%2e/admin"),
    ("encoded-single-dot", "/public/%2e/x"),
    ("encoded-slash", "/a/%2f"),
    ("encoded-slash-in-segment", "/public/a%2fb"),
    ("encoded-backslash", "/public/%5c..%5cadmin"),
    ("encoded-nul", "/public/x%00.json"),
    ("climb-above-root", "/../public/x"),
    ("climb-above-root-later", "/public/../../admin"),
    ("backslash", "/public\\..\\admin"),
    ("invalid-escape", "/public/%zz"),
    ("truncated-escape", "/public/%4"),
    ("encoded-slash-in-parameter", "/items/a%2fb"),
]


@pytest.mark.parametrize("target", [t for _, t in REFUSED], ids=[i for i, _ in REFUSED])
def test_ambiguous_path_is_refused(strict_gateway: GatewayProcess, upstream: ScriptedUpstream, token: str,
                                   target: str) -> None:
    """Encodings that could make the routed path and the served path differ (encoded
    slashes, dots, backslashes, NUL, climbing above the root) are refused with 400
    problem+json and never reach the upstream."""
    resp = one(strict_gateway, "GET", f"{target}?{token}")
    assert_problem(resp, 400)
    assert not upstream.saw(token)


ACCEPTED = [
    ("unreserved-decoded", "/%61dmin", "/admin"),
    ("unreserved-decoded-tilde", "/public/%7euser/%41%42", "/public/~user/AB"),
    ("reserved-kept-upper-cased", "/public/a%3fb%2a", "/public/a%3Fb%2A"),
    ("double-encoding-not-decoded-twice", "/public/%252e%252e/x", "/public/%252e%252e/x"),
    ("params-stripped", "/admin;jsessionid=abc", "/admin"),
    ("params-stripped-each-segment", "/public;a=1/x;b=2/y", "/public/x/y"),
    ("duplicate-slashes", "//admin", "/admin"),
    ("duplicate-slashes-inside", "/public//x///y", "/public/x/y"),
    ("dot-segment", "/public/./x", "/public/x"),
    ("dot-dot-segment", "/public/x/../y", "/public/y"),
    ("dot-dot-into-declared-route", "/public/../admin", "/admin"),
    ("tomcat-style-dot-dot-param", "/public/..;/admin", "/admin"),
    ("trailing-slash-kept", "/public/x/", "/public/x/"),
    ("parameter-route", "/items/%31%32", "/items/12"),
]


@pytest.mark.parametrize(("target", "routed"), [(t, r) for _, t, r in ACCEPTED],
                         ids=[i for i, _, _ in ACCEPTED])
def test_path_is_normalised_before_routing(strict_gateway: GatewayProcess, upstream: ScriptedUpstream,
                                           token: str, target: str, routed: str) -> None:
    """The path is normalised (unreserved escapes decoded, other escapes upper-cased, ';'
    parameters and dot segments and duplicate slashes removed) and the upstream receives
    exactly the normalised path that was routed, with the query untouched."""
    resp = one(strict_gateway, "GET", f"{target}?{token}&q=%2F..%2f")
    assert resp.status == 200, resp.body
    assert resp.json()["target"] == f"{routed}?{token}&q=%2F..%2f"
    (record,) = upstream.records(token)
    assert record.target == f"{routed}?{token}&q=%2F..%2f"
    record_log = strict_gateway.wait_for_access_record(lambda r: r["request_id"] == resp.header("x-request-id"))
    assert record_log["path"] == routed


BYPASSES = [
    ("unreserved-decoded", "/%61dmin"),
    ("dot-dot", "/public/../admin"),
    ("param", "/admin;x=1"),
    ("duplicate-slash", "//admin"),
    ("tomcat-style", "/public/..;/admin"),
]


@pytest.mark.parametrize("target", [t for _, t in BYPASSES], ids=[i for i, _ in BYPASSES])
def test_normalisation_cannot_reach_an_undeclared_method(
    strict_gateway: GatewayProcess, upstream: ScriptedUpstream, token: str, target: str
) -> None:
    """A spelling of ``/admin`` that passes through ``/public`` (or hides the name) is
    still routed as ``/admin``: DELETE gets 405 with the methods ``/admin`` declares,
    not the public prefix's methods, and nothing reaches the upstream."""
    resp = one(strict_gateway, "DELETE", f"{target}?{token}")
    assert_problem(resp, 405)
    assert resp.header("allow") == "GET, HEAD"
    assert not upstream.saw(token)


def test_case_is_significant(strict_gateway: GatewayProcess, upstream: ScriptedUpstream, token: str) -> None:
    """Paths are case-sensitive: ``/ADMIN`` is not ``/admin`` and, being undeclared, gets 404."""
    assert_problem(one(strict_gateway, "GET", f"/ADMIN?{token}"), 404)
    assert not upstream.saw(token)


def test_double_encoded_path_is_not_routed_as_decoded(
    strict_gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """``%2561dmin`` decodes once to ``%61dmin``, never twice to ``admin``: it is an
    undeclared path (404) and does not reach the upstream."""
    assert_problem(one(strict_gateway, "GET", f"/%2561dmin?{token}"), 404)
    assert not upstream.saw(token)


def test_undeclared_path_is_404(strict_gateway: GatewayProcess, upstream: ScriptedUpstream, token: str) -> None:
    """Deny by default: a path no route declares gets 404 problem+json from Bastion and
    never reaches the upstream; the access log says the core blocked it and why."""
    resp = one(strict_gateway, "GET", f"/private/data?{token}")
    doc = assert_problem(resp, 404)
    assert doc["title"] == "Not Found"
    assert not upstream.saw(token)
    record = strict_gateway.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert (record["status"], record["blocked_by"], record["reason"]) == (404, "core", "route.not_found")
    assert record["route"] is None
    # No route, so no headers stage: Bastion's own problem document still carries the
    # security headers (the scanner's closed loop found them missing here once).
    assert resp.header("x-content-type-options") == "nosniff"
    assert resp.header("content-security-policy") == "default-src 'none'; frame-ancestors 'none'"
    assert resp.header("x-frame-options") == "DENY"
    assert resp.header("cache-control") == "no-store"


def test_undeclared_method_is_405_with_allow(strict_gateway: GatewayProcess, upstream: ScriptedUpstream,
                                             token: str) -> None:
    """Deny by default: a method the path's route does not declare gets 405 with
    ``Allow`` listing the declared ones (HEAD comes with GET), and never reaches the
    upstream."""
    resp = one(strict_gateway, "POST", f"/admin?{token}", body=b"{}")
    doc = assert_problem(resp, 405)
    assert resp.header("allow") == "GET, HEAD"
    assert not upstream.saw(token)
    record = strict_gateway.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert (record["status"], record["reason"]) == (405, "route.method_not_allowed")


def test_head_is_allowed_where_get_is(strict_gateway: GatewayProcess, upstream: ScriptedUpstream,
                                      token: str) -> None:
    """HEAD is allowed wherever GET is, and is forwarded as HEAD."""
    resp = one(strict_gateway, "HEAD", f"/admin?{token}")
    assert resp.status == 200
    assert resp.body == b""
    assert [r.method for r in upstream.records(token)] == ["HEAD"]


def test_trace_is_not_allowed_by_default(strict_gateway: GatewayProcess, upstream: ScriptedUpstream,
                                         token: str) -> None:
    """A route without ``methods`` accepts every method except TRACE (which would echo
    credentials back): TRACE gets 405, with an Allow that does not list it."""
    resp = one(strict_gateway, "TRACE", f"/public/x?{token}")
    assert_problem(resp, 405)
    allow = resp.header("allow")
    assert allow == "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
    assert not upstream.saw(token)


def test_unknown_method_is_refused(strict_gateway: GatewayProcess, upstream: ScriptedUpstream,
                                   token: str) -> None:
    """A method no route can declare (here PROPFIND) is 405 on a declared path and never
    forwarded."""
    resp = one(strict_gateway, "PROPFIND", f"/public/x?{token}")
    assert_problem(resp, 405)
    assert not upstream.saw(token)
