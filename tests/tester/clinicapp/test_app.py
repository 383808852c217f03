"""CarePoint (the clinic app built blind): each flaw is exploitable when on and not when off,
and both builds serve every normal operation. Real HTTPS over loopback with httpx."""

from __future__ import annotations

import base64
import http.server
import json
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.tester.clinicapp.app import ALL_FLAWS, SEED_USERS, SPEC_PATH, create_app
from tests.tester.clinicapp.server import RunningClinic, serve_clinic

ALICE, BOB, ADMIN = ((email, password) for email, password, _ in SEED_USERS)


@contextmanager
def clinic(*flaws: str) -> Iterator[tuple[RunningClinic, httpx.Client]]:
    with serve_clinic(flaws) as running:
        context = ssl.create_default_context(cafile=str(running.ca_file))
        with httpx.Client(base_url=running.base_url, verify=context, timeout=10.0) as client:
            yield running, client


def token(client: httpx.Client, who: tuple[str, str]) -> str:
    response = client.post("/v2/auth/login", json={"email": who[0], "password": who[1]})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(client: httpx.Client, who: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(client, who)}"}


@contextmanager
def internal_service() -> Iterator[tuple[str, list[str]]]:
    """A plain-HTTP 'internal' service on 127.0.0.1 that records the paths it was asked for."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b'{"secret": "internal-metadata"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_flaws_md_documents_every_switch() -> None:
    """FLAWS.md has a row for each switch in the flaw table and in the scan results, and none for a ghost."""
    text = SPEC_PATH.with_name("FLAWS.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| \d+ \| `(\w+)` \|", text, flags=re.MULTILINE)
    assert sorted(documented) == sorted([*ALL_FLAWS, *ALL_FLAWS])


def test_unknown_flaw_is_refused() -> None:
    """A typo in a flaw name fails loudly instead of building a silently secure app."""
    with pytest.raises(ValueError, match="unknown flaw"):
        create_app({"bola"})


# --- each flaw, on and off ------------------------------------------------------------------

@pytest.mark.parametrize("on", [True, False])
def test_bola_records(on: bool) -> None:
    """Alice reads Bob's medical record through /patients/{Bob}/records/{id} only when the flaw is on."""
    with clinic(*(["bola_records"] if on else [])) as (running, client):
        bob_id = running.state.user_id(BOB[0])
        record_id = running.state.db.execute("SELECT id FROM records WHERE patient_id = ?", (bob_id,)).fetchone()[0]
        response = client.get(f"/v2/patients/{bob_id}/records/{record_id}", headers=bearer(client, ALICE))
        if on:
            assert response.status_code == 200
            assert response.json()["notes"] == f"Private notes about {BOB[0]}."
        else:
            assert response.status_code == 403
            assert "notes" not in response.text


@pytest.mark.parametrize("on", [True, False])
def test_mass_assignment(on: bool) -> None:
    """Registration and PATCH /me store ``role: admin`` (and so open the admin area) only when the flaw is on."""
    with clinic(*(["mass_assignment"] if on else [])) as (_, client):
        who = ("mallory@example.com", "mallory-Passw0rd")
        created = client.post("/v2/auth/register", json={"email": who[0], "password": who[1], "full_name": "M",
                                                         "role": "admin"})
        assert created.status_code == 201
        assert created.json()["role"] == ("admin" if on else "patient")
        assert client.get("/v2/admin/users", headers=bearer(client, who)).status_code == (200 if on else 403)
        patched = client.patch("/v2/me", json={"role": "admin"}, headers=bearer(client, ALICE))
        assert patched.status_code == 200
        assert patched.json()["role"] == ("admin" if on else "patient")


@pytest.mark.parametrize("on", [True, False])
def test_doctor_secrets(on: bool) -> None:
    """GET /doctors/{id} (no login) shows the doctor's password hash and TOTP secret only when the flaw is on."""
    with clinic(*(["doctor_secrets"] if on else [])) as (_, client):
        doctor_id = client.get("/v2/doctors").json()["data"][0]["id"]
        doctor = client.get(f"/v2/doctors/{doctor_id}").json()
        if on:
            assert doctor["password_hash"].startswith("pbkdf2_sha256$")
            assert doctor["totp_secret"]
        else:
            assert set(doctor) == {"id", "name", "specialty", "clinic_id", "bio"}


