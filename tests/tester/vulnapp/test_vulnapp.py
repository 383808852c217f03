"""The vulnerable app: each seeded flaw is there when its switch is on and gone when it is off.

Every test talks to a real app served by uvicorn on loopback through httpx, so what these
tests prove is what ``bastion scan`` will see on the wire.
"""

from __future__ import annotations

import http.server
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import yaml

from tests.tester.vulnapp import ALL_FLAWS, SPEC_PATH, VulnApp, create_app, serve_vulnapp
from tests.tester.vulnapp.app import DOCS_DIR, SEED_USERS, WEAK_JWT_SECRET
from tests.tester.vulnapp.tokens import b64url_decode, b64url_encode, sign

PASSWORDS = {name: password for name, password, _ in SEED_USERS}
ON_OFF = pytest.mark.parametrize("on", [True, False], ids=["on", "off"])
FLAWS_MD = SPEC_PATH.with_name("FLAWS.md")


@contextmanager
def client_for(flaws: set[str] | frozenset[str], *, tls: bool = False) -> Iterator[tuple[VulnApp, httpx.Client]]:
    with serve_vulnapp(flaws, tls=tls) as app:
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=app.ca_file) if app.ca_file else True
        with httpx.Client(base_url=app.base_url, timeout=10, verify=verify, trust_env=False) as client:
            yield app, client


def flaws_if(on: bool, *flaws: str) -> set[str]:
    return set(flaws) if on else set()


def login(client: httpx.Client, username: str, password: str | None = None) -> str:
    response = client.post("/auth/login", json={"username": username, "password": password or PASSWORDS[username]})
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims_of(token: str) -> dict[str, Any]:
    claims = json.loads(b64url_decode(token.split(".")[1]))
    assert isinstance(claims, dict)
    return claims


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{b64url_encode(json.dumps(header).encode())}.{b64url_encode(json.dumps(claims).encode())}.{signature}"


# --------------------------------------------------------------------------- the catalogue


def test_create_app_rejects_unknown_flaws() -> None:
    """An unknown switch name is a ValueError that names it, never silently ignored."""
    with pytest.raises(ValueError, match="no_such_flaw"):
        create_app({"bola", "no_such_flaw"})


def test_every_flaw_is_documented() -> None:
    """FLAWS.md has one section per switch, and no section for a switch that does not exist."""
    sections = set(re.findall(r"^## `([a-z_]+)`", FLAWS_MD.read_text(), flags=re.M))
    assert sections == ALL_FLAWS


def test_spec_operations_are_complete_and_served() -> None:
    """Every operation in openapi.yaml has an operationId, summary, security and a 429, and the app serves it."""
    spec = yaml.safe_load(SPEC_PATH.read_text())
    assert spec["openapi"].startswith("3.1")
    assert [server["url"] for server in spec["servers"]] == ["/v2"]
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "put", "post", "patch", "delete"}
    ]
    assert len(operations) == 18
    public = [op["operationId"] for _, _, op in operations if op.get("security") == []]
    assert public == ["login"]
    with client_for(set()) as (_, client):
        token = login(client, "root")
        for path, method, op in operations:
            assert op["operationId"] and op["summary"] and "429" in op["responses"]
            concrete = path.replace("{orderId}", "999").replace("{userId}", "999")
            response = client.request(method.upper(), concrete, headers=bearer(token))
            assert response.status_code not in (404, 405) or "No such" in response.text, (method, path)


def test_secure_app_basics() -> None:
    """With no flaws: unknown paths 404, undeclared methods and TRACE 405 with Allow, all as problem+json."""
    with client_for(set()) as (_, client):
        token = login(client, "alice")
        missing = client.get("/nothing-here", headers=bearer(token))
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        for method in ("TRACE", "DELETE", "OPTIONS"):
            refused = client.request(method, "/products", headers=bearer(token))
            assert refused.status_code == 405, method
            assert refused.headers["allow"] == "GET, HEAD"
        assert client.get("/orders", headers=bearer(token)).json()["total"] == 3


def test_tls_serving_trusts_the_ca_file_and_sends_hsts() -> None:
    """``tls=True`` serves HTTPS with a certificate trusted through ``ca_file``; HSTS is sent there only."""
    with client_for(set(), tls=True) as (app, client):
        assert app.base_url.startswith("https://127.0.0.1:") and app.base_url.endswith("/v2")
        response = client.post("/auth/login", json={"username": "bob", "password": PASSWORDS["bob"]})
        assert response.status_code == 200
        assert response.headers["strict-transport-security"].startswith("max-age=")
    with client_for(set()) as (_, client):
        assert "strict-transport-security" not in client.get("/products").headers


