"""The developer portal over real sockets: a real gateway, the demo API, invitations made by
the CLI, and forms posted as a browser without JavaScript posts them. What a developer may
do (their own keys, within their plan's scopes) and what they may not (another consumer's
keys, forms without their CSRF token, guessing passwords past the lockout)."""

from __future__ import annotations

import getpass
import http.client
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest

from bastion.config import ConfigError, load_config
from bastion.control.accounts.roles import Role
from bastion.demo.server import DemoServer
from bastion.store import adminaudit, open_store
from bastion.testing import GatewayProcess
from tests.control.dashboard_client import csrf_of as dashboard_csrf
from tests.control.dashboard_client import make_admin, sign_in
from tests.control.portal_helpers import (
    BASTION,
    PASSWORD,
    READY,
    PortalClient,
    csrf_of,
    invite,
    new_key_of,
    portal_config,
)


def call_api(gw: GatewayProcess, key: str, path: str = "/orders") -> int:
    conn = http.client.HTTPConnection(gw.host, gw.port, timeout=5)
    try:
        conn.request("GET", path, headers={"X-API-Key": key})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def wait_status(gw: GatewayProcess, key: str, wanted: int, path: str = "/orders", timeout: float = 30.0) -> int:
    """The API's answer to ``key``, once it is ``wanted`` (a new key reaches the workers at
    their next poll of the store) or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        status = call_api(gw, key, path)
        if status == wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def signed_in(gw: GatewayProcess, consumer: str, login: str) -> PortalClient:
    client = PortalClient(gw)
    client.accept(invite(gw, consumer, login))
    status, headers, _ = client.sign_in(login)
    assert status == 303 and headers["location"] == "/portal/", status
    return client


def create_key(client: PortalClient, *scopes: str) -> str:
    status, _, html = client.submit("/portal/keys/new", {"scope": list(scopes), "lifetime": "90"}, "/portal/keys")
    assert status == 200, html
    return new_key_of(html)


def audit_entries(gw: GatewayProcess, actor: str) -> list[dict[str, Any]]:
    loaded = load_config(gw.config_path)
    store = open_store(loaded.config.store, loaded.config.consumers)
    try:
        with store.read() as session:
            return [adminaudit.as_dict(e) for e in adminaudit.query(session, actor=actor)]
    finally:
        store.close()


def test_invitation_sign_in_and_a_key_that_calls_the_api(demo_api: DemoServer) -> None:
    """The CLI's invitation link sets the first password once (a second use is 404), sign-in
    opens a session (HttpOnly, SameSite=Strict cookie; every page under a strict CSP), a key
    created with a plan scope is shown once and calls the API (200), the listing shows its
    prefix and never the secret, and the creation is in the admin audit trail as
    portal:<login> without the secret. The portal session opens nothing on the admin API."""
    with GatewayProcess(portal_config(demo_api), ready_timeout=READY) as gw:
        link = invite(gw, "acme", "dev@acme.test")
        client = PortalClient(gw)
        client.accept(link)
        assert client.get(urlsplit(link).path)[0] == 404
        status, headers, _ = client.sign_in("dev@acme.test")
        assert status == 303
        cookie = next(v for k, v in headers.items() if k == "set-cookie")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and cookie.startswith("bastion_portal=")
        status, headers, html = client.get("/portal/")
        assert status == 200 and "acme" in html and "starter" in html
        assert "script-src" not in headers["content-security-policy"]
        assert headers["content-security-policy"].startswith("default-src 'none'")
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
        assert client.request("POST", "/reload", {})[0] == 401, "a portal session is no admin session"
        key = create_key(client, "orders:read")
        assert wait_status(gw, key, 200) == 200
        status, _, listing = client.get("/portal/keys")
        assert status == 200 and key[4:12] in listing and key not in listing
        created = [e for e in audit_entries(gw, "portal:dev@acme.test") if e["action"] == "key.create"]
        assert len(created) == 1 and created[0]["via"] == "session"
        assert created[0]["after"]["scopes"] == ["orders:read"] and key not in str(created[0])


def test_a_developer_cannot_reach_another_consumers_keys(demo_api: DemoServer) -> None:
    """IDOR: acme's developer rotating or revoking globex's key by its id gets 404 (as for a
    key that does not exist), globex's key keeps working, and acme's listing never shows it."""
    with GatewayProcess(portal_config(demo_api), ready_timeout=READY) as gw:
        acme = signed_in(gw, "acme", "dev@acme.test")
        globex = signed_in(gw, "globex", "dev@globex.test")
        theirs = create_key(globex, "orders:read")
        their_id = theirs[4:12]
        for action, fields in (("rotate", {"overlap": "0"}), ("revoke", {})):
            status, _, html = acme.submit(f"/portal/keys/{their_id}/{action}", fields, "/portal/keys")
            assert status == 404 and "no key with that id" in html
        assert acme.submit("/portal/keys/nosuchid/revoke", {}, "/portal/keys")[0] == 404
        assert their_id not in acme.get("/portal/keys")[2]
        assert wait_status(gw, theirs, 200) == 200


def test_keys_stay_within_the_plans_scopes(demo_api: DemoServer) -> None:
    """A scope the plan does not list is refused (403, no key made), even posted by hand; a
    key made without the scope an operation needs is refused by the gateway (403)."""
    with GatewayProcess(portal_config(demo_api), ready_timeout=READY) as gw:
        client = signed_in(gw, "acme", "dev@acme.test")
        status, _, html = client.submit("/portal/keys/new", {"scope": ["orders:read", "admin:all"], "lifetime": "90"},
                                        "/portal/keys")
        assert status == 403 and "admin:all" in html and 'id="new-key"' not in html
        assert 'name="scope" value="admin:all"' not in html
        assert "<td><code>bst_" not in client.get("/portal/keys")[2]
        unscoped = create_key(client, "books:read")
        assert wait_status(gw, unscoped, 403) == 403


def test_forms_need_their_csrf_token(demo_api: DemoServer) -> None:
    """A signed-in developer's forms without the session's CSRF token, or with another, are
    refused (403) and change nothing; so are the sign-in and invitation forms without the
    token their page set."""
    with GatewayProcess(portal_config(demo_api), ready_timeout=READY) as gw:
        link = invite(gw, "acme", "dev@acme.test")
        stranger = PortalClient(gw)
        assert stranger.post(urlsplit(link).path, {"password": PASSWORD, "confirm": PASSWORD})[0] == 403
        assert stranger.post("/portal/login", {"login": "dev@acme.test", "password": PASSWORD})[0] == 403
        client = PortalClient(gw)
        client.accept(link)
        client.sign_in("dev@acme.test")
        for token in (None, "forged-token-value"):
            fields = {"lifetime": "90"} | ({} if token is None else {"csrf_token": token})
            status, _, html = client.post("/portal/keys/new", fields)
            assert status == 403 and "CSRF" in html
        json_post = client.request("POST", "/portal/keys/new", {"lifetime": "90"}, content_type="application/json")
        assert json_post[0] == 403
        assert "bst_" not in client.get("/portal/keys")[2]


def test_lockout_after_failed_passwords(demo_api: DemoServer) -> None:
    """admin.login.max_failures (3 here) wrong passwords lock the account (423): the right
    password is refused too while it lasts. An unknown login is refused like a wrong password."""
    with GatewayProcess(portal_config(demo_api), ready_timeout=READY) as gw:
        client = PortalClient(gw)
        client.accept(invite(gw, "acme", "dev@acme.test"))
        assert client.sign_in("nobody@acme.test", "wrong password!")[0] == 401
        statuses = [client.sign_in("dev@acme.test", "wrong password!")[0] for _ in range(3)]
        assert statuses == [401, 401, 423]
        status, _, html = client.sign_in("dev@acme.test")
        assert status == 423 and "locked" in html
        assert client.get("/portal/keys")[0] == 303


def test_totp_enrolment_then_sign_in_with_a_code(demo_api: DemoServer) -> None:
    """A developer enrols TOTP (a wrong code is refused); the next sign-in stops at the code
    step: that half-signed-in session reaches no page; the right code opens a new session
    (the cookie changes), and the same code is not accepted twice."""
    with GatewayProcess(portal_config(demo_api), ready_timeout=READY) as gw:
        client = signed_in(gw, "acme", "dev@acme.test")
        _, _, page = client.get("/portal/account")
        secret = re.search(r'name="secret" value="([A-Z2-7]+)"', page)
        assert secret is not None
        totp = pyotp.TOTP(secret.group(1))
        wrong = client.post("/portal/account", {"csrf_token": csrf_of(page), "secret": secret.group(1),
                                                "code": "000000" if totp.now() != "000000" else "111111"})
        assert wrong[0] == 422
        done = client.post("/portal/account", {"csrf_token": csrf_of(page), "secret": secret.group(1),
                                               "code": totp.now()})
        assert done[0] == 200 and "is on" in done[2]
        client.post("/portal/logout", {"csrf_token": csrf_of(page)})
        again = PortalClient(gw)
        status, headers, _ = again.sign_in("dev@acme.test")
        assert status == 303 and headers["location"] == "/portal/totp"
        half = dict(again.cookies)
        assert again.get("/portal/keys")[0] == 303
        # The enrolment spent this time step's code; the next step's is within the drift allowed.
        code = totp.at(time.time() + 30)
        status, headers, _ = again.submit("/portal/totp", {"code": code})
        assert status == 303 and headers["location"] == "/portal/"
        assert again.cookies != half and again.get("/portal/keys")[0] == 200
        replay = PortalClient(gw)
        replay.sign_in("dev@acme.test")
        assert replay.submit("/portal/totp", {"code": code})[0] == 401


def test_portal_off_and_registration(demo_api: DemoServer) -> None:
    """With the portal disabled every /portal path is 404. Registration is 404 unless
    admin.portal.registration; then it makes a consumer on admin.portal.plan whose developer
    signs in and sees that plan."""
    cfg = portal_config(demo_api)
    cfg["admin"]["portal"] = {"enabled": False}
    with GatewayProcess(cfg, ready_timeout=READY) as gw:
        assert PortalClient(gw).get("/portal/login")[0] == 404
    with GatewayProcess(portal_config(demo_api), ready_timeout=READY) as gw:
        assert PortalClient(gw).get("/portal/register")[0] == 404
    with GatewayProcess(portal_config(demo_api, registration=True, plan="starter"), ready_timeout=READY) as gw:
        client = PortalClient(gw)
        weak = client.submit("/portal/register", {"login": "new@dev.test", "password": "short", "confirm": "short"})
        assert weak[0] == 422 and "12 characters" in weak[2]
        status, headers, _ = client.submit("/portal/register",
                                           {"login": "new@dev.test", "password": PASSWORD, "confirm": PASSWORD})
        assert status == 303, headers
        assert client.sign_in("new@dev.test")[0] == 303
        assert "plan <strong>starter</strong>" in client.get("/portal/")[2]
        taken = PortalClient(gw).submit("/portal/register",
                                        {"login": "new@dev.test", "password": PASSWORD, "confirm": PASSWORD})
        assert taken[0] == 422 and "taken" in taken[2]


def test_usage_and_documentation(demo_api: DemoServer) -> None:
    """The overview counts the consumer's requests and blocked requests (a key without the
    scope an operation needs) of the last 24 h from the audit log, and shows its plan's
    quota; the documentation page is the generated security guide of the operations it can
    call (not one that needs a role it lacks), under a CSP that allows no script."""
    cfg = portal_config(demo_api)
    cfg["services"].append({"name": "partners", "upstream": demo_api.url, "routes": [
        {"path": "/partners-only", "methods": ["GET"], "policies": {"access": {"roles": ["partner"]}}}]})
    with GatewayProcess(cfg, ready_timeout=READY) as gw:
        client = signed_in(gw, "acme", "dev@acme.test")
        key = create_key(client, "orders:read")
        assert wait_status(gw, key, 200) == 200
        unscoped = create_key(client, "books:read")
        assert wait_status(gw, unscoped, 403) == 403
        deadline = time.monotonic() + 10
        while True:
            html = client.get("/portal/")[2]
            figures = {k: int(v) for k, v in re.findall(r'id="stat-(\w+)">(\d+)<', html)}
            if (figures["requests"] >= 2 and figures["blocked"] >= 1) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert figures["requests"] >= 2 and figures["blocked"] >= 1
        assert "starter-quota-10000-per-86400s" in html
        status, headers, docs = client.get("/portal/docs")
        assert status == 200 and "security guide for API consumers" in docs
        assert "/orders" in docs and "/partners-only" not in docs
        assert "script" not in headers["content-security-policy"] and "<script" not in docs
        assert "'unsafe-inline'" not in headers["content-security-policy"] and "<style" not in docs


def test_the_registration_plan_must_be_defined(tmp_path: Path) -> None:
    """admin.portal.plan naming a plan `plans` does not define is a configuration error that
    names the field and the plans there are (self-registered consumers would get no plan)."""
    (tmp_path / "bastion.yaml").write_text("""\
