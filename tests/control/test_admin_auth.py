"""The control plane's doors: admin tokens and roles on the admin API, the start-up rules of
the admin listener (loopback, or TLS and an admin user), and the password/TOTP/lockout logic
every sign-in uses, against a real store."""

from __future__ import annotations

import ssl
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest

from bastion.certs import generate_self_signed
from bastion.config.model import StoreSettings
from bastion.control.accounts import login, totp
from bastion.control.accounts.roles import Role
from bastion.demo.server import DemoServer
from bastion.store import admins, open_store, websessions
from bastion.store.models import utcnow
from bastion.testing import GatewayProcess, free_port

BASTION = str(Path(sys.executable).with_name("bastion"))


def _config(demo_api: DemoServer) -> dict[str, object]:
    return {"services": [{"name": "books", "upstream": demo_api.url,
                          "routes": [{"path": "/books", "methods": ["GET"], "public": True}]}]}


def test_reload_needs_an_operator_token(demo_api: DemoServer) -> None:
    """POST /reload: 401 with a Bearer challenge and no token, 401 for a malformed or unknown
    token, 403 for a viewer, 200 for an operator and an admin; a revoked token is refused at
    once. /health, /ready, /version and /metrics stay open, and every answer is hardened
    (nosniff, no-store, not framable)."""
    with GatewayProcess(_config(demo_api)) as gw:
        status, body = gw.admin("POST", "/reload")
        assert status == 401 and body["status"] == 401
        assert gw.admin("POST", "/reload", token="bsa_nottoken")[0] == 401
        assert gw.admin("POST", "/reload", token="bsa_abcdefgh_" + "A" * 43)[0] == 401
        status, body = gw.admin("POST", "/reload", token=gw.admin_token("viewer"))
        assert status == 403 and "operator" in body["detail"]
        assert gw.admin("POST", "/reload", token=gw.admin_token("operator")) == (200, {"reloaded": True})
        assert gw.admin("POST", "/reload", token=gw.admin_token("admin")) == (200, {"reloaded": True})
        for path in ("/health", "/ready", "/version", "/metrics"):
            assert gw.admin("GET", path)[0] == 200
        import http.client

        conn = http.client.HTTPConnection(gw.admin_host, gw.admin_port, timeout=5)
        conn.request("POST", "/reload")
        resp = conn.getresponse()
        resp.read()
        assert resp.getheader("WWW-Authenticate", "").startswith("Bearer")
        assert resp.getheader("Content-Type") == "application/problem+json"
        assert resp.getheader("X-Content-Type-Options") == "nosniff"
        assert resp.getheader("Cache-Control") == "no-store" and resp.getheader("X-Frame-Options") == "DENY"
        conn.close()
        token = gw.admin_token("operator")
        revoked = subprocess.run([BASTION, "admin", "token", "revoke", token[4:12], "-c", str(gw.config_path)],
                                 capture_output=True, text=True, timeout=60, check=False)
        assert revoked.returncode == 0, revoked.stderr
        assert gw.admin("POST", "/reload", token=token)[0] == 401


def test_metrics_can_require_a_token(demo_api: DemoServer) -> None:
    """admin.public_metrics: false puts /metrics behind a token (any role)."""
    cfg = dict(_config(demo_api), admin={"public_metrics": False})
    with GatewayProcess(cfg) as gw:
        assert gw.admin("GET", "/metrics")[0] == 401
        assert gw.admin("GET", "/metrics", token=gw.admin_token("viewer"))[0] == 200