# --------------------------------------------------------------------------- API1


@ON_OFF
def test_bola(on: bool) -> None:
    """bola: bob reads, changes and deletes alice's order 1; off, each answers 404."""
    with client_for(flaws_if(on, "bola")) as (_, client):
        bob = bearer(login(client, "bob"))
        read = client.get("/orders/1", headers=bob)
        change = client.put("/orders/1", headers=bob, json={"items": [{"product_id": 1, "quantity": 1}]})
        delete = client.delete("/orders/1", headers=bob)
        assert [read.status_code, change.status_code, delete.status_code] == ([200, 200, 204] if on else [404] * 3)
        alice = bearer(login(client, "alice"))
        assert client.get("/orders/1", headers=alice).status_code == (404 if on else 200)


# --------------------------------------------------------------------------- API2


@ON_OFF
def test_missing_auth(on: bool) -> None:
    """missing_auth: GET /reports answers without credentials; off it is 401 with a Bearer challenge."""
    with client_for(flaws_if(on, "missing_auth")) as (_, client):
        response = client.get("/reports")
        assert response.status_code == (200 if on else 401)
        if not on:
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/orders").status_code == 401


@ON_OFF
def test_jwt_alg_none(on: bool) -> None:
    """jwt_alg_none: an unsigned token (alg none, empty signature) is accepted; off 401."""
    with client_for(flaws_if(on, "jwt_alg_none")) as (_, client):
        claims = claims_of(login(client, "bob"))
        token = unsigned({"alg": "none", "typ": "JWT"}, claims)
        assert client.get("/users/me", headers=bearer(token)).status_code == (200 if on else 401)


@ON_OFF
def test_jwt_signature_ignored(on: bool) -> None:
    """jwt_signature_ignored: tokens signed with a wrong key, or labelled RS256, are accepted; off 401."""
    with client_for(flaws_if(on, "jwt_signature_ignored")) as (_, client):
        claims = claims_of(login(client, "bob"))
        wrong_key = sign({**claims, "sub": "3"}, b"not-the-key")
        swapped = unsigned({"alg": "RS256", "typ": "JWT"}, claims, b64url_encode(b"x" * 256))
        for token in (wrong_key, swapped):
            assert client.get("/users/me", headers=bearer(token)).status_code == (200 if on else 401)
        if on:
            assert client.get("/users/me", headers=bearer(wrong_key)).json()["username"] == "root"


@ON_OFF
def test_jwt_expiry_ignored(on: bool) -> None:
    """jwt_expiry_ignored: a correctly signed token that expired an hour ago is accepted; off 401.

    The weak secret is on in both runs so the test can sign the expired token itself.
    """
    with client_for({"jwt_weak_secret", *flaws_if(on, "jwt_expiry_ignored")}) as (_, client):
        claims = claims_of(login(client, "bob"))
        expired = sign({**claims, "iat": claims["iat"] - 7200, "exp": int(time.time()) - 3600}, WEAK_JWT_SECRET)
        response = client.get("/users/me", headers=bearer(expired))
        assert response.status_code == (200 if on else 401)


@ON_OFF
def test_jwt_weak_secret(on: bool) -> None:
    """jwt_weak_secret: tokens are signed with "changeme", so a forged admin token works; off it does not."""
    with client_for(flaws_if(on, "jwt_weak_secret")) as (_, client):
        token = login(client, "bob")
        claims = claims_of(token)
        assert (sign(claims, WEAK_JWT_SECRET) == token) is on
        forged = sign({**claims, "sub": "3", "name": "root"}, WEAK_JWT_SECRET)
        assert client.get("/admin/users", headers=bearer(forged)).status_code == (200 if on else 401)


@ON_OFF
def test_token_in_url(on: bool) -> None:
    """token_in_url: ?access_token=<jwt> authenticates; off the query token is ignored (401)."""
    with client_for(flaws_if(on, "token_in_url")) as (_, client):
        token = login(client, "alice")
        response = client.get("/users/me", params={"access_token": token})
        assert response.status_code == (200 if on else 401)


