"""The dashboard's discovery page over HTTP, against a real gateway with the audit log in the
store: after real traffic, a viewer sees the undeclared endpoints clients called (an old API
version, a method the route does not allow), the declared operations nobody called, and
downloads the draft OpenAPI document that declares what was found."""

from __future__ import annotations

import time

import httpx
import yaml

from bastion.control.accounts.roles import Role
from bastion.demo.app import openapi_path
from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess
from tests.control.dashboard_client import make_admin, sign_in
from tests.e2e.test_discover import call, stored_records


def test_discovery_page_and_its_draft(demo_api: DemoServer) -> None:
    """Three calls of /v1/books/<n> (404) and a DELETE of /books (405) are listed with their
    counts and statuses; listBooks (called) is not among the routes never called, getUser
    is; the draft downloads as YAML declaring both endpoints; an unknown period falls back
    to 24h; without the audit log the page says how to turn it on and the draft is 409."""
    config = {"access_log": {"enabled": False}, "audit": {"enabled": True},
              "services": [{"name": "books", "upstream": demo_api.url, "openapi": str(openapi_path())}]}
    with GatewayProcess(config) as gw:
        calls = [("GET", "/v1/books/12"), ("GET", "/v1/books/13"), ("GET", "/v1/books/12"), ("DELETE", "/books"),
                 ("GET", "/books")]
        assert [call(gw, m, p) for m, p in calls] == [404, 404, 404, 405, 200]
        deadline = time.monotonic() + 15
        while stored_records(gw.folder) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.1)
        with httpx.Client(base_url=gw.admin_url, follow_redirects=False, timeout=60) as viewer:
            sign_in(viewer, "vic", make_admin(gw, "vic", Role.VIEWER), enrol=False)
            page = viewer.get("/ui/discovery")
            assert page.status_code == 200, page.text
            undeclared = page.text.split('id="undeclared"')[1].split('id="unused"')[0]
            assert "<code>GET /v1/books/{id}</code></td><td>3</td>" in undeclared
            assert "<code>DELETE /books</code>" in undeclared and "<td>405</td>" in undeclared
            unused = page.text.split('id="unused"')[1].split('id="observed"')[0]
            assert "getUser" in unused and "listBooks" not in unused
            assert '<strong aria-current="page">24h</strong>' in viewer.get("/ui/discovery?since=1y").text

            draft = viewer.get("/ui/discovery/draft.yaml?since=1h")
            assert draft.status_code == 200 and draft.headers["content-type"].startswith("application/yaml")
            assert 'filename="bastion-discovered-1h.yaml"' in draft.headers["content-disposition"]
            document = yaml.safe_load(draft.text)
            assert "get" in document["paths"]["/v1/books/{id}"] and "delete" in document["paths"]["/books"]

    quiet = {"services": [{"name": "books", "upstream": demo_api.url, "openapi": str(openapi_path())}]}
    with GatewayProcess(quiet) as gw, httpx.Client(base_url=gw.admin_url, follow_redirects=False,
                                                   timeout=60) as viewer:
        sign_in(viewer, "vic", make_admin(gw, "vic", Role.VIEWER), enrol=False)
        assert "audit: {enabled: true}" in viewer.get("/ui/discovery").text
        assert viewer.get("/ui/discovery/draft.yaml").status_code == 409