@pytest.mark.parametrize("on", [True, False])
def test_admin_users_any_role(on: bool) -> None:
    """A patient lists every account at GET /admin/users only when the flaw is on; the admin always can."""
    with clinic(*(["admin_users_any_role"] if on else [])) as (_, client):
        as_patient = client.get("/v2/admin/users", headers=bearer(client, ALICE))
        assert as_patient.status_code == (200 if on else 403)
        if on:
            assert ADMIN[0] in {user["email"] for user in as_patient.json()["data"]}
        assert client.get("/v2/admin/users", headers=bearer(client, ADMIN)).status_code == 200


@pytest.mark.parametrize("on", [True, False])
def test_login_no_limit(on: bool) -> None:
    """Ten wrong passwords in a row are all just 401 when the flaw is on; off, the account locks (429)."""
    with clinic(*(["login_no_limit"] if on else [])) as (_, client):
        statuses = [client.post("/v2/auth/login", json={"email": ALICE[0], "password": f"guess-{n}"}).status_code
                    for n in range(10)]
        right = client.post("/v2/auth/login", json={"email": ALICE[0], "password": ALICE[1]})
        if on:
            assert statuses == [401] * 10
            assert right.status_code == 200
        else:
            assert statuses == [401] * 5 + [429] * 5
            assert right.status_code == 429
            assert right.headers["retry-after"] == "60"


@pytest.mark.parametrize("on", [True, False])
def test_avatar_ssrf(on: bool) -> None:
    """The avatar import fetches an internal http://127.0.0.1 service only when the flaw is on."""
    with clinic(*(["avatar_ssrf"] if on else [])) as (_, client), internal_service() as (internal, hits):
        response = client.post("/v2/me/avatar", json={"image_url": f"{internal}/latest/meta-data"},
                               headers=bearer(client, ALICE))
        if on:
            assert response.status_code == 201
            assert response.json()["content_type"] == "application/json"
            assert hits == ["/latest/meta-data"]
        else:
            assert response.status_code == 422
            assert hits == []


@pytest.mark.parametrize("on", [True, False])
def test_doctor_search_sqli(on: bool) -> None:
    """The doctor search's q and specialty run as SQL (a UNION reads the users' password hashes) only when
    the flaw is on."""
    with clinic(*(["doctor_search_sqli"] if on else [])) as (_, client):
        by_specialty = client.get("/v2/doctors", params={"specialty": "none' OR '1'='1"})
        assert by_specialty.json()["meta"]["total"] == (2 if on else 0)
        everything = client.get("/v2/doctors", params={"q": "zz%' OR 1=1 --"})
        union = client.get("/v2/doctors", params={
            "q": "zz' UNION SELECT email, password_hash, role, 0 FROM users WHERE role = 'admin' --"})
        assert everything.status_code == union.status_code == 200
        if on:
            assert everything.json()["meta"]["total"] == 2
            assert union.json()["data"][0]["id"] == ADMIN[0]
            assert union.json()["data"][0]["name"].startswith("pbkdf2_sha256$")
        else:
            assert everything.json()["data"] == union.json()["data"] == []