def test_admin_off_loopback_needs_tls(tmp_path: Path) -> None:
    """`bastion check` refuses an admin listener on a non-loopback address without TLS,
    naming the field."""
    (tmp_path / "bastion.yaml").write_text(
        "admin: {host: 0.0.0.0}\nservices: [{name: a, upstream: 'http://127.0.0.1:9', "
        "routes: [{path: /a, methods: [GET], public: true}]}]\n")
    result = subprocess.run([BASTION, "check"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "admin.host" in result.stderr and "admin.tls" in result.stderr


def test_admin_off_loopback_needs_an_admin_user(tmp_path: Path) -> None:
    """With TLS but no admin user in the store, `bastion serve` refuses to start (exit 1, one
    clear line) before it listens anywhere."""
    generate_self_signed(tmp_path / "admin.pem", tmp_path / "admin.key")
    (tmp_path / "bastion.yaml").write_text(
        f"listen: {{port: {free_port()}}}\n"
        f"admin: {{host: 0.0.0.0, port: {free_port()}, tls: {{cert: admin.pem, key: admin.key}}}}\n"
        "services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /a, methods: [GET], public: true}]}]\n")
    result = subprocess.run([BASTION, "serve", "-w", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 1
    assert "no admin user" in result.stderr and "bastion admin create" in result.stderr
    assert "Traceback" not in result.stderr


def test_admin_listener_over_tls(demo_api: DemoServer, tmp_path: Path) -> None:
    """admin.tls serves the admin API over HTTPS (on loopback here)."""
    generate_self_signed(tmp_path / "admin.pem", tmp_path / "admin.key")
    tls = {"cert": str(tmp_path / "admin.pem"), "key": str(tmp_path / "admin.key")}
    cfg = dict(_config(demo_api), admin={"tls": tls})
    import http.client

    with GatewayProcess(cfg, ready_timeout=30) as gw:
        context = ssl.create_default_context(cafile=str(tmp_path / "admin.pem"))
        conn = http.client.HTTPSConnection("127.0.0.1", gw.admin_port, context=context, timeout=5)
        conn.request("GET", "/version")
        assert conn.getresponse().status == 200
        conn.close()


@pytest.fixture
def store(store_settings: StoreSettings):  # type: ignore[no-untyped-def]
    s = open_store(store_settings)
    try:
        yield s
    finally:
        s.close()


def test_password_totp_and_lockout(store) -> None:  # type: ignore[no-untyped-def]
    """A new admin's one-time password signs in and must be replaced; a TOTP code works once
    (a replay fails); five wrong passwords lock the account, after which even the right one
    is refused until the lock lapses; an unknown name is refused like a wrong password."""
    policy = login.LoginPolicy(max_failures=5, lockout=timedelta(minutes=15))
    with store.write() as session:
        _, password = admins.create(session, "root", Role.ADMIN)
    now = utcnow()
    with store.write() as session:
        row = admins.require(session, "root")
        assert row.must_change_password
        assert login.check_password(row, password, now, policy) is login.Outcome.OK
        assert login.set_password(row, "short") is not None
        assert login.set_password(row, "a much longer passphrase") is None and not row.must_change_password
        secret = totp.new_secret()
        assert not login.enrol_totp(row, store.pepper, secret, "000000" if pyotp.TOTP(secret).now() != "000000"
                                    else "111111", now)
        assert login.enrol_totp(row, store.pepper, secret, pyotp.TOTP(secret).at(now), now)
        assert secret not in (row.totp_secret or "")
    later = now + timedelta(seconds=31)
    with store.write() as session:
        row = admins.require(session, "root")
        assert login.check_password(row, "a much longer passphrase", later, policy) is login.Outcome.NEEDS_TOTP
        code = pyotp.TOTP(secret).at(later)
        assert login.check_totp(row, store.pepper, code, later, policy) is login.Outcome.OK
        assert login.check_totp(row, store.pepper, code, later, policy) is login.Outcome.REFUSED  # replayed
        for _ in range(3):  # the replayed code was the first of five failures
            assert login.check_password(row, "wrong password!", later, policy) is login.Outcome.REFUSED
        assert login.check_password(row, "wrong password!", later, policy) is login.Outcome.LOCKED
        assert login.check_password(row, "a much longer passphrase", later, policy) is login.Outcome.LOCKED
        unlocked = later + timedelta(minutes=16)
        assert login.check_password(row, "a much longer passphrase", unlocked, policy) is login.Outcome.NEEDS_TOTP
    assert login.check_password(None, "anything at all", now, policy) is login.Outcome.REFUSED


def test_tokens_and_sessions_in_the_store(store) -> None:  # type: ignore[no-untyped-def]
    """A token's role is at most its user's (and drops with it); only its keyed hash is kept;
    an expired token is dead. A session cookie resolves only while live and not idle, and
    only for its own kind."""
    with store.write() as session:
        user, _ = admins.create(session, "ops", Role.OPERATOR)
        with pytest.raises(Exception, match="cannot have the role admin"):
            admins.create_token(session, store.pepper, user, "x", Role.ADMIN)
        row, secret = admins.create_token(session, store.pepper, user, "ci")
        _, short = admins.create_token(session, store.pepper, user, "short", ttl=timedelta(minutes=1))
        assert secret.encode() not in row.hash
    now = utcnow()
    with store.write() as session:
        found = admins.resolve_token(session, store.pepper, secret, now)
        assert found is not None and found.role is Role.OPERATOR
        admins.require(session, "ops").role = "viewer"
    with store.read() as session:
        found = admins.resolve_token(session, store.pepper, secret, now)
        assert found is not None and found.role is Role.VIEWER
        assert admins.resolve_token(session, store.pepper, short, now + timedelta(minutes=2)) is None
        assert admins.resolve_token(session, store.pepper, secret[:-1] + "x", now) is None
    policy = websessions.SessionPolicy(ttl=timedelta(hours=8), idle=timedelta(minutes=30))
    with store.write() as session:
        _, cookie = websessions.open_session(session, store.pepper, "admin", user.id, "127.0.0.1", True, now, policy)
    with store.write() as session:
        assert websessions.find(session, store.pepper, "admin", cookie, now + timedelta(minutes=10), policy)
        assert websessions.find(session, store.pepper, "portal", cookie, now, policy) is None
    with store.write() as session:
        assert websessions.find(session, store.pepper, "admin", cookie, now + timedelta(minutes=41), policy) is None
