"""CarePoint, a small clinic-appointments API (Starlette + SQLite) with switchable flaws.

Built without reading the scanner, to measure it the way an unknown target would. The
OpenAPI document (``openapi.yaml``) is written the way product teams write them, sloppiness
included; ``FLAWS.md`` lists each flaw, its OWASP API Top 10 (2023) class and a curl to
reproduce it.

Seeded accounts (password login, ``POST /v2/auth/login`` with a JSON body)::

    alice@carepoint.example   alice-Passw0rd!   patient
    bob@carepoint.example     bob-Passw0rd!     patient
    admin@carepoint.example   admin-Passw0rd!   admin

Doctors (``role: doctor``) exist too, without a documented password. Each patient has two
medical records and one booked appointment; two clinics offer 150 slots each.

``create_app(ALL_FLAWS)`` is the vulnerable build, ``create_app()`` the secure twin.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import json
import secrets
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["ALL_FLAWS", "SEED_USERS", "SPEC_PATH", "Clinic", "create_app"]

SPEC_PATH = Path(__file__).resolve().with_name("openapi.yaml")

#: Every switchable flaw; FLAWS.md describes each.
ALL_FLAWS = frozenset({
    "bola_records",          # API1: another patient's record through the nested path
    "mass_assignment",       # API3: register / PATCH /me store any user column (role!)
    "doctor_secrets",        # API3: a doctor's password hash and TOTP secret in GET /doctors/{id}
    "admin_users_any_role",  # API5: GET /admin/users for any logged-in user
    "login_no_limit",        # API4: unlimited failed logins
    "avatar_ssrf",           # API7: the avatar import fetches any URL, internal ones included
    "doctor_search_sqli",    # API8: the doctor search's q goes into the SQL text
    "jwt_alg_none",          # API2: access tokens with alg "none" are accepted
    "slots_page_unbounded",  # API4: page_size without a maximum
    "verbose_errors",        # API8: tracebacks in 500 responses
    "cors_any_origin",       # API8: any Origin reflected with credentials
    "legacy_v1_open",        # API9: GET /v1/patients/{id} still answers, without auth
})

#: Documented logins: (email, password, role).
SEED_USERS = (
    ("alice@carepoint.example", "alice-Passw0rd!", "patient"),
    ("bob@carepoint.example", "bob-Passw0rd!", "patient"),
    ("admin@carepoint.example", "admin-Passw0rd!", "admin"),
)

ACCESS_TTL = 900
LOGIN_FAILURES_ALLOWED = 5
LOGIN_LOCK_SECONDS = 60
PAGE_SIZE_MAX = 100
PORTAL_ORIGIN = "https://portal.carepoint.example"
USER_COLUMNS = ("email", "password_hash", "full_name", "phone", "date_of_birth", "role", "is_active", "totp_secret")
PUBLIC_USER_FIELDS = ("id", "email", "full_name", "phone", "date_of_birth", "role")

SCHEMA = """
CREATE TABLE users (
    id TEXT PRIMARY KEY, email TEXT UNIQUE NOT NULL, password_hash TEXT NOT NULL, full_name TEXT NOT NULL,
    phone TEXT, date_of_birth TEXT, role TEXT NOT NULL DEFAULT 'patient' CHECK (role IN ('patient','doctor','admin')),
    is_active INTEGER NOT NULL DEFAULT 1, totp_secret TEXT, created_at TEXT NOT NULL);
CREATE TABLE clinics (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, phone TEXT NOT NULL);
CREATE TABLE doctors (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), clinic_id INTEGER NOT NULL REFERENCES clinics(id),
    specialty TEXT NOT NULL, bio TEXT NOT NULL);
CREATE TABLE slots (
    id INTEGER PRIMARY KEY, clinic_id INTEGER NOT NULL, doctor_id TEXT NOT NULL, starts_at TEXT NOT NULL,
    available INTEGER NOT NULL DEFAULT 1);
