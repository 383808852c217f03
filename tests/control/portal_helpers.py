"""What the portal's tests share: a gateway configuration with a plan that allows scopes,
invitations made by the real CLI, and a small cookie-keeping HTTP client for the portal's
forms (real sockets to the admin listener)."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from bastion.demo.app import openapi_path
from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess

BASTION = str(Path(sys.executable).with_name("bastion"))
PASSWORD = "correct horse battery staple"
#: Seconds a gateway may take to start on a busy machine (migrations, workers).
READY = 60.0


def portal_config(demo_api: DemoServer, **portal: Any) -> dict[str, Any]:
    """The demo API behind API keys (``listOrders`` needs the scope ``orders:read``), two
    consumers on the plan ``starter`` (which lets portal keys carry ``books:read`` and
    ``orders:read``), the audit log in the store, and the portal on."""
    return {
        "services": [{"name": "books", "upstream": demo_api.url, "openapi": str(openapi_path()),
                      "policies": {"access": {"scopes": ["orders:read"]}}}],
        "plans": {"starter": {"scopes": ["books:read", "orders:read"],
                              "quotas": [{"limit": 10000, "window": "1d"}]}},
        "consumers": [{"name": "acme", "plan": "starter"}, {"name": "globex", "plan": "starter"}],
        "audit": {"enabled": True, "flush_interval": 0.1},
        "admin": {"portal": {"enabled": True, **portal}, "login": {"max_failures": 3, "lockout": 60}},
    }


def invite(gw: GatewayProcess, consumer: str, login: str, expires: str = "1h") -> str:
    """The invitation link `bastion consumers invite` prints (its last line)."""
    done = subprocess.run([BASTION, "consumers", "invite", consumer, "--login", login, "--expires", expires,
                           "-c", str(gw.config_path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip().splitlines()[-1]
    assert link.startswith(gw.admin_url + "/portal/invite/"), link
    return link


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "the page has no CSRF token"
    return found.group(1)


def new_key_of(html: str) -> str:
    found = re.search(r'id="new-key">(bst_[^<]+)<', html)
    assert found is not None, "the page shows no new key"
    return found.group(1)


class PortalClient:
    """A browser without JavaScript: keeps cookies, follows nothing (redirects are asserted)."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.gw = gw
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, fields: dict[str, Any] | None = None,
                content_type: str = "application/x-www-form-urlencoded") -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(self.gw.admin_host, self.gw.admin_port, timeout=10)
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if fields is not None:
            body = urlencode(fields, doseq=True).encode()
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode()
            for value in resp.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(value).items():
                    if morsel.value and morsel["max-age"] != "0":
                        self.cookies[name] = morsel.value
                    else:
                        self.cookies.pop(name, None)
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, text
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, Any]) -> tuple[int, dict[str, str], str]:
        return self.request("POST", path, fields)

    def submit(self, path: str, fields: dict[str, Any],
               form_page: str | None = None) -> tuple[int, dict[str, str], str]:
        """POST ``fields`` with the CSRF token of ``form_page`` (default: ``path``), as a browser would."""
        _, _, html = self.get(form_page or path)
        return self.post(path, {"csrf_token": csrf_of(html), **fields})

    def accept(self, link: str, password: str = PASSWORD) -> None:
        path = urlsplit(link).path
        status, headers, _ = self.submit(path, {"password": password, "confirm": password})
        assert status == 303 and headers["location"] == "/portal/login?ready=1", status

    def sign_in(self, login: str, password: str = PASSWORD) -> tuple[int, dict[str, str], str]:
        return self.submit("/portal/login", {"login": login, "password": password})