@ON_OFF
def test_user_enumeration(on: bool) -> None:
    """user_enumeration: unknown users get 404 "unknown user", wrong passwords 401; off both get the same 401."""
    with client_for(flaws_if(on, "user_enumeration")) as (_, client):
        unknown = client.post("/auth/login", json={"username": "nobody-x7", "password": "whatever-123"})
        wrong = client.post("/auth/login", json={"username": "alice", "password": "whatever-123"})
        if on:
            assert (unknown.status_code, wrong.status_code) == (404, 401)
            assert unknown.json()["detail"] != wrong.json()["detail"]
        else:
            assert unknown.status_code == wrong.status_code == 401
            assert unknown.content == wrong.content


@ON_OFF
def test_login_no_rate_limit(on: bool) -> None:
    """login_no_rate_limit: ten failed logins all get 401; off the 6th gets 429 with Retry-After and locks the user."""
    with client_for(flaws_if(on, "login_no_rate_limit")) as (_, client):
        statuses = [
            client.post("/auth/login", json={"username": "alice", "password": f"guess-{n}"}).status_code
            for n in range(10)
        ]
        if on:
            assert statuses == [401] * 10
            login(client, "alice")
        else:
            assert statuses == [401] * 5 + [429] * 5
            locked = client.post("/auth/login", json={"username": "alice", "password": PASSWORDS["alice"]})
            assert locked.status_code == 429
            assert 1 <= int(locked.headers["retry-after"]) <= 60
            login(client, "bob")  # other users are not affected


@ON_OFF
def test_password_change_no_old(on: bool) -> None:
    """password_change_no_old: the password changes without old_password; off 400 (also for a wrong one)."""
    with client_for(flaws_if(on, "password_change_no_old")) as (_, client):
        headers = bearer(login(client, "bob"))
        response = client.put("/users/me/password", headers=headers, json={"new_password": "brand-new-pass-123"})
        assert response.status_code == (204 if on else 400)
        if on:
            login(client, "bob", "brand-new-pass-123")
        else:
            wrong = {"old_password": "not-it", "new_password": "brand-new-pass-123"}
            assert client.put("/users/me/password", headers=headers, json=wrong).status_code == 400
            right = {"old_password": PASSWORDS["bob"], "new_password": "brand-new-pass-123"}
            assert client.put("/users/me/password", headers=headers, json=right).status_code == 204


@ON_OFF
def test_password_change_other_user(on: bool) -> None:
    """password_change_other_user: bob sets alice's password with his own as old_password, and alice's login then
    takes the new one; off 403 for another user's ID, while changing your own by ID still works (old password
    required in both modes)."""
    with client_for(flaws_if(on, "password_change_other_user")) as (_, client):
        headers = bearer(login(client, "bob"))
        takeover = {"old_password": PASSWORDS["bob"], "new_password": "bob-owns-alice-now"}
        response = client.put("/users/1/password", headers=headers, json=takeover)
        assert response.status_code == (204 if on else 403)
        if on:
            login(client, "alice", "bob-owns-alice-now")
        else:
            login(client, "alice")
        assert client.put("/users/2/password", headers=headers, json={"new_password": "x" * 12}).status_code == 400
        own = {"old_password": PASSWORDS["bob"], "new_password": "bob-new-pass-42"}
        assert client.put("/users/2/password", headers=headers, json=own).status_code == 204
        login(client, "bob", "bob-new-pass-42")


@ON_OFF
def test_default_credentials(on: bool) -> None:
    """default_credentials: admin/admin signs in as an administrator; off it is refused."""
    with client_for(flaws_if(on, "default_credentials")) as (_, client):
        response = client.post("/auth/login", json={"username": "admin", "password": "admin"})
        assert response.status_code == (200 if on else 401)
        if on:
            headers = bearer(response.json()["access_token"])
            assert client.get("/users/me", headers=headers).json()["role"] == "admin"


# --------------------------------------------------------------------------- API3

USER_FIELDS = {"id", "username", "email", "display_name", "role", "created_at"}