CREATE TABLE appointments (
    id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, slot_id INTEGER NOT NULL, reason TEXT NOT NULL,
    status TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE records (
    id INTEGER PRIMARY KEY, patient_id TEXT NOT NULL, doctor_id TEXT NOT NULL, visit_date TEXT NOT NULL,
    diagnosis TEXT NOT NULL, notes TEXT NOT NULL);
CREATE TABLE refresh_tokens (token TEXT PRIMARY KEY, user_id TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
"""


class ApiError(Exception):
    """An expected client error, answered as problem+json."""

    def __init__(self, status: int, title: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.headers = dict(headers or {})


def hash_password(password: str, salt: str | None = None) -> str:
    """PBKDF2 (few rounds: a test app) in the ``pbkdf2_sha256$rounds$salt$hash`` format."""
    salt = salt or secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 1000).hex()
    return f"pbkdf2_sha256$1000${salt}${digest}"


def check_password(password: str, stored: str) -> bool:
    _, _, salt, _ = stored.split("$")
    return secrets.compare_digest(hash_password(password, salt), stored)


@dataclass
class Clinic:
    """The app's live state: its database, flaws, signing key and login counters."""

    flaws: frozenset[str]
    db: sqlite3.Connection
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    failures: dict[str, list[float]] = field(default_factory=dict)
    avatars: dict[str, bytes] = field(default_factory=dict)

    def has(self, flaw: str) -> bool:
        return flaw in self.flaws

    def user_id(self, email: str) -> str:
        row = self.db.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()
        return str(row["id"])


# --- seed ---------------------------------------------------------------------------------

def _seed(db: sqlite3.Connection) -> None:
    now = datetime.now(UTC).isoformat()
    people = [(email, password, role, name) for (email, password, role), name in
              zip(SEED_USERS, ("Alice Martin", "Bob Nguyen", "Clinic Admin"), strict=True)]
    people += [("dr.house@carepoint.example", secrets.token_urlsafe(12), "doctor", "Gregory House"),
               ("dr.grey@carepoint.example", secrets.token_urlsafe(12), "doctor", "Meredith Grey")]
    for index, (email, password, role, name) in enumerate(people):
        db.execute("INSERT INTO users VALUES (?,?,?,?,?,?,?,1,?,?)",
                   (str(uuid.uuid4()), email, hash_password(password), name, f"+33 6 00 00 00 0{index}",
                    f"198{index}-0{index + 1}-1{index}", role, secrets.token_hex(10).upper(), now))
    db.executemany("INSERT INTO clinics VALUES (?,?,?,?)",
                   [(1, "CarePoint Bastille", "Paris", "+33 1 00 00 00 01"),
                    (2, "CarePoint Part-Dieu", "Lyon", "+33 4 00 00 00 02")])
    doctors = []
    for clinic_id, (email, specialty) in enumerate(
            [("dr.house@carepoint.example", "diagnostics"), ("dr.grey@carepoint.example", "surgery")], start=1):
        doctor_id = "doc_" + secrets.token_hex(4)
        user = db.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()["id"]
        db.execute("INSERT INTO doctors VALUES (?,?,?,?,?)",
                   (doctor_id, user, clinic_id, specialty, f"Consultant in {specialty}."))
        doctors.append((doctor_id, clinic_id))
    start = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
    for doctor_id, clinic_id in doctors:
        for n in range(150):
            db.execute("INSERT INTO slots (clinic_id, doctor_id, starts_at) VALUES (?,?,?)",
                       (clinic_id, doctor_id, (start + timedelta(minutes=30 * n)).isoformat()))
    for number, (email, _, _) in enumerate(SEED_USERS[:2], start=1):
        patient = db.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()["id"]
        visits = ((f"2026-0{number}-12", "seasonal allergy"), (f"2026-0{number + 4}-03", "sprained wrist"))
        for visit, diagnosis in visits:
            db.execute("INSERT INTO records (patient_id, doctor_id, visit_date, diagnosis, notes) VALUES (?,?,?,?,?)",
                       (patient, doctors[number - 1][0], visit, diagnosis, f"Private notes about {email}."))
        db.execute("UPDATE slots SET available = 0 WHERE id = ?", (number,))
        db.execute("INSERT INTO appointments VALUES (?,?,?,?,?,?)",
                   (f"APT-{number:06d}", patient, number, "follow-up", "booked", now))
    db.commit()


# --- helpers ------------------------------------------------------------------------------

def problem(status: int, title: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status, headers=dict(headers or {}), media_type="application/problem+json")


def state(request: Request) -> Clinic:
    clinic: Clinic = request.app.state.clinic
    return clinic


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise ApiError(400, "Bad Request", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Bad Request", "The body must be a JSON object.")
    return body


def required_str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(422, "Unprocessable Entity", f"'{name}' is required and must be a non-empty string.")
    return value


def int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "Bad Request", f"'{name}' must be an integer.") from None
    if value < 1:
        raise ApiError(400, "Bad Request", f"'{name}' must be at least 1.")
    return value


def paging(request: Request, clinic: Clinic, *, unbounded_flaw: str | None = None) -> tuple[int, int]:
    page = int_param(request, "page", 1)
    size = int_param(request, "page_size", 20)
    if size > PAGE_SIZE_MAX and not (unbounded_flaw and clinic.has(unbounded_flaw)):
        raise ApiError(400, "Bad Request", f"'page_size' must be at most {PAGE_SIZE_MAX}.")
    return page, size


def envelope(request: Request, rows: list[dict[str, Any]], page: int, size: int, total: int) -> dict[str, Any]:
    base = request.url.remove_query_params(["page"])
    links = {"self": str(base.include_query_params(page=page))}
    if page * size < total:
        links["next"] = str(base.include_query_params(page=page + 1))
    return {"data": rows, "meta": {"page": page, "page_size": size, "total": total}, "links": links}


def user_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in PUBLIC_USER_FIELDS}


# --- tokens -------------------------------------------------------------------------------

def issue_tokens(clinic: Clinic, user_id: str) -> dict[str, Any]:
    now = int(time.time())
    access = jwt.encode({"sub": user_id, "iat": now, "exp": now + ACCESS_TTL, "typ": "access"},
                        clinic.jwt_secret, algorithm="HS256")
    refresh = secrets.token_urlsafe(32)
    clinic.db.execute("INSERT INTO refresh_tokens (token, user_id) VALUES (?, ?)", (refresh, user_id))
    clinic.db.commit()
    return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": ACCESS_TTL}


def access_claims(clinic: Clinic, token: str) -> dict[str, Any] | None:
    """The claims of a valid access token, or None."""
    try:
        header = jwt.get_unverified_header(token)
        if clinic.has("jwt_alg_none") and str(header.get("alg", "")).lower() == "none":
            # The flaw: an unsigned token is taken at its word (the "none" algorithm).
            claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
            if int(claims.get("exp", 0)) < time.time():
                return None
        else:
            claims = jwt.decode(token, clinic.jwt_secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    return claims if claims.get("typ") == "access" else None


def caller(request: Request) -> sqlite3.Row | None:
    clinic = state(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    claims = access_claims(clinic, token.strip())
    if claims is None:
        return None
    row: sqlite3.Row | None = clinic.db.execute(
        "SELECT * FROM users WHERE id = ? AND is_active = 1", (str(claims.get("sub")),)).fetchone()
    return row


def require_user(request: Request) -> sqlite3.Row:
    row = caller(request)
    if row is None:
        raise ApiError(401, "Unauthorized", "A valid bearer access token is required.",
                       {"WWW-Authenticate": 'Bearer realm="carepoint"'})
    return row


def require_admin(request: Request) -> sqlite3.Row:
    row = require_user(request)
    if row["role"] != "admin":
        raise ApiError(403, "Forbidden", "This operation is reserved to administrators.")
    return row


# --- auth ---------------------------------------------------------------------------------

def writable_user_fields(clinic: Clinic, body: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """The user columns a write may set: ``allowed`` only, or (the flaw) any column named in the body."""
    names = USER_COLUMNS if clinic.has("mass_assignment") else allowed
    return {name: body[name] for name in names if name in body and name != "password_hash"}


async def register(request: Request) -> Response:
    clinic = state(request)
    body = await json_body(request)
    email, password, full_name = (required_str(body, name) for name in ("email", "password", "full_name"))
    if "@" not in email:
        raise ApiError(422, "Unprocessable Entity", "'email' must be an e-mail address.")
    if len(password) < 8:
        raise ApiError(422, "Unprocessable Entity", "'password' must have at least 8 characters.")
    if clinic.db.execute("SELECT 1 FROM users WHERE email = ?", (email,)).fetchone():
        raise ApiError(409, "Conflict", "An account with this e-mail already exists.")
    values = {"role": "patient", "is_active": 1, "phone": None, "date_of_birth": None}
    values |= writable_user_fields(clinic, body, ("phone", "date_of_birth"))
    values |= {"email": email, "full_name": full_name, "password_hash": hash_password(password)}
    user_id = str(uuid.uuid4())
    columns = ", ".join(values)
    clinic.db.execute(f"INSERT INTO users (id, created_at, {columns}) VALUES (?, ?, {', '.join('?' * len(values))})",
                      (user_id, datetime.now(UTC).isoformat(), *values.values()))
    clinic.db.commit()
    row = clinic.db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    return JSONResponse(user_view(row), 201, headers={"Location": "/v2/me"})


def _login_locked(clinic: Clinic, email: str) -> bool:
    if clinic.has("login_no_limit"):
        return False
    recent = [at for at in clinic.failures.get(email, []) if at > time.monotonic() - LOGIN_LOCK_SECONDS]
    clinic.failures[email] = recent
    return len(recent) >= LOGIN_FAILURES_ALLOWED


async def login(request: Request) -> Response:
    clinic = state(request)
    body = await json_body(request)
    email, password = required_str(body, "email").lower(), required_str(body, "password")
    if _login_locked(clinic, email):
        raise ApiError(429, "Too Many Requests", "Too many failed logins for this account; try again later.",
                       {"Retry-After": str(LOGIN_LOCK_SECONDS)})
    row = clinic.db.execute("SELECT * FROM users WHERE email = ? AND is_active = 1", (email,)).fetchone()
    if row is None or not check_password(password, row["password_hash"]):
        clinic.failures.setdefault(email, []).append(time.monotonic())
        raise ApiError(401, "Unauthorized", "Invalid e-mail or password.")
    clinic.failures.pop(email, None)
    return JSONResponse(issue_tokens(clinic, row["id"]))


async def refresh(request: Request) -> Response:
    clinic = state(request)
    token = required_str(await json_body(request), "refresh_token")
    row = clinic.db.execute("SELECT * FROM refresh_tokens WHERE token = ? AND revoked = 0", (token,)).fetchone()
    if row is None:
        raise ApiError(401, "Unauthorized", "The refresh token is unknown, used or revoked.")
    clinic.db.execute("UPDATE refresh_tokens SET revoked = 1 WHERE token = ?", (token,))
    return JSONResponse(issue_tokens(clinic, row["user_id"]))


# --- me -----------------------------------------------------------------------------------

async def get_me(request: Request) -> Response:
    return JSONResponse(user_view(require_user(request)))


async def patch_me(request: Request) -> Response:
    clinic = state(request)
    user = require_user(request)
    values = writable_user_fields(clinic, await json_body(request), ("full_name", "phone", "date_of_birth"))
    if values:
        assignments = ", ".join(f"{name} = ?" for name in values)
        clinic.db.execute(f"UPDATE users SET {assignments} WHERE id = ?", (*values.values(), user["id"]))
        clinic.db.commit()
    return JSONResponse(user_view(clinic.db.execute("SELECT * FROM users WHERE id = ?", (user["id"],)).fetchone()))


def _public_address(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_global for a in addresses)


async def import_avatar(request: Request) -> Response:
    """Fetch the image at ``image_url`` and keep it as the caller's avatar."""
    clinic = state(request)
    user = require_user(request)
    url = required_str(await json_body(request), "image_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(422, "Unprocessable Entity", "'image_url' must be an http(s) URL.")
    if not clinic.has("avatar_ssrf") and (parts.scheme != "https" or not _public_address(parts.hostname)):
        raise ApiError(422, "Unprocessable Entity", "'image_url' must be an https URL on a public host.")
    try:
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=clinic.has("avatar_ssrf")) as client:
            fetched = await client.get(url)
    except httpx.HTTPError:
        raise ApiError(502, "Bad Gateway", "The image could not be downloaded.") from None
    if fetched.status_code != 200:
        raise ApiError(422, "Unprocessable Entity", f"The image URL answered {fetched.status_code}.")
    clinic.avatars[user["id"]] = fetched.content[:1_000_000]
    return JSONResponse({"avatar_url": f"/v2/users/{user['id']}/avatar", "bytes": len(fetched.content),
                         "content_type": fetched.headers.get("content-type", "")}, 201)


# --- clinics, doctors, slots ----------------------------------------------------------------

async def list_clinics(request: Request) -> Response:
    clinic = state(request)
    page, size = paging(request, clinic)
    rows = [dict(r) for r in clinic.db.execute("SELECT * FROM clinics ORDER BY id LIMIT ? OFFSET ?",
                                                  (size, (page - 1) * size))]
    total = clinic.db.execute("SELECT COUNT(*) FROM clinics").fetchone()[0]
    return JSONResponse(envelope(request, rows, page, size, total))


def _clinic_row(clinic: Clinic, raw: str) -> sqlite3.Row:
    row = clinic.db.execute("SELECT * FROM clinics WHERE id = ?", (raw,)).fetchone() if raw.isdigit() else None
    if row is None:
        raise ApiError(404, "Not Found", f"No clinic {raw}.")
    found: sqlite3.Row = row
    return found


async def get_clinic(request: Request) -> Response:
    return JSONResponse(dict(_clinic_row(state(request), request.path_params["clinicId"])))


async def list_slots(request: Request) -> Response:
    clinic = state(request)
    found = _clinic_row(clinic, request.path_params["clinicId"])
    page, size = paging(request, clinic, unbounded_flaw="slots_page_unbounded")
    rows = [dict(r) | {"available": bool(r["available"])} for r in clinic.db.execute(
        "SELECT * FROM slots WHERE clinic_id = ? ORDER BY starts_at LIMIT ? OFFSET ?",
        (found["id"], size, (page - 1) * size))]
    total = clinic.db.execute("SELECT COUNT(*) FROM slots WHERE clinic_id = ?", (found["id"],)).fetchone()[0]
    return JSONResponse(envelope(request, rows, page, size, total))


DOCTOR_SELECT = ("SELECT d.id, u.full_name AS name, d.specialty, d.clinic_id FROM doctors d "
                 "JOIN users u ON u.id = d.user_id")


async def list_doctors(request: Request) -> Response:
    clinic = state(request)
    page, size = paging(request, clinic)
    q = request.query_params.get("q", "")
    specialty = request.query_params.get("specialty")
    if clinic.has("doctor_search_sqli"):
        # The flaw: the search text is pasted into the statement.
        where = f" WHERE u.full_name LIKE '%{q}%'" + (f" AND d.specialty = '{specialty}'" if specialty else "")
        params: tuple[Any, ...] = ()
    else:
        where = " WHERE u.full_name LIKE ? ESCAPE '\\'" + (" AND d.specialty = ?" if specialty else "")
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        params = (like, specialty) if specialty else (like,)
    rows = [dict(r) for r in clinic.db.execute(
        f"{DOCTOR_SELECT}{where} ORDER BY name LIMIT {size} OFFSET {(page - 1) * size}", params)]
    total = clinic.db.execute(f"SELECT COUNT(*) FROM ({DOCTOR_SELECT}{where}\n)", params).fetchone()[0]
    return JSONResponse(envelope(request, rows, page, size, total))


async def get_doctor(request: Request) -> Response:
    clinic = state(request)
    row = clinic.db.execute(
        "SELECT d.id, u.full_name AS name, d.specialty, d.clinic_id, d.bio, u.email, u.phone, u.password_hash, "
        "u.totp_secret FROM doctors d JOIN users u ON u.id = d.user_id WHERE d.id = ?",
        (request.path_params["doctorId"],)).fetchone()
    if row is None:
        raise ApiError(404, "Not Found", "No such doctor.")
    doctor = dict(row)
    if not clinic.has("doctor_secrets"):
        doctor = {name: doctor[name] for name in ("id", "name", "specialty", "clinic_id", "bio")}
    return JSONResponse(doctor)


# --- appointments ---------------------------------------------------------------------------

def _appointment_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "slot_id": row["slot_id"], "reason": row["reason"], "status": row["status"],
            "starts_at": row["starts_at"], "clinic_id": row["clinic_id"], "doctor_id": row["doctor_id"]}


APPOINTMENT_SELECT = ("SELECT a.*, s.starts_at, s.clinic_id, s.doctor_id FROM appointments a "
                      "JOIN slots s ON s.id = a.slot_id")


def _date_filter(clinic: Clinic, raw: str | None) -> str | None:
    if raw is None:
        return None
    if clinic.has("verbose_errors"):
        return date.fromisoformat(raw).isoformat()  # unguarded: a bad date is an unhandled ValueError
    try:
        return date.fromisoformat(raw).isoformat()
    except ValueError:
        raise ApiError(400, "Bad Request", "'date' must be a date such as 2027-01-04.") from None


async def list_appointments(request: Request) -> Response:
    clinic = state(request)
    user = require_user(request)
    page, size = paging(request, clinic)
    day = _date_filter(clinic, request.query_params.get("date"))
    where, params = " WHERE a.patient_id = ?", [user["id"]]
    if day:
        where += " AND substr(s.starts_at, 1, 10) = ?"
        params.append(day)
    rows = [_appointment_view(r) for r in clinic.db.execute(
        f"{APPOINTMENT_SELECT}{where} ORDER BY s.starts_at LIMIT ? OFFSET ?", (*params, size, (page - 1) * size))]
    total = clinic.db.execute(f"SELECT COUNT(*) FROM appointments a JOIN slots s ON s.id = a.slot_id{where}",
                              params).fetchone()[0]
    return JSONResponse(envelope(request, rows, page, size, total))


async def book_appointment(request: Request) -> Response:
    clinic = state(request)
    user = require_user(request)
    body = await json_body(request)
    slot_id, reason = body.get("slot_id"), required_str(body, "reason")
    if not isinstance(slot_id, int) or isinstance(slot_id, bool):
        raise ApiError(422, "Unprocessable Entity", "'slot_id' is required and must be an integer.")
    slot = clinic.db.execute("SELECT * FROM slots WHERE id = ?", (slot_id,)).fetchone()
    if slot is None:
        raise ApiError(422, "Unprocessable Entity", f"No slot {slot_id}.")
    if not slot["available"]:
        raise ApiError(409, "Conflict", f"Slot {slot_id} is already booked.")
    count = clinic.db.execute("SELECT COUNT(*) FROM appointments").fetchone()[0]
    appointment_id = f"APT-{count + 1:06d}"
    clinic.db.execute("INSERT INTO appointments VALUES (?,?,?,?,?,?)", (
        appointment_id, user["id"], slot_id, reason[:500], "booked", datetime.now(UTC).isoformat()))
    clinic.db.execute("UPDATE slots SET available = 0 WHERE id = ?", (slot_id,))
    clinic.db.commit()
    row = clinic.db.execute(f"{APPOINTMENT_SELECT} WHERE a.id = ?", (appointment_id,)).fetchone()
    return JSONResponse(_appointment_view(row), 201, headers={"Location": f"/v2/appointments/{appointment_id}"})


def _own_appointment(request: Request) -> tuple[Clinic, sqlite3.Row]:
    clinic = state(request)
    user = require_user(request)
    row = clinic.db.execute(f"{APPOINTMENT_SELECT} WHERE a.id = ?", (request.path_params["appointmentId"],)).fetchone()
    if row is None or (row["patient_id"] != user["id"] and user["role"] != "admin"):
        raise ApiError(404, "Not Found", "No such appointment.")
    found: sqlite3.Row = row
    return clinic, found


async def get_appointment(request: Request) -> Response:
    return JSONResponse(_appointment_view(_own_appointment(request)[1]))


async def cancel_appointment(request: Request) -> Response:
    clinic, row = _own_appointment(request)
    clinic.db.execute("UPDATE appointments SET status = 'cancelled' WHERE id = ?", (row["id"],))
    clinic.db.execute("UPDATE slots SET available = 1 WHERE id = ?", (row["slot_id"],))
    clinic.db.commit()
    return Response(status_code=204)


# --- medical records ------------------------------------------------------------------------

def _patient_access(request: Request, *, flaw: str | None = None) -> tuple[Clinic, str]:
    """The patient ID of the path, if the caller is that patient or an admin (or ``flaw`` is on)."""
    clinic = state(request)
    user = require_user(request)
    patient_id = str(request.path_params["patientId"])
    if patient_id != user["id"] and user["role"] != "admin" and not (flaw and clinic.has(flaw)):
        raise ApiError(403, "Forbidden", "You may only read your own medical records.")
    return clinic, patient_id


def _record_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in ("id", "patient_id", "doctor_id", "visit_date", "diagnosis", "notes")}


async def list_records(request: Request) -> Response:
    clinic, patient_id = _patient_access(request)
    page, size = paging(request, clinic)
    rows = [_record_view(r) for r in clinic.db.execute(
        "SELECT * FROM records WHERE patient_id = ? ORDER BY visit_date DESC LIMIT ? OFFSET ?",
        (patient_id, size, (page - 1) * size))]
    total = clinic.db.execute("SELECT COUNT(*) FROM records WHERE patient_id = ?", (patient_id,)).fetchone()[0]
    return JSONResponse(envelope(request, rows, page, size, total))


async def get_record(request: Request) -> Response:
    # The flaw: the record is matched to the path's patient, but that patient is never matched to the caller.
    clinic, patient_id = _patient_access(request, flaw="bola_records")
    raw = str(request.path_params["recordId"])
    row = clinic.db.execute("SELECT * FROM records WHERE id = ? AND patient_id = ?",
                            (raw, patient_id)).fetchone() if raw.isdigit() else None
    if row is None:
        raise ApiError(404, "Not Found", "No such record.")
    return JSONResponse(_record_view(row))


async def export_records(request: Request) -> Response:
    clinic, patient_id = _patient_access(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("id", "visit_date", "doctor_id", "diagnosis", "notes"))
    for row in clinic.db.execute("SELECT * FROM records WHERE patient_id = ? ORDER BY visit_date", (patient_id,)):
        writer.writerow((row["id"], row["visit_date"], row["doctor_id"], row["diagnosis"], row["notes"]))
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="medical-records.csv"'})


# --- admin and the legacy API ----------------------------------------------------------------

async def admin_users(request: Request) -> Response:
    clinic = state(request)
    if clinic.has("admin_users_any_role"):
        require_user(request)  # the flaw: any logged-in account, not only administrators
    else:
        require_admin(request)
    page, size = paging(request, clinic)
    rows = [user_view(r) | {"is_active": bool(r["is_active"])} for r in clinic.db.execute(
        "SELECT * FROM users ORDER BY email LIMIT ? OFFSET ?", (size, (page - 1) * size))]
    total = clinic.db.execute("SELECT COUNT(*) FROM users").fetchone()[0]
    return JSONResponse(envelope(request, rows, page, size, total))


async def admin_export(request: Request) -> Response:
    clinic = state(request)
    require_admin(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("id", "patient_email", "starts_at", "clinic_id", "status"))
    for row in clinic.db.execute("SELECT a.id, u.email, s.starts_at, s.clinic_id, a.status FROM appointments a "
                                 "JOIN users u ON u.id = a.patient_id JOIN slots s ON s.id = a.slot_id ORDER BY a.id"):
        writer.writerow(tuple(row))
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="appointments.csv"'})


async def legacy_patient(request: Request) -> Response:
    clinic = state(request)
    if not clinic.has("legacy_v1_open"):
        raise ApiError(410, "Gone", "API v1 is retired; use /v2.")
    row = clinic.db.execute("SELECT * FROM users WHERE id = ?", (request.path_params["patientId"],)).fetchone()
    if row is None:
        raise ApiError(404, "Not Found", "No such patient.")
    return JSONResponse({"patient_id": row["id"], "name": row["full_name"], "email": row["email"],
                         "phone": row["phone"], "dob": row["date_of_birth"]})


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


# --- the app --------------------------------------------------------------------------------

async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return problem(exc.status, exc.title, exc.detail, exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    return problem(500, "Internal Server Error", "Something went wrong; the error was logged.")


def create_app(flaws: Iterable[str] = ()) -> Starlette:
    """A fresh CarePoint app (fresh in-memory database) with ``flaws`` switched on."""
    chosen = frozenset(flaws)
    unknown = chosen - ALL_FLAWS
    if unknown:
        raise ValueError(f"unknown flaw(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(ALL_FLAWS))}")
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.executescript(SCHEMA)
    _seed(db)
    if "cors_any_origin" in chosen:
        cors = Middleware(CORSMiddleware, allow_origin_regex=".*", allow_credentials=True,
                          allow_methods=["*"], allow_headers=["*"])
    else:
        cors = Middleware(CORSMiddleware, allow_origins=[PORTAL_ORIGIN], allow_credentials=True,
                          allow_methods=["GET", "POST", "PATCH", "DELETE"],
                          allow_headers=["Authorization", "Content-Type"])
    routes = [
        Route("/v2/health", health),
        Route("/v2/auth/register", register, methods=["POST"]),
        Route("/v2/auth/login", login, methods=["POST"]),
        Route("/v2/auth/refresh", refresh, methods=["POST"]),
        Route("/v2/me", get_me, methods=["GET"]),
        Route("/v2/me", patch_me, methods=["PATCH"]),
        Route("/v2/me/avatar", import_avatar, methods=["POST"]),
        Route("/v2/clinics", list_clinics),
        Route("/v2/clinics/{clinicId}", get_clinic),
        Route("/v2/clinics/{clinicId}/slots", list_slots),
        Route("/v2/doctors", list_doctors),
        Route("/v2/doctors/{doctorId}", get_doctor),
        Route("/v2/appointments", list_appointments, methods=["GET"]),
        Route("/v2/appointments", book_appointment, methods=["POST"]),
        Route("/v2/appointments/{appointmentId}", get_appointment, methods=["GET"]),
        Route("/v2/appointments/{appointmentId}", cancel_appointment, methods=["DELETE"]),
        Route("/v2/patients/{patientId}/records", list_records),
        Route("/v2/patients/{patientId}/records/export", export_records),
        Route("/v2/patients/{patientId}/records/{recordId}", get_record),
        Route("/v2/admin/users", admin_users),
        Route("/v2/admin/exports/appointments.csv", admin_export),
        Route("/v1/patients/{patientId}", legacy_patient),
    ]
    handlers: dict[Any, Any] = {ApiError: _api_error}
    if "verbose_errors" not in chosen:
        handlers[Exception] = _internal_error
    app = Starlette(debug="verbose_errors" in chosen, routes=routes, middleware=[cors], exception_handlers=handlers)
    app.state.clinic = Clinic(chosen, db)
    return app