admin: {portal: {enabled: true, registration: true, plan: gold}}
plans: {free: {scopes: [books:read]}}
services: [{name: api, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
""")
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path / "bastion.yaml")
    assert "admin.portal.plan is 'gold', which `plans` does not define (it defines: free)" in str(raised.value)


def test_quotas_show_what_is_left_with_redis(demo_api: DemoServer, redis_url: str) -> None:
    """With a shared state backend the overview reads what is left of the plan's quota from
    Redis, as `bastion consumers show` does: below the limit once the key was used."""
    cfg = portal_config(demo_api)
    cfg["backends"] = {"state": "redis", "redis": {"url": redis_url}}
    with GatewayProcess(cfg, ready_timeout=READY) as gw:
        client = signed_in(gw, "acme", "dev@acme.test")
        key = create_key(client, "orders:read")
        assert wait_status(gw, key, 200) == 200
        assert call_api(gw, key) == 200
        html = client.get("/portal/")[2]
        row = re.search(r'<td data-label="Limit">starter-quota-10000-per-86400s</td>.*?'
                        r'<td data-label="Left">(\d+)</td>', html, re.S)
        assert row is not None, html
        assert 0 < int(row.group(1)) <= 10000 - 2


def test_sessions_are_new_at_sign_in_and_end_with_a_password_change(demo_api: DemoServer) -> None:
    """Session fixation: a cookie planted before sign-in is not what the signed-in browser
    holds, and opens nothing. A password change needs the current password, ends the
    account's other sessions (another browser is signed out), keeps this browser signed in
    with a new cookie, and the new password is the one that signs in."""
    with GatewayProcess(portal_config(demo_api), ready_timeout=READY) as gw:
        link = invite(gw, "acme", "dev@acme.test")
        client = PortalClient(gw)
        client.accept(link)
        planted = "attacker-chosen-value-" + "x" * 20
        client.cookies["bastion_portal"] = planted
        assert client.sign_in("dev@acme.test")[0] == 303
        assert client.cookies["bastion_portal"] != planted
        attacker = PortalClient(gw)
        attacker.cookies["bastion_portal"] = planted
        assert attacker.get("/portal/keys")[0] == 303
        other = PortalClient(gw)
        assert other.sign_in("dev@acme.test")[0] == 303 and other.get("/portal/keys")[0] == 200
        new = "another long passphrase"
        wrong = client.submit("/portal/account/password", {"current": "not it at all", "password": new,
                                                           "confirm": new}, "/portal/account")
        assert wrong[0] == 422 and "current password is wrong" in wrong[2]
        before = client.cookies["bastion_portal"]
        status, headers, _ = client.submit("/portal/account/password", {"current": PASSWORD, "password": new,
                                                                        "confirm": new}, "/portal/account")
        assert status == 303 and headers["location"] == "/portal/account?changed=1"
        assert client.cookies["bastion_portal"] != before
        assert "Your password is changed" in client.get("/portal/account?changed=1")[2]
        assert other.get("/portal/keys")[0] == 303
        assert PortalClient(gw).sign_in("dev@acme.test")[0] == 401
        assert PortalClient(gw).sign_in("dev@acme.test", new)[0] == 303
        assert audit_entries(gw, "portal:dev@acme.test")[0]["action"] == "portal.password"


def _reset_password(gw: GatewayProcess, login: str, *extra: str, token: str | None = None
                    ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_ADMIN_TOKEN": token} if token else None
    return subprocess.run([BASTION, "consumers", "reset-password", login, "-c", str(gw.config_path), *extra],
                          capture_output=True, text=True, timeout=60, check=False, env=env)


def test_a_password_reset_link_works_once_and_signs_the_account_out(demo_api: DemoServer) -> None:
    """An operator's reset link (CLI in the store, or the admin API with an operator token):
    the developer's current password keeps working until the link is used; the link sets a
    new password once (then 404), ends every session of the account, and the old password no
    longer signs in. A viewer token is refused (exit 3), an unknown login fails (exit 1), a
    newer link replaces an older one, and the link's secret is in no audit entry."""
    with GatewayProcess(portal_config(demo_api), ready_timeout=READY) as gw:
        browser = signed_in(gw, "acme", "dev@acme.test")
        local = _reset_password(gw, "dev@acme.test", "--expires", "1h")
        assert local.returncode == 0, local.stderr
        older = local.stdout.strip().splitlines()[-1]
        assert older.startswith(gw.admin_url + "/portal/reset/") and "works once" in local.stderr

        remote = _reset_password(gw, "Dev@Acme.test", "--admin-url", gw.admin_url, "--json",
                                 token=gw.admin_token("operator"))
        assert remote.returncode == 0, remote.stderr
        answer = json.loads(remote.stdout)
        link = answer["link"]
        assert answer["login"] == "dev@acme.test" and answer["consumer"] == "acme" and answer["portal_enabled"]
        assert link.startswith(gw.admin_url + "/portal/reset/") and link != older
        assert PortalClient(gw).get(urlsplit(older).path)[0] == 404, "a newer link replaces the older one"

        refused = _reset_password(gw, "dev@acme.test", "--admin-url", gw.admin_url, token=gw.admin_token("viewer"))
        assert refused.returncode == 3 and "needs the role operator" in refused.stderr
        unknown = _reset_password(gw, "nobody@acme.test")
        assert unknown.returncode == 1 and "no portal account has the login 'nobody@acme.test'" in unknown.stderr

        assert PortalClient(gw).sign_in("dev@acme.test")[0] == 303, "the old password works until the reset"
        developer = PortalClient(gw)
        status, _, page = developer.get(urlsplit(link).path)
        assert status == 200 and "New password for dev@acme.test" in page
        new = "a brand new long passphrase"
        developer.accept(link, new)
        assert developer.get(urlsplit(link).path)[0] == 404
        assert browser.get("/portal/keys")[0] == 303, "the reset ends the account's sessions"
        assert PortalClient(gw).sign_in("dev@acme.test")[0] == 401
        assert PortalClient(gw).sign_in("dev@acme.test", new)[0] == 303

        entries = audit_entries(gw, "portal:dev@acme.test")
        assert entries[0]["action"] == "portal.password.reset"
        loaded = load_config(gw.config_path)
        store = open_store(loaded.config.store, loaded.config.consumers)
        try:
            with store.read() as session:
                everything = [adminaudit.as_dict(e) for e in adminaudit.query(session, limit=1000)]
        finally:
            store.close()
        issued = [(e["actor"].split(" ")[0], e["via"]) for e in everything if e["action"] == "portal.reset_link"]
        assert sorted(issued) == [("cli:" + getpass.getuser(), "cli"), ("test-operator", "token")]
        secrets = {urlsplit(u).path.rsplit("/", 1)[1] for u in (older, link)}
        assert not any(secret in str(everything) for secret in secrets)

        with httpx.Client(base_url=gw.admin_url, follow_redirects=False, timeout=10) as dashboard:
            sign_in(dashboard, "opal", make_admin(gw, "opal", Role.OPERATOR), enrol=False)
            shown = dashboard.post("/ui/portal-reset", data={"login": "dev@acme.test",
                                                             "csrf_token": dashboard_csrf(dashboard)})
            assert shown.status_code == 200, shown.text
            found = re.search(r'id="reset-link" class="secret-value" readonly value="([^"]+)"', shown.text)
            assert found is not None and found.group(1).startswith(gw.admin_url + "/portal/reset/")
            assert PortalClient(gw).get(urlsplit(found.group(1)).path)[0] == 200
            missing = dashboard.post("/ui/portal-reset", data={"login": "ghost",
                                                               "csrf_token": dashboard_csrf(dashboard)})
            assert missing.status_code == 422 and "no portal account has the login" in missing.text