def _unsigned(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize("on", [True, False])
def test_jwt_alg_none(on: bool) -> None:
    """An unsigned (alg none) token naming the admin is accepted only when the flaw is on."""
    with clinic(*(["jwt_alg_none"] if on else [])) as (running, client):
        forged = _unsigned({"sub": running.state.user_id(ADMIN[0]), "exp": 4_000_000_000, "typ": "access"})
        response = client.get("/v2/me", headers={"Authorization": f"Bearer {forged}"})
        if on:
            assert response.status_code == 200
            assert response.json()["role"] == "admin"
        else:
            assert response.status_code == 401


@pytest.mark.parametrize("on", [True, False])
def test_slots_page_unbounded(on: bool) -> None:
    """GET /clinics/1/slots honours page_size=150 (any size) only when the flaw is on; off, 100 is the maximum."""
    with clinic(*(["slots_page_unbounded"] if on else [])) as (_, client):
        response = client.get("/v2/clinics/1/slots", params={"page_size": 150})
        if on:
            assert response.status_code == 200
            assert len(response.json()["data"]) == 150
        else:
            assert response.status_code == 400
            assert "at most 100" in response.json()["detail"]


@pytest.mark.parametrize("on", [True, False])
def test_verbose_errors(on: bool) -> None:
    """A bad date filter answers a 500 with the Python traceback only when the flaw is on; off, a 400 problem."""
    with clinic(*(["verbose_errors"] if on else [])) as (_, client):
        response = client.get("/v2/appointments", params={"date": "yesterday"}, headers=bearer(client, ALICE))
        if on:
            assert response.status_code == 500
            assert "Traceback" in response.text and "fromisoformat" in response.text
        else:
            assert response.status_code == 400
            assert response.headers["content-type"] == "application/problem+json"


def test_unexpected_errors_are_generic_without_verbose_errors() -> None:
    """With the SQL injection on but verbose errors off, a broken statement is a bare problem+json 500."""
    with clinic("doctor_search_sqli") as (_, client):
        response = client.get("/v2/doctors", params={"q": "'"})
        assert response.status_code == 500
        assert response.json()["detail"] == "Something went wrong; the error was logged."
        assert "sqlite" not in response.text.lower()


@pytest.mark.parametrize("on", [True, False])
def test_cors_any_origin(on: bool) -> None:
    """Any Origin is echoed back with credentials allowed only when the flaw is on; off, only the portal's."""
    with clinic(*(["cors_any_origin"] if on else [])) as (_, client):
        headers = bearer(client, ALICE) | {"Origin": "https://evil.example"}
        response = client.get("/v2/me", headers=headers)
        preflight = client.options("/v2/me", headers={"Origin": "https://evil.example",
                                                      "Access-Control-Request-Method": "PATCH"})
        if on:
            assert response.headers["access-control-allow-origin"] == "https://evil.example"
            assert response.headers["access-control-allow-credentials"] == "true"
            assert preflight.status_code == 200
        else:
            assert "access-control-allow-origin" not in response.headers
            assert preflight.status_code == 400
        portal = client.get("/v2/health", headers={"Origin": "https://portal.carepoint.example"})
        assert portal.headers["access-control-allow-origin"] == "https://portal.carepoint.example"


@pytest.mark.parametrize("on", [True, False])
def test_legacy_v1_open(on: bool) -> None:
    """GET /v1/patients/{id} shows a patient's contact data without any login only when the flaw is on."""
    with clinic(*(["legacy_v1_open"] if on else [])) as (running, client):
        response = client.get(f"/v1/patients/{running.state.user_id(ALICE[0])}")
        if on:
            assert response.status_code == 200
            assert response.json()["email"] == ALICE[0]
        else:
            assert response.status_code == 410


# --- normal operations, on both builds --------------------------------------------------------

def _normal_operations(running: RunningClinic, client: httpx.Client) -> None:
    assert client.get("/v2/health").json() == {"status": "ok"}
    assert client.get("/v2/me").status_code == 401
    assert client.get("/v2/me").headers["content-type"] == "application/problem+json"

    created = client.post("/v2/auth/register", json={"email": "jane@example.com", "password": "jane-Passw0rd",
                                                     "full_name": "Jane Doe", "phone": "+33 6 11"})
    assert created.status_code == 201 and created.headers["location"] == "/v2/me"
    assert created.json()["role"] == "patient"
    assert client.post("/v2/auth/register", json={"email": "jane@example.com", "password": "x" * 9,
                                                  "full_name": "J"}).status_code == 409
    tokens = client.post("/v2/auth/login", json={"email": "jane@example.com", "password": "jane-Passw0rd"}).json()
    jane = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/v2/me", headers=jane).json()["full_name"] == "Jane Doe"
    refreshed = client.post("/v2/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert client.post("/v2/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    jane = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    patched = client.patch("/v2/me", json={"full_name": "Jane Q. Doe"}, headers=jane)
    assert patched.status_code == 200 and patched.json()["full_name"] == "Jane Q. Doe"
    assert client.post("/v2/auth/login", json={"email": ALICE[0], "password": "wrong"}).status_code == 401

    clinics = client.get("/v2/clinics").json()
    assert [c["id"] for c in clinics["data"]] == [1, 2] and clinics["meta"]["total"] == 2
    assert client.get("/v2/clinics/2").json()["city"] == "Lyon"
    assert client.get("/v2/clinics/9").status_code == 404
    slots = client.get("/v2/clinics/1/slots", params={"page": 2, "page_size": 50}).json()
    assert len(slots["data"]) == 50 and slots["meta"]["total"] == 150 and "page=3" in slots["links"]["next"]
    house = client.get("/v2/doctors", params={"q": "hous"}).json()["data"]
    assert [d["name"] for d in house] == ["Gregory House"]
    assert client.get("/v2/doctors", params={"specialty": "surgery"}).json()["data"][0]["name"] == "Meredith Grey"
    doctor = client.get(f"/v2/doctors/{house[0]['id']}").json()
    assert {"id": doctor["id"], "specialty": doctor["specialty"]} == {"id": house[0]["id"], "specialty": "diagnostics"}

    alice, bob = bearer(client, ALICE), bearer(client, BOB)
    booked = client.post("/v2/appointments", json={"slot_id": 40, "reason": "Check-up"}, headers=alice)
    assert booked.status_code == 201
    location = booked.headers["location"]
    assert client.get(location, headers=alice).json()["reason"] == "Check-up"
    assert client.post("/v2/appointments", json={"slot_id": 40, "reason": "x"}, headers=bob).status_code == 409
    assert client.get(location, headers=bob).status_code == 404
    mine = client.get("/v2/appointments", headers=alice).json()
    assert mine["meta"]["total"] == 2
    on_day = client.get("/v2/appointments", params={"date": "2027-01-05"}, headers=alice).json()
    assert [a["id"] for a in on_day["data"]] == [booked.json()["id"]]
    assert client.delete(location, headers=alice).status_code == 204
    assert client.get(location, headers=alice).json()["status"] == "cancelled"

    alice_id, bob_id = running.state.user_id(ALICE[0]), running.state.user_id(BOB[0])
    records = client.get(f"/v2/patients/{alice_id}/records", headers=alice).json()
    assert records["meta"]["total"] == 2
    record = client.get(f"/v2/patients/{alice_id}/records/{records['data'][0]['id']}", headers=alice)
    assert record.json() == records["data"][0]
    assert client.get(f"/v2/patients/{bob_id}/records", headers=alice).status_code == 403
    export = client.get(f"/v2/patients/{alice_id}/records/export", headers=alice)
    assert export.headers["content-type"].startswith("text/csv") and "seasonal allergy" in export.text
    assert client.get(f"/v2/patients/{alice_id}/records/export").status_code == 401
    assert client.get(f"/v2/patients/{bob_id}/records/export", headers=alice).status_code == 403

    admin = bearer(client, ADMIN)
    assert client.get("/v2/admin/users", headers=admin).json()["meta"]["total"] == 6
    report = client.get("/v2/admin/exports/appointments.csv", headers=admin)
    assert report.status_code == 200 and ALICE[0] in report.text
    assert client.get("/v2/admin/exports/appointments.csv", headers=alice).status_code == 403
    assert client.get("/v2/admin/exports/appointments.csv").status_code == 401
    assert client.get(f"/v2/patients/{bob_id}/records", headers=admin).json()["meta"]["total"] == 2


@pytest.mark.parametrize("build", ["secure", "vulnerable"])
def test_normal_operations(build: str) -> None:
    """Every documented operation works for its rightful users, and refuses strangers, in both builds."""
    with clinic(*(ALL_FLAWS if build == "vulnerable" else ())) as (running, client):
        _normal_operations(running, client)


def test_secure_twin_refuses_forged_and_expired_access() -> None:
    """The secure twin refuses a tampered token, a refresh token used as an access token and garbage."""
    with clinic() as (_, client):
        login = client.post("/v2/auth/login", json={"email": ALICE[0], "password": ALICE[1]}).json()
        header, payload, signature = login["access_token"].split(".")
        tampered = f"{header}.{payload}.{signature[:-2]}AA"
        for value in (tampered, login["refresh_token"], "not-a-jwt"):
            assert client.get("/v2/me", headers={"Authorization": f"Bearer {value}"}).status_code == 401