@ON_OFF
def test_excessive_data(on: bool) -> None:
    """excessive_data: user responses add password_hash (bcrypt format) and api_token; off only the schema's fields."""
    spec_fields = set(yaml.safe_load(SPEC_PATH.read_text())["components"]["schemas"]["User"]["properties"])
    assert spec_fields == USER_FIELDS
    with client_for(flaws_if(on, "excessive_data")) as (_, client):
        headers = bearer(login(client, "alice"))
        for path in ("/users/me", "/users/1"):
            body = client.get(path, headers=headers).json()
            if on:
                assert set(body) == USER_FIELDS | {"password_hash", "api_token"}
                assert re.fullmatch(r"\$2b\$12\$[./A-Za-z0-9]{53}", body["password_hash"])
            else:
                assert set(body) == USER_FIELDS


@ON_OFF
def test_mass_assignment(on: bool) -> None:
    """mass_assignment: PATCH /users/me with the read-only role makes bob an admin; off 400 and no change."""
    with client_for(flaws_if(on, "mass_assignment")) as (_, client):
        headers = bearer(login(client, "bob"))
        response = client.patch("/users/me", headers=headers, json={"display_name": "Bobby", "role": "admin"})
        assert response.status_code == (200 if on else 400)
        assert client.get("/users/me", headers=headers).json()["role"] == ("admin" if on else "user")
        assert client.get("/admin/users", headers=headers).status_code == (200 if on else 403)
        unknown = client.patch("/users/me", headers=headers, json={"is_admin": True})
        assert unknown.status_code == 400
        assert client.patch("/users/me", headers=headers, json={"display_name": "Bob B."}).status_code == 200


# --------------------------------------------------------------------------- API4


@ON_OFF
def test_no_rate_limit(on: bool) -> None:
    """no_rate_limit: 60 quick GET /products all succeed; off the 51st gets 429 with Retry-After."""
    with client_for(flaws_if(on, "no_rate_limit")) as (_, client):
        headers = bearer(login(client, "alice"))
        responses = [client.get("/products", headers=headers) for _ in range(60)]
        statuses = [r.status_code for r in responses]
        if on:
            assert statuses == [200] * 60
        else:
            assert statuses == [200] * 50 + [429] * 10
            assert 1 <= int(responses[-1].headers["retry-after"]) <= 10
            assert responses[0].headers["ratelimit-policy"] == "50;w=10"
            # Another identity has its own budget.
            assert client.get("/products", headers=bearer(login(client, "bob"))).status_code == 200


@ON_OFF
def test_unbounded_page_size(on: bool) -> None:
    """unbounded_page_size: /products?limit=100000 is accepted; off 400 above the declared maximum of 100."""
    with client_for(flaws_if(on, "unbounded_page_size")) as (_, client):
        headers = bearer(login(client, "alice"))
        assert client.get("/products", headers=headers, params={"limit": 100}).status_code == 200
        response = client.get("/products", headers=headers, params={"limit": 100000})
        assert response.status_code == (200 if on else 400)


@ON_OFF
def test_large_payload(on: bool) -> None:
    """large_payload: a 200 KiB order note is accepted; off 413. The item count stays bounded either way (that is
    unbounded_arrays)."""
    with client_for(flaws_if(on, "large_payload")) as (_, client):
        headers = bearer(login(client, "alice"))
        big = {"items": [{"product_id": 1, "quantity": 1}], "note": "x" * 200_000}
        assert client.post("/orders", headers=headers, json=big).status_code == (201 if on else 413)
        many = {"items": [{"product_id": 1, "quantity": 1}] * 500}
        assert client.post("/orders", headers=headers, json=many).status_code == 400


@ON_OFF
def test_unbounded_arrays(on: bool) -> None:
    """unbounded_arrays: 500 order items (a ~15 KiB body) are stored by POST and PUT; off 400 past 20 items, while
    20 items are fine in both modes."""
    with client_for(flaws_if(on, "unbounded_arrays")) as (_, client):
        headers = bearer(login(client, "alice"))
        twenty = {"items": [{"product_id": 1, "quantity": 1}] * 20}
        assert client.post("/orders", headers=headers, json=twenty).status_code == 201
        many = {"items": [{"product_id": 1, "quantity": 1}] * 500}
        created = client.post("/orders", headers=headers, json=many)
        assert created.status_code == (201 if on else 400)
        if on:
            assert len(created.json()["items"]) == 500
        assert client.put("/orders/1", headers=headers, json=many).status_code == (200 if on else 400)


# --------------------------------------------------------------------------- API5


