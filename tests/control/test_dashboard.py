"""The dashboard's doors over HTTP (no browser): the sign-in flow and what a half-signed-in
browser may do, CSRF on every form, session fixation, lockout and the per-address rate limit,
idle expiry, roles on the pages, the pages' security headers, and the admin audit entry of a
change made from the dashboard, against a real gateway and its store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pyotp
from sqlalchemy import select

from bastion.control.accounts.roles import Role
from bastion.demo.server import DemoServer
from bastion.store import adminaudit
from bastion.store.models import AdminUser, AlertRecord, AuditRecord, WebSession, utcnow
from bastion.testing import GatewayProcess
from tests.control.dashboard_client import (
    NEW_PASSWORD,
    csrf_of,
    field,
    gateway_store,
    make_admin,
    post_login,
    secret_on,
    sign_in,
)


def _config(demo_api: DemoServer, **admin: Any) -> dict[str, Any]:
    return {"admin": admin, "services": [{"name": "books", "upstream": demo_api.url,
                                          "routes": [{"path": "/books", "methods": ["GET"], "public": True}]}]}


def _client(gw: GatewayProcess) -> httpx.Client:
    return httpx.Client(base_url=gw.admin_url, follow_redirects=False, timeout=10)


def test_admin_signs_in_with_new_password_and_totp(demo_api: DemoServer) -> None:
    """An admin's first sign-in: one-time password, then a new password, then TOTP enrolment,
    and only then a session that opens the pages. Until the end the browser's cookie opens
    nothing; the next sign-in asks for a code, and a replayed code is refused."""
    with GatewayProcess(_config(demo_api)) as gw, _client(gw) as client:
        one_time = make_admin(gw, "alice", Role.ADMIN)
        assert client.get("/ui/").headers["location"] == "/ui/login"
        assert post_login(client, "alice", one_time).headers["location"] == "/ui/login/step"
        # Half signed in: nothing but the next step.
        assert client.get("/ui/").status_code == 303
        assert client.post("/ui/consumers", data={"name": "x"}).status_code == 401
        step = client.get("/ui/login/step")
        assert "Choose a new password" in step.text
        short = client.post("/ui/login/step", data={"password": "short", "confirm": "short",
                                                    "csrf_token": field(step.text, "csrf_token")})
        assert short.status_code == 422 and "at least 12 characters" in short.text
        client.post("/ui/login/step", data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                                            "csrf_token": field(step.text, "csrf_token")})
        step = client.get("/ui/login/step")
        assert "Set up your second factor" in step.text and "otpauth://totp/" in step.text
        assert client.get("/ui/").status_code == 303
        secret = secret_on(step.text)
        wrong = client.post("/ui/login/step", data={"code": "000000", "sealed": field(step.text, "sealed"),
                                                    "csrf_token": field(step.text, "csrf_token")})
        assert wrong.status_code == 422 and secret in wrong.text  # the same secret, to try again
        code = pyotp.TOTP(secret).now()
        done = client.post("/ui/login/step", data={"code": code, "sealed": field(step.text, "sealed"),
                                                   "csrf_token": field(step.text, "csrf_token")})
        assert done.status_code == 303 and done.headers["location"] == "/ui/"
        overview = client.get("/ui/")
        assert overview.status_code == 200 and "alice (admin)" in overview.text
        with gateway_store(gw) as store, store.read() as session:
            actions = [e.action for e in adminaudit.query(session, actor="alice")]
        assert actions == ["login", "totp.enrol", "password.change"]

        with _client(gw) as again:
            assert post_login(again, "alice", NEW_PASSWORD).headers["location"] == "/ui/login/step"
            step = again.get("/ui/login/step")
            assert "Second factor" in step.text
            replay = again.post("/ui/login/step", data={"code": code, "csrf_token": field(step.text, "csrf_token")})
            assert replay.status_code == 422 and again.get("/ui/").status_code == 303


def test_pages_carry_a_strict_content_security_policy(demo_api: DemoServer) -> None:
    """Every page, the sign-in page included, forbids inline script, other origins and
    framing; the static files are served from the package, anything else there is 404."""
    with GatewayProcess(_config(demo_api)) as gw, _client(gw) as client:
        sign_in(client, "vera", make_admin(gw, "vera", Role.VIEWER), enrol=False)
        for path in ("/ui/login", "/ui/", "/ui/feed", "/ui/blocked", "/ui/alerts", "/ui/consumers", "/ui/routes",
                     "/ui/discovery"):
            page = client.get(path) if path != "/ui/login" else httpx.get(gw.admin_url + path)
            assert page.status_code == 200, path
            csp = page.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
            assert "<script>" not in page.text and " style=" not in page.text
            assert page.headers["x-frame-options"] == "DENY"
        assert client.get("/ui/static/dashboard.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/ui/static/dashboard.css").status_code == 200
        assert client.get("/ui/static/..%2f__init__.py").status_code == 404
        assert client.get("/ui/static/login.html").status_code == 404


def test_forms_need_their_csrf_token(demo_api: DemoServer) -> None:
    """The sign-in form is refused without its double-submit token (or with one that is not
    the cookie's); a signed-in operator's form posts are refused without the session's token
    and accepted with it."""
    with GatewayProcess(_config(demo_api)) as gw, _client(gw) as client:
        one_time = make_admin(gw, "otto", Role.OPERATOR)
        refused = client.post("/ui/login", data={"name": "otto", "password": one_time})
        assert refused.status_code == 403 and "expired" in refused.text
        client.get("/ui/login")
        forged = client.post("/ui/login", data={"name": "otto", "password": one_time, "csrf_token": "x" * 43})
        assert forged.status_code == 403
        sign_in(client, "otto", one_time, enrol=False)
        assert client.post("/ui/consumers", data={"name": "acme"}).status_code == 403
        assert client.post("/ui/consumers", data={"name": "acme", "csrf_token": "nope"}).status_code == 403
        assert client.post("/ui/logout", data={}).status_code == 403
        made = client.post("/ui/consumers", data={"name": "acme", "csrf_token": csrf_of(client)})
        assert made.status_code == 303
        assert "acme" in client.get("/ui/consumers").text


def test_a_cookie_set_before_sign_in_is_never_the_session(demo_api: DemoServer) -> None:
    """Session fixation: a session cookie planted before the sign-in is replaced by a fresh
    value at each step, and neither the planted nor the half-signed-in value opens a page."""
    with GatewayProcess(_config(demo_api)) as gw, _client(gw) as client:
        one_time = make_admin(gw, "fred", Role.OPERATOR)
        client.cookies.set("bastion_session", "planted-by-an-attacker")
        answer = post_login(client, "fred", one_time)
        pending = answer.cookies["bastion_session"]
        assert pending != "planted-by-an-attacker"
        step = client.get("/ui/login/step")
        done = client.post("/ui/login/step", data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                                                   "csrf_token": field(step.text, "csrf_token")})
        final = done.cookies["bastion_session"]
        assert final not in (pending, "planted-by-an-attacker")
        assert client.get("/ui/").status_code == 200
        for stale in ("planted-by-an-attacker", pending):
            with httpx.Client(base_url=gw.admin_url, cookies={"bastion_session": stale}) as other:
                assert other.get("/ui/").status_code == 303


def test_lockout_after_repeated_failures_says_nothing_about_the_account(demo_api: DemoServer) -> None:
    """After admin.login.max_failures wrong passwords the right one is refused too, with the
    same status and message as a name that does not exist."""
    with GatewayProcess(_config(demo_api, login={"max_failures": 3})) as gw, _client(gw) as client:
        one_time = make_admin(gw, "lou", Role.VIEWER)
        for _ in range(3):
            assert post_login(client, "lou", "wrong password!").status_code == 401
        locked = post_login(client, "lou", one_time)
        unknown = post_login(client, "nobody", one_time)
        assert locked.status_code == unknown.status_code == 401
        message = "the name or password is wrong, or the account is locked"
        assert message in locked.text and message in unknown.text
        assert locked.text.replace("lou", "") == unknown.text.replace("nobody", "")
        with gateway_store(gw) as store, store.read() as session:
            user = session.execute(select(AdminUser).where(AdminUser.name == "lou")).scalar_one()
            assert user.locked_until is not None and user.locked_until > utcnow()


def test_sign_in_attempts_are_rate_limited_per_address(demo_api: DemoServer) -> None:
    """admin.login.attempts_per_minute: one more attempt from the address gets 429, even
    with the right password."""
    with GatewayProcess(_config(demo_api, login={"attempts_per_minute": 3})) as gw, _client(gw) as client:
        one_time = make_admin(gw, "rita", Role.VIEWER)
        for name in ("a", "b", "c"):
            assert post_login(client, name, "wrong password!").status_code == 401
        limited = post_login(client, "rita", one_time)
        assert limited.status_code == 429 and "Too many sign-in attempts" in limited.text


def test_an_idle_session_expires(demo_api: DemoServer) -> None:
    """A session unused for longer than admin.sessions.idle is refused (back to the sign-in
    page) and deleted from the store."""
    with GatewayProcess(_config(demo_api, sessions={"idle": 60})) as gw, _client(gw) as client:
        sign_in(client, "ida", make_admin(gw, "ida", Role.VIEWER), enrol=False)
        assert client.get("/ui/").status_code == 200
        with gateway_store(gw) as store, store.write() as session:
            for row in session.scalars(select(WebSession).where(WebSession.mfa.is_(True))):
                row.last_seen_at = utcnow() - timedelta(seconds=61)
        assert client.get("/ui/").headers["location"] == "/ui/login"
        with gateway_store(gw) as store, store.read() as session:
            assert session.scalars(select(WebSession)).all() == []


def test_viewers_read_operators_change_and_the_change_is_audited(demo_api: DemoServer) -> None:
    """A viewer sees the alerts without buttons and is refused a status change (403); an
    operator acknowledges an alert, which records who did it, and an admin audit entry with
    before and after."""
    with GatewayProcess(_config(demo_api)) as gw:
        now = utcnow()
        with gateway_store(gw) as store, store.write() as session:
            session.add(AlertRecord(id="a1", first_seen=now, last_seen=now, detector="scanner", severity="medium",
                                    action="alert", count=3, window_seconds=60, summary="3 probes from 10.0.0.9",
                                    subject={"ip": "10.0.0.9"}, instance="test"))
        with _client(gw) as viewer:
            sign_in(viewer, "vic", make_admin(gw, "vic", Role.VIEWER), enrol=False)
            page = viewer.get("/ui/alerts")
            assert "3 probes from 10.0.0.9" in page.text and "Acknowledge" not in page.text
            refused = viewer.post("/ui/alerts/a1", data={"status": "resolved", "csrf_token": csrf_of(viewer)})
            assert refused.status_code == 403
        with _client(gw) as operator:
            sign_in(operator, "opal", make_admin(gw, "opal", Role.OPERATOR), enrol=False)
            done = operator.post("/ui/alerts/a1", data={"status": "acknowledged", "csrf_token": csrf_of(operator)})
            assert done.status_code == 303
            assert "by opal" in operator.get("/ui/alerts").text
            bad = operator.post("/ui/alerts/a1", data={"status": "gone", "csrf_token": csrf_of(operator)})
            assert bad.status_code == 422 and "not an alert status" in bad.text
        with gateway_store(gw) as store, store.read() as session:
            alert = session.get(AlertRecord, "a1")
            assert alert is not None and alert.status == "acknowledged" and alert.handled_by == "opal"
            entry = adminaudit.query(session, action="alert.status")[0]
            assert (entry.actor, entry.via, entry.target) == ("opal", "session", "alert:a1")
            assert entry.before == {"status": "open"} and entry.after == {"status": "acknowledged"}


def _events(client: httpx.Client, path: str, wanted: int, headers: dict[str, str] | None = None,
            within: float = 20.0) -> list[tuple[str, dict[str, Any]]]:
    """The first ``wanted`` record events (id, data) of the feed's stream at ``path``."""
    import json
    import time

    found: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + within
    event_id = ""
    with client.stream("GET", path, headers=headers) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():  # a keep-alive comes every second: the deadline is checked
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                found.append((event_id, json.loads(line[6:])))
                if len(found) == wanted:
                    break
            assert time.monotonic() < deadline, f"only {len(found)} of {wanted} events within {within}s"
    return found


def test_live_feed_streams_filtered_records_and_pages_escape_them(demo_api: DemoServer) -> None:
    """The feed's stream needs a session, sends the audit records that match its filters as
    JSON events, resumes after the Last-Event-ID it is given, and the blocked page shows a
    record's path as text, never as markup."""
    cfg = dict(_config(demo_api), audit={"enabled": True, "flush_interval": 0.2})
    with GatewayProcess(cfg) as gw, _client(gw) as client:
        assert httpx.get(gw.admin_url + "/ui/feed/stream").status_code == 303
        sign_in(client, "fay", make_admin(gw, "fay", Role.VIEWER), enrol=False)
        assert httpx.get(gw.url + "/books", timeout=5).status_code == 200
        # The gateway refuses a raw "<" in a target (and records it percent-encoded): a record
        # holding markup is put in the store directly, as a faulty writer might.
        with gateway_store(gw) as store, store.write() as session:
            session.add(AuditRecord(id="markup", ts=utcnow(), request_id="r", instance="i", worker=0, consumer=None,
                                    credential=None, client="10.0.0.7", method="GET", host="x",
                                    path="/<script>alert(1)</script>", route=None, service=None, status=404,
                                    bytes_in=0, bytes_out=0, latency_ms=0.1, upstream_ms=None, decision="blocked",
                                    stage=None, rule=None, category=None, reason="no_route", details={}))
        assert httpx.get(gw.url + "/nothing-here", timeout=5).status_code == 404
        blocked = _events(client, "/ui/feed/stream?decision=blocked", 2)
        assert {data["decision"] for _, data in blocked} == {"blocked"}
        assert [data["path"] for _, data in blocked] == ["/<script>alert(1)</script>", "/nothing-here"]
        resumed = _events(client, "/ui/feed/stream?decision=blocked", 1, headers={"Last-Event-ID": blocked[0][0]})
        assert resumed[0][1]["path"] == "/nothing-here"
        allowed = _events(client, "/ui/feed/stream?status=200", 1)
        assert allowed[0][1]["path"] == "/books" and allowed[0][1]["route"] != "-"
        page = client.get("/ui/blocked").text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page


def test_an_api_key_made_in_the_dashboard_is_shown_once(demo_api: DemoServer) -> None:
    """POST /ui/keys answers the new key once; the consumers page then shows its prefix and
    id only, and the admin audit entry records the key's id and consumer, never the key."""
    with GatewayProcess(_config(demo_api)) as gw, _client(gw) as client:
        sign_in(client, "kim", make_admin(gw, "kim", Role.OPERATOR), enrol=False)
        assert client.post("/ui/consumers", data={"name": "shop", "roles": "user, buyer", "plan": "gold",
                                                  "csrf_token": csrf_of(client)}).status_code == 303
        refused = client.post("/ui/keys", data={"consumer": "shop", "scopes": "read", "expires_days": "0",
                                                "csrf_token": csrf_of(client)})
        assert refused.status_code == 422 and "1 to 3650" in refused.text
        made = client.post("/ui/keys", data={"consumer": "shop", "scopes": "read, write", "expires_days": "30",
                                             "csrf_token": csrf_of(client)})
        assert made.status_code == 200 and "shown this once" in made.text
        key = made.text.split('id="new-key" class="secret-value" readonly value="')[1].split('"')[0]
        assert key.startswith("bst_")
        listing = client.get("/ui/consumers").text
        assert key not in listing and key[:12] in listing and "read write" in listing
        with gateway_store(gw) as store, store.read() as session:
            entry = adminaudit.query(session, action="key.create")[0]
            assert entry.actor == "kim" and entry.after is not None and entry.after["consumer"] == "shop"
            assert key not in str(adminaudit.as_dict(entry))
            created = adminaudit.query(session, action="consumer.create")[0]
            assert created.after == {"name": "shop", "roles": ["user", "buyer"], "plan": "gold"}


def test_the_dashboard_can_be_turned_off(demo_api: DemoServer) -> None:
    """admin.dashboard: false serves no page under /ui (404), the admin API stays."""
    with GatewayProcess(_config(demo_api, dashboard=False)) as gw, _client(gw) as client:
        for path in ("/ui/login", "/ui/", "/ui/static/dashboard.css"):
            assert client.get(path).status_code == 404, path
        assert client.get("/version").status_code == 200


def test_refusals_are_pages_for_browsers_and_problems_for_scripts(demo_api: DemoServer) -> None:
    """A wrong role, a missing CSRF token and an expired session answer a browser (Accept:
    text/html) with an HTML page giving the reason and where to go next, and a script with
    problem+json carrying the same reason; neither answer carries the page the request wanted."""
    html = {"Accept": "text/html,application/xhtml+xml"}
    with GatewayProcess(_config(demo_api)) as gw, _client(gw) as viewer:
        sign_in(viewer, "vera", make_admin(gw, "vera", Role.VIEWER), enrol=False)
        token = csrf_of(viewer)

        role = viewer.post("/ui/consumers", data={"name": "acme", "csrf_token": token}, headers=html)
        assert role.status_code == 403 and role.headers["content-type"].startswith("text/html")
        assert "needs the role operator; vera is viewer" in role.text and 'href="/ui/"' in role.text
        assert role.headers["content-security-policy"].startswith("default-src 'self'")
        scripted = viewer.post("/ui/consumers", data={"name": "acme", "csrf_token": token})
        assert scripted.status_code == 403 and scripted.headers["content-type"] == "application/problem+json"
        assert scripted.json()["detail"] == "This needs the role operator; vera is viewer."

        forged = viewer.post("/ui/logout", data={"csrf_token": "nope"}, headers=html)
        assert forged.status_code == 403 and forged.headers["content-type"].startswith("text/html")
        assert "CSRF token" in forged.text and "reload the page" in forged.text

        with gateway_store(gw) as store, store.write() as session:
            for row in session.scalars(select(WebSession)):
                session.delete(row)
        expired = viewer.post("/ui/logout", data={"csrf_token": token}, headers=html)
        assert expired.status_code == 401 and expired.headers["content-type"].startswith("text/html")
        assert "session has expired" in expired.text and 'href="/ui/login"' in expired.text
        as_json = viewer.post("/ui/logout", data={"csrf_token": token})
        assert as_json.status_code == 401 and "session has expired" in as_json.json()["detail"]
        assert viewer.get("/ui/consumers", headers=html).headers["location"] == "/ui/login"
