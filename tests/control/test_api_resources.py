"""The admin API's resources against a real gateway and its store: consumers, API keys and
OAuth clients made over HTTP reach the data plane, the file's consumers stay read-only,
lists page with cursors, bodies are checked against their schema, every write leaves an
admin audit entry with before/after, and one-time secrets are shown exactly once."""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from bastion.config import load_config
from bastion.demo.server import DemoServer
from bastion.store import Store, adminaudit, open_store
from bastion.store.models import AlertRecord, utcnow
from bastion.testing import GatewayProcess


def _config(demo_api: DemoServer) -> dict[str, Any]:
    return {
        "audit": {"enabled": True},
        "consumers": [{"name": "declared-alice", "roles": ["user"]}],
        "services": [{"name": "books", "upstream": demo_api.url,
                      "routes": [{"path": "/books", "methods": ["GET"]}]}],
    }


@pytest.fixture(scope="module")
def gw(demo_api: DemoServer) -> Iterator[GatewayProcess]:
    with GatewayProcess(_config(demo_api)) as gateway:
        yield gateway


def _gateway_get(gw: GatewayProcess, path: str, key: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _until(gw: GatewayProcess, path: str, key: str, wanted: int) -> int:
    """Poll the data plane until it answers ``wanted`` (workers poll the store's generation
    about every second) or 15 s pass; the last status."""
    deadline = time.monotonic() + 15
    status = _gateway_get(gw, path, key)
    while status != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        status = _gateway_get(gw, path, key)
    return status


@contextlib.contextmanager
def _store(gw: GatewayProcess) -> Iterator[Store]:
    """The gateway's store, opened as the gateway opens it (its declared consumers kept)."""
    loaded = load_config(gw.config_path)
    store = open_store(loaded.config.store, loaded.config.consumers)
    try:
        yield store
    finally:
        store.close()


def _audit(gw: GatewayProcess) -> list[dict[str, Any]]:
    with _store(gw) as store, store.read() as session:
        return [adminaudit.as_dict(e) for e in adminaudit.query(session, limit=1000)]


def add_alert(gw: GatewayProcess, alert_id: str, detector: str = "scanner", minutes_ago: float = 1) -> None:
    """An open alert in the gateway's store, as a detector raises it."""
    seen = utcnow() - timedelta(minutes=minutes_ago)
    with _store(gw) as store, store.write() as session:
        session.add(AlertRecord(id=alert_id, first_seen=seen, last_seen=seen, detector=detector, severity="high",
                                action="alert", count=3, window_seconds=60.0, summary="3 scanner probes",
                                subject={"ip": "192.0.2.7"}, instance="test"))


def test_key_made_over_the_api_reaches_the_gateway(gw: GatewayProcess) -> None:
    """An operator creates a consumer and a key over the API: the gateway accepts the key
    (the workers see the store's bumped generation), refuses it once revoked over the API,
    and the admin audit trail has both writes with who did them and before/after."""
    op = gw.admin_token("operator")
    status, made = gw.admin("POST", "/api/v1/consumers", token=op, json_body={"name": "e2e-bob", "roles": ["r"]})
    assert status == 201 and made["name"] == "e2e-bob" and made["source"] == "store"
    status, new = gw.admin("POST", "/api/v1/keys", token=op, json_body={"consumer": "e2e-bob", "scopes": ["a"]})
    assert status == 201 and new["secret"].startswith("bst_") and new["key"]["state"] == "active"
    assert _until(gw, "/books", new["secret"], 200) == 200
    status, revoked = gw.admin("POST", f"/api/v1/keys/{new['key']['id']}/revoke", token=op)
    assert status == 200 and revoked["changed"] is True and revoked["key"]["state"] == "revoked"
    assert _until(gw, "/books", new["secret"], 401) == 401
    again = gw.admin("POST", f"/api/v1/keys/{new['key']['id']}/revoke", token=op)
    assert again[0] == 200 and again[1]["changed"] is False
    entries = {(e["action"], e["target"]): e for e in _audit(gw)}
    created = entries[("key.create", f"key:{new['key']['id']}")]
    assert created["actor"].startswith("test-operator (token ") and created["via"] == "token"
    assert created["source"] == "127.0.0.1" and created["before"] is None
    assert created["after"]["consumer"] == "e2e-bob" and created["after"]["scopes"] == ["a"]
    revoke = entries[("key.revoke", f"key:{new['key']['id']}")]
    assert revoke["before"]["state"] == "active" and revoke["after"]["state"] == "revoked"
    assert entries[("consumer.create", "consumer:e2e-bob")]["after"]["roles"] == ["r"]


def test_declared_consumers_are_read_only(gw: GatewayProcess) -> None:
    """A consumer declared in bastion.yaml is listed (source config) but PATCH and DELETE
    answer 409 naming the file; the store is unchanged and no audit entry is written."""
    op = gw.admin_token("operator")
    status, shown = gw.admin("GET", "/api/v1/consumers/declared-alice", token=op)
    assert status == 200 and shown["source"] == "config" and shown["roles"] == ["user"]
    for method, body in (("PATCH", {"roles": ["admin"]}), ("DELETE", None)):
        status, refused = gw.admin(method, "/api/v1/consumers/declared-alice", token=op, json_body=body)
        assert status == 409, refused
        assert str(gw.config_path) in refused["detail"] and "change it there" in refused["detail"]
    assert gw.admin("GET", "/api/v1/consumers/declared-alice", token=op)[1]["roles"] == ["user"]
    assert not [e for e in _audit(gw) if e["target"] == "consumer:declared-alice"]
    status, taken = gw.admin("POST", "/api/v1/consumers", token=op, json_body={"name": "declared-alice"})
    assert status == 409 and "exists already" in taken["detail"]


def test_update_and_delete_a_store_consumer(gw: GatewayProcess) -> None:
    """PATCH changes only what it is given and records before and after; DELETE removes the
    consumer with its keys (the audit entry says how many); a second DELETE is 404."""
    op = gw.admin_token("operator")
    gw.admin("POST", "/api/v1/consumers", token=op, json_body={"name": "upd-carol", "plan": "free"})
    gw.admin("POST", "/api/v1/keys", token=op, json_body={"consumer": "upd-carol"})
    status, after = gw.admin("PATCH", "/api/v1/consumers/upd-carol", token=op, json_body={"roles": ["x", "y"]})
    assert status == 200 and after["roles"] == ["x", "y"] and after["plan"] == "free"
    status, cleared = gw.admin("PATCH", "/api/v1/consumers/upd-carol", token=op, json_body={"plan": None})
    assert status == 200 and cleared["plan"] is None and cleared["roles"] == ["x", "y"]
    status, deleted = gw.admin("DELETE", "/api/v1/consumers/upd-carol", token=op)
    assert (status, deleted) == (200, {"deleted": "upd-carol", "api_keys_deleted": 1})
    assert gw.admin("DELETE", "/api/v1/consumers/upd-carol", token=op)[0] == 404
    entries = [e for e in _audit(gw) if e["target"] == "consumer:upd-carol"]
    updates = [(e["before"], e["after"]) for e in entries if e["action"] == "consumer.update"]
    assert [(b["roles"], b["plan"], a["roles"], a["plan"]) for b, a in reversed(updates)] == [
        ([], "free", ["x", "y"], "free"), (["x", "y"], "free", ["x", "y"], None)]
    delete = next(e for e in entries if e["action"] == "consumer.delete")
    assert delete["before"]["api_keys"] == 1 and delete["after"] is None


def test_lists_page_with_cursors(gw: GatewayProcess) -> None:
    """limit/cursor walk a list page by page: every consumer exactly once, in name order,
    and the last page's next_cursor is null; a forged cursor or a bad limit is 400."""
    op = gw.admin_token("operator")
    for i in range(5):
        gw.admin("POST", "/api/v1/consumers", token=op, json_body={"name": f"page-{i}"})
    seen: list[str] = []
    path = "/api/v1/consumers?limit=2"
    pages = 0
    while True:
        status, body = gw.admin("GET", path, token=op)
        assert status == 200 and len(body["items"]) <= 2
        seen += [c["name"] for c in body["items"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        path = f"/api/v1/consumers?limit=2&cursor={body['next_cursor']}"
    assert seen == sorted(seen) and len(seen) == len(set(seen)) and pages == -(-len(seen) // 2)
    assert {f"page-{i}" for i in range(5)} <= set(seen)
    assert gw.admin("GET", "/api/v1/consumers?cursor=%%%", token=op)[0] == 400
    assert gw.admin("GET", "/api/v1/consumers?limit=0", token=op)[0] == 400
    status, body = gw.admin("GET", "/api/v1/consumers?limt=2", token=op)
    assert status == 400 and "limt" in body["detail"] and "cursor, limit" in body["detail"]


def test_bodies_are_checked_against_their_schema(gw: GatewayProcess) -> None:
    """A body that is not JSON is 415, malformed JSON 400, and one off the declared schema
    422 listing where and why, as problem+json; nothing is written."""
    op = gw.admin_token("operator")
    status, body = gw.admin("POST", "/api/v1/consumers", token=op, json_body={"name": "bad name!", "extra": 1})
    assert status == 422 and body["status"] == 422 and len(body["errors"]) == 2
    assert any("extra" in e for e in body["errors"]) and any(e.startswith("/name") for e in body["errors"])
    never = {"consumer": "declared-alice", "expires_in": 0}
    assert gw.admin("POST", "/api/v1/keys", token=op, json_body=never)[0] == 422
    conn = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=5)
    for ctype, raw, wanted in (("text/plain", b"name=x", 415), ("application/json", b"{nope", 400)):
        conn.request("POST", "/api/v1/consumers", body=raw,
                     headers={"Authorization": f"Bearer {op}", "Content-Type": ctype})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        assert resp.status == wanted and resp.getheader("Content-Type") == "application/problem+json", answer
    conn.close()
    assert gw.admin("GET", "/api/v1/consumers/bad%20name!", token=op)[0] == 404


def test_one_time_secrets_appear_once(gw: GatewayProcess) -> None:
    """A key made by create or rotate and an OAuth client secret are each in exactly one
    response; no list, no admin audit entry, no store table and no gateway log holds them.
    The rotated key keeps working during its overlap, then the new one works too."""
    op = gw.admin_token("operator")
    responses: list[str] = []

    def call(method: str, path: str, body: Any = None) -> Any:
        status, answer = gw.admin(method, path, token=op, json_body=body)
        assert status < 300, answer
        responses.append(json.dumps(answer))
        return answer

    call("POST", "/api/v1/consumers", {"name": "once-dave"})
    made = call("POST", "/api/v1/keys", {"consumer": "once-dave", "scopes": ["s"], "expires_in": 3600})
    rotated = call("POST", f"/api/v1/keys/{made['key']['id']}/rotate", {"overlap": 600})
    assert rotated["old_key"]["state"] == "rotated" and rotated["key"]["scopes"] == ["s"]
    assert rotated["key"]["expires_at"] is not None  # the old key's lifetime carried over
    client = call("POST", "/api/v1/oauth-clients", {"client_id": "once-app", "consumer": "once-dave"})
    assert client["secret"].startswith("bcs_") and client["client"]["auth_method"] == "client_secret"
    for path in ("/api/v1/keys", "/api/v1/keys?consumer=once-dave", "/api/v1/oauth-clients",
                 "/api/v1/consumers/once-dave"):
        call("GET", path)
    secrets = [made["secret"], rotated["secret"], client["secret"]]
    for secret in secrets:
        assert sum(secret in r for r in responses) == 1, secret
    assert _until(gw, "/books", made["secret"], 200) == 200  # still in its overlap
    assert _until(gw, "/books", rotated["secret"], 200) == 200
    trail = json.dumps(_audit(gw))
    assert made["key"]["id"] in trail and "once-app" in trail
    logs = gw.stderr_text() + gw.stdout_text()
    db = (gw.folder / "bastion.db").read_bytes()
    for secret in secrets:
        assert secret not in trail and secret not in logs and secret.encode() not in db


def test_routes_show_their_effective_policy(gw: GatewayProcess) -> None:
    """GET /routes lists the served route as `bastion check` does: its service, methods,
    path, who may call it and the stages that run, with their settings."""
    status, body = gw.admin("GET", "/api/v1/routes", token=gw.admin_token("viewer"))
    assert status == 200 and body["next_cursor"] is None
    (route,) = [r for r in body["items"] if r["path"] == "/books"]
    assert route["service"] == "books" and route["methods"] == ["GET"] and route["builtin"] is False
    assert route["public"] is False and "api key" in route["auth"].lower(), route["auth"]
    assert "auth" in route["stages"] and route["policies"]["auth"]["enabled"] is True
    assert gw.admin("GET", "/api/v1/routes?service=nope", token=gw.admin_token("viewer"))[1]["items"] == []


def test_alerts_filter_acknowledge_and_resolve(gw: GatewayProcess) -> None:
    """GET /alerts lists the recent alerts newest first with filters (an alert older than
    `since` is left out); acknowledge and resolve record who did it, on the alert and in the
    admin audit trail; an unknown alert is 404."""
    add_alert(gw, "al-old", minutes_ago=3 * 24 * 60)
    add_alert(gw, "al-new", detector="brute_force")
    viewer, op = gw.admin_token("viewer"), gw.admin_token("operator")
    status, body = gw.admin("GET", "/api/v1/alerts", token=viewer)
    ids = [a["id"] for a in body["items"]]
    assert status == 200 and "al-new" in ids and "al-old" not in ids
    only = gw.admin("GET", "/api/v1/alerts?detector=brute_force&status=open", token=viewer)[1]["items"]
    assert [a["id"] for a in only] == ["al-new"]
    status, acked = gw.admin("POST", "/api/v1/alerts/al-new/acknowledge", token=op)
    assert status == 200 and acked["status"] == "acknowledged" and acked["handled_by"] == "test-operator"
    assert gw.admin("GET", "/api/v1/alerts?status=open&detector=brute_force", token=viewer)[1]["items"] == []
    assert gw.admin("POST", "/api/v1/alerts/al-new/resolve", token=op)[1]["status"] == "resolved"
    assert gw.admin("POST", "/api/v1/alerts/nope/resolve", token=op)[0] == 404
    assert gw.admin("GET", "/api/v1/alerts?status=closed", token=viewer)[0] == 400
    changes = [(e["action"], e["before"], e["after"]) for e in _audit(gw) if e["target"] == "alert:al-new"]
    assert changes == [("alert.resolve", {"status": "acknowledged"}, {"status": "resolved"}),
                       ("alert.acknowledge", {"status": "open"}, {"status": "acknowledged"})]


def test_audit_log_and_metrics_summary(gw: GatewayProcess) -> None:
    """With the audit log in the store, GET /audit-log finds the gateway's requests with the
    filters of `bastion logs query`, and GET /metrics/summary counts them over the window with
    their rates and latency percentiles; GET /admin-audit is for admins only."""
    for _ in range(3):
        assert _gateway_get(gw, "/books", "bst_not_a_key") == 401
    viewer = gw.admin_token("viewer")
    deadline = time.monotonic() + 15
    items: list[dict[str, Any]] = []
    while len(items) < 3 and time.monotonic() < deadline:
        items = gw.admin("GET", "/api/v1/audit-log?status=401&limit=50", token=viewer)[1]["items"]
        time.sleep(0.2)
    assert len(items) >= 3 and all(r["status"] == 401 and r["path"] == "/books" for r in items)
    assert gw.admin("GET", "/api/v1/audit-log?status=200&route=nothing", token=viewer)[1]["items"] == []
    assert gw.admin("GET", "/api/v1/audit-log?decision=maybe", token=viewer)[0] == 400
    status, summary = gw.admin("GET", "/api/v1/metrics/summary?minutes=60", token=viewer)
    assert status == 200 and summary["source"] == "audit" and summary["minutes"] == 60
    assert summary["requests"] >= 3 and 0 <= summary["error_rate"] <= 1 and 0 < summary["blocked_rate"] <= 1
    p50, p95, p99 = (summary["latency_ms"][p] for p in ("p50", "p95", "p99"))
    assert 0 <= p50 <= p95 <= p99
    assert gw.admin("GET", "/api/v1/admin-audit", token=gw.admin_token("operator"))[0] == 403
    status, trail = gw.admin("GET", "/api/v1/admin-audit?action=consumer.create&limit=5", token=gw.admin_token("admin"))
    assert status == 200 and trail["items"] and all(e["action"] == "consumer.create" for e in trail["items"])


def test_admin_users_and_tokens(gw: GatewayProcess) -> None:
    """An admin creates a user (its one-time password in that response only) and a token for
    it (the token in that response only, listed by id): the token works with the user's role
    and no more; a token above the user's role is refused; revoking it, or disabling the
    user, refuses it at once; nobody disables or deletes themselves; every change is in the
    admin audit trail without the password or the token."""
    admin = gw.admin_token("admin")
    responses: list[str] = []

    def call(method: str, path: str, body: Any = None, token: str = admin) -> tuple[int, Any]:
        status, answer = gw.admin(method, path, token=token, json_body=body)
        responses.append(json.dumps(answer))
        return status, answer

    status, made = call("POST", "/api/v1/admin-users", {"name": "ops-frank", "role": "operator"})
    assert status == 201 and made["user"]["role"] == "operator" and made["user"]["must_change_password"] is True
    password = made["password"]
    assert call("POST", "/api/v1/admin-users", {"name": "ops-frank"})[0] == 409
    status, issued = call("POST", "/api/v1/admin-tokens", {"user": "ops-frank", "name": "ci"})
    assert status == 201 and issued["token"]["role"] == "operator" and issued["secret"].startswith("bsa_")
    token = issued["secret"]
    assert call("POST", "/api/v1/admin-tokens", {"user": "ops-frank", "role": "admin"})[0] == 409
    assert call("GET", "/api/v1/consumers", token=token)[0] == 200
    assert call("POST", "/api/v1/consumers", {"name": "by-frank"}, token=token)[0] == 201
    assert call("GET", "/api/v1/admin-users", token=token)[0] == 403
    users = call("GET", "/api/v1/admin-users")[1]["items"]
    assert [u["role"] for u in users if u["name"] == "ops-frank"] == ["operator"]
    tokens = call("GET", "/api/v1/admin-tokens")[1]["items"]
    assert [(t["user"], t["name"], t["state"]) for t in tokens if t["id"] == issued["token"]["id"]] == [
        ("ops-frank", "ci", "active")]
    status, revoked = call("POST", f"/api/v1/admin-tokens/{issued['token']['id']}/revoke")
    assert status == 200 and revoked["changed"] is True and revoked["token"]["state"] == "revoked"
    assert call("GET", "/api/v1/consumers", token=token)[0] == 401
    second = call("POST", "/api/v1/admin-tokens", {"user": "ops-frank"})[1]["secret"]
    assert call("GET", "/api/v1/consumers", token=second)[0] == 200
    status, disabled = call("POST", "/api/v1/admin-users/ops-frank/disable")
    assert status == 200 and disabled["disabled"] is True
    assert call("GET", "/api/v1/consumers", token=second)[0] == 401
    assert call("POST", "/api/v1/admin-users/test-admin/disable")[0] == 409
    assert call("DELETE", "/api/v1/admin-users/test-admin")[0] == 409
    assert call("DELETE", "/api/v1/admin-users/ops-frank") == (200, {"deleted": "ops-frank"})
    assert call("DELETE", "/api/v1/admin-users/ops-frank")[0] == 404
    for secret in (password, token, second):
        assert sum(secret in r for r in responses) == 1
    trail = [e for e in _audit(gw) if e["target"].startswith(("admin_user:ops-frank", "admin_token:"))]
    assert {e["action"] for e in trail} >= {"admin_user.create", "admin_token.create", "admin_token.revoke",
                                            "admin_user.disable", "admin_user.delete"}
    text = json.dumps(trail) + gw.stderr_text() + gw.stdout_text()
    assert password not in text and token not in text and second not in text
    by_frank = [e for e in _audit(gw) if e["target"] == "consumer:by-frank"]
    assert by_frank[0]["actor"].startswith("ops-frank (token ")


def test_session_writes_need_their_csrf_token(gw: GatewayProcess) -> None:
    """With a dashboard session cookie (signed in with its second factor), the API reads
    without more, but a write without the session's X-CSRF-Token (or with another one) is 403
    and changes nothing; with it, the write succeeds and is audited as made via the session."""
    from bastion.store import admins, websessions

    gw.admin_token("operator")  # its user exists
    with _store(gw) as store, store.write() as session:
        user = admins.require(session, "test-operator")
        row, cookie = websessions.open_session(session, store.pepper, "admin", user.id, "127.0.0.1", True,
                                               utcnow(), websessions.SessionPolicy())
        csrf = row.csrf

    def call(method: str, path: str, body: Any = None, token: str | None = None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=5)
        headers = {"Cookie": f"bastion_session={cookie}", "Content-Type": "application/json"}
        if token is not None:
            headers["X-CSRF-Token"] = token
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status

    assert call("GET", "/api/v1/consumers") == 200
    assert call("POST", "/api/v1/consumers", {"name": "csrf-gina"}) == 403
    assert call("POST", "/api/v1/consumers", {"name": "csrf-gina"}, token="x" * len(csrf)) == 403
    assert gw.admin("GET", "/api/v1/consumers/csrf-gina", token=gw.admin_token("viewer"))[0] == 404
    assert call("POST", "/api/v1/consumers", {"name": "csrf-gina"}, token=csrf) == 201
    (entry,) = [e for e in _audit(gw) if e["target"] == "consumer:csrf-gina"]
    assert entry["actor"] == "test-operator" and entry["via"] == "session"