@ON_OFF
def test_bfla(on: bool) -> None:
    """bfla: bob lists all users and deletes one through the admin API; off both are 403 (root may)."""
    with client_for(flaws_if(on, "bfla")) as (_, client):
        bob = bearer(login(client, "bob"))
        assert client.get("/admin/users", headers=bob).status_code == (200 if on else 403)
        assert client.delete("/admin/users/1", headers=bob).status_code == (204 if on else 403)
        root = bearer(login(client, "root"))
        assert client.get("/admin/users", headers=root).status_code == 200


# --------------------------------------------------------------------------- API7


class _CanaryHandler(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def _answer(self) -> None:
        self.hits.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def canary() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Canary", (_CanaryHandler,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook-7f3a", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@ON_OFF
def test_ssrf(on: bool) -> None:
    """ssrf: /webhooks/test fetches a loopback URL (the canary sees it); off 400 and the canary hears nothing."""
    with client_for(flaws_if(on, "ssrf")) as (_, client), canary() as (url, hits):
        headers = bearer(login(client, "alice"))
        response = client.post("/webhooks/test", headers=headers, json={"url": url})
        assert response.status_code == (200 if on else 400)
        assert hits == (["POST /hook-7f3a"] if on else [])
        if on:
            assert response.json() == {"delivered": True, "status_code": 200}
        else:
            for other in (
                "http://10.0.0.1/",
                "http://169.254.169.254/latest/meta-data/",
                "http://[::1]/",
                "file:///etc/passwd",
            ):
                assert client.post("/webhooks/test", headers=headers, json={"url": other}).status_code == 400


# --------------------------------------------------------------------------- API8

SECURITY_HEADERS = (
    "x-content-type-options",
    "x-frame-options",
    "content-security-policy",
    "referrer-policy",
    "cache-control",
)


@ON_OFF
def test_missing_security_headers(on: bool) -> None:
    """missing_security_headers: responses lack nosniff/CSP/frame-options/no-store; off every response has them."""
    with client_for(flaws_if(on, "missing_security_headers")) as (_, client):
        headers = bearer(login(client, "alice"))
        for response in (
            client.get("/products", headers=headers),
            client.get("/products"),
            client.get("/nowhere"),
            client.request("TRACE", "/products"),
        ):
            present = [name for name in SECURITY_HEADERS if name in response.headers]
            assert present == ([] if on else list(SECURITY_HEADERS)), response.status_code
        assert "server" not in client.get("/products").headers


@ON_OFF
def test_cors_reflect(on: bool) -> None:
    """cors_reflect: any Origin is echoed with credentials allowed (also on preflight); off no CORS headers for it."""
    evil = "https://evil.example"
    with client_for(flaws_if(on, "cors_reflect")) as (_, client):
        headers = bearer(login(client, "alice"))
        response = client.get("/users/me", headers={**headers, "Origin": evil})
        preflight = client.options(
            "/users/me",
            headers={
                "Origin": evil,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        if on:
            assert response.headers["access-control-allow-origin"] == evil
            assert response.headers["access-control-allow-credentials"] == "true"
            assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == evil
        else:
            assert "access-control-allow-origin" not in response.headers
            assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers
            own = client.get("/users/me", headers={**headers, "Origin": "https://shop.example.com"})
            assert own.headers["access-control-allow-origin"] == "https://shop.example.com"


@ON_OFF
def test_verbose_errors(on: bool) -> None:
    """verbose_errors: a bad integer or malformed JSON gives 500 with a Python traceback; off a generic 400."""
    with client_for(flaws_if(on, "verbose_errors")) as (_, client):
        headers = bearer(login(client, "alice"))
        bad_int = client.get("/products", headers=headers, params={"limit": "abc"})
        json_headers = {**headers, "Content-Type": "application/json"}
        bad_json = client.post("/orders", headers=json_headers, content=b'{"items": [')
        for response in (bad_int, bad_json):
            if on:
                assert response.status_code == 500
                assert "Traceback (most recent call last)" in response.text
            else:
                assert response.status_code == 400
                assert response.headers["content-type"] == "application/problem+json"
                assert "Traceback" not in response.text and ".py" not in response.text


@ON_OFF
def test_debug_endpoint(on: bool) -> None:
    """debug_endpoint: GET /debug/vars (outside the spec and /v2) shows secrets without auth; off 404."""
    with client_for(flaws_if(on, "debug_endpoint")) as (app, client):
        response = client.get(f"{app.origin}/debug/vars")
        assert response.status_code == (200 if on else 404)
        if on:
            assert "jwt_secret" in response.json()["config"]


@ON_OFF
def test_trace_enabled(on: bool) -> None:
    """trace_enabled: TRACE echoes the request, credentials included; off 405."""
    with client_for(flaws_if(on, "trace_enabled")) as (_, client):
        response = client.request("TRACE", "/products", headers={"Authorization": "Bearer echo-me"})
        assert response.status_code == (200 if on else 405)
        if on:
            assert response.headers["content-type"].startswith("message/http")
            assert response.text.startswith("TRACE /v2/products HTTP/1.1")
            assert "authorization: Bearer echo-me" in response.text


@ON_OFF
def test_sqli(on: bool) -> None:
    """sqli: a quote gives a SQLite error, and true/false conditions change the result; off neither."""
    with client_for(flaws_if(on, "sqli")) as (_, client):
        headers = bearer(login(client, "alice"))

        def search(text: str) -> httpx.Response:
            return client.get("/products", headers=headers, params={"search": text})

        quote = search("mug'")
        true = search("zzz%' OR 1=1 AND '%'='")
        false = search("zzz%' OR 1=2 AND '%'='")
        assert search("mug").json()["items"][0]["name"] == "Travel mug"
        if on:
            assert quote.status_code == 500 and "sqlite3.OperationalError" in quote.text
            assert len(true.json()["items"]) == 8 and false.json()["items"] == []
            assert len(search("zzz' OR 1=1 --").json()["items"]) == 8
        else:
            assert quote.status_code == 200 and quote.json()["items"] == []
            assert true.json()["items"] == false.json()["items"] == []


@ON_OFF
def test_nosqli(on: bool) -> None:
    """nosqli: {"password": {"$ne": null}} signs in as alice; off operator objects are 400."""
    with client_for(flaws_if(on, "nosqli")) as (_, client):
        response = client.post("/auth/login", json={"username": "alice", "password": {"$ne": None}})
        assert response.status_code == (200 if on else 400)
        if on:
            assert claims_of(response.json()["access_token"])["name"] == "alice"
            wrong = client.post("/auth/login", json={"username": "alice", "password": {"$eq": "nope"}})
            assert wrong.status_code == 401


@ON_OFF
def test_cmdi(on: bool) -> None:
    """cmdi: host=example.com;sleep 1 (and $(sleep 1)) delays the answer; off 400 without delay."""
    with client_for(flaws_if(on, "cmdi")) as (_, client):
        headers = bearer(login(client, "alice"))
        baseline = client.get("/tools/ping", headers=headers, params={"host": "example.com"})
        assert baseline.status_code == 200
        for payload in ("example.com;sleep 1", "$(sleep 1)"):
            started = time.monotonic()
            response = client.get("/tools/ping", headers=headers, params={"host": payload})
            elapsed = time.monotonic() - started
            assert response.status_code == (200 if on else 400)
            assert (elapsed >= 1.0) is on, elapsed


@ON_OFF
def test_path_traversal(on: bool) -> None:
    """path_traversal: name=../../../../etc/passwd reads /etc/passwd; off 400. Plain documents work in both."""
    with client_for(flaws_if(on, "path_traversal")) as (_, client):
        headers = bearer(login(client, "alice"))
        doc = client.get("/files", headers=headers, params={"name": "welcome.txt"})
        assert doc.json()["content"] == (DOCS_DIR / "welcome.txt").read_text()
        response = client.get("/files", headers=headers, params={"name": "../../../../etc/passwd"})
        assert response.status_code == (200 if on else 400)
        if on:
            assert "root:" in response.json()["content"]


# --------------------------------------------------------------------------- API9


@ON_OFF
def test_old_version(on: bool) -> None:
    """old_version: /v1/products still answers (200 with a token); off 404."""
    with client_for(flaws_if(on, "old_version")) as (app, client):
        headers = bearer(login(client, "alice"))
        assert client.get(f"{app.origin}/v1/products", headers=headers).status_code == (200 if on else 404)


@ON_OFF
def test_shadow_endpoint(on: bool) -> None:
    """shadow_endpoint: GET /v2/internal/export (not in the spec) dumps every user without auth; off 404."""
    with client_for(flaws_if(on, "shadow_endpoint")) as (_, client):
        response = client.get("/internal/export")
        assert response.status_code == (200 if on else 404)
        if on:
            assert {u["username"] for u in response.json()["users"]} == set(PASSWORDS)
