"""The scan removes what it created, with the identity that created it, and every report says what it did.

Real apps on loopback: the shop (``DELETE /orders/{orderId}``), CarePoint (``DELETE
/v2/appointments/{appointmentId}`` cancels a booking and frees its slot) and the library (no way to delete a
book or an account: what it created is listed as left, with the reason).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx

from bastion.tester.scan.engine import ScanResult
from bastion.tester.scan.registry import BY_ID
from bastion.tester.scan.report import to_html, to_json, to_junit, to_sarif
from tests.tester.clinicapp.app import ALL_FLAWS as CLINIC_FLAWS
from tests.tester.clinicapp.server import RunningClinic, serve_clinic
from tests.tester.libraryapp.server import serve_library
from tests.tester.scan import clinicscan
from tests.tester.scan import test_safety as library
from tests.tester.scan.vulnscan import USERS, scan_app
from tests.tester.vulnapp.server import ALL_FLAWS as SHOP_FLAWS
from tests.tester.vulnapp.server import VulnApp, serve_vulnapp


def _orders(app: VulnApp) -> dict[str, list[str]]:
    """The IDs of each seeded user's orders as the API lists them (logged in as that user)."""
    out: dict[str, list[str]] = {}
    with httpx.Client(base_url=app.base_url, timeout=10) as client:
        for name, password in USERS:
            token = client.post("/auth/login", json={"username": name, "password": password}).json()["access_token"]
            listed = client.get("/orders", params={"limit": 100}, headers={"Authorization": f"Bearer {token}"})
            assert listed.json()["total"] < 100, "more orders than one page shows"
            out[name] = sorted(str(o["id"]) for o in listed.json()["items"])
    return out


def _clinic_state(clinic: RunningClinic) -> tuple[int, int]:
    """(booked appointments, available slots) in CarePoint's database."""
    db = clinic.state.db
    return (db.execute("SELECT COUNT(*) FROM appointments WHERE status = 'booked'").fetchone()[0],
            db.execute("SELECT COUNT(*) FROM slots WHERE available = 1").fetchone()[0])


def test_the_shop_holds_the_same_orders_after_a_full_scan() -> None:
    """Discovery and the checks create orders as alice and bob (201 with an id); at the end each is deleted by
    its creator through the document's `DELETE /orders/{orderId}`, read again (404), and listed as removed: the
    orders both users see afterwards are the seeded ones. The flawed shop, every check, destructive ones too."""
    with serve_vulnapp(SHOP_FLAWS) as app:
        before = _orders(app)
        result = scan_app(app, list(BY_ID.values()), users=2, admin=True, allow_destructive=True)
        assert _orders(app) == before
    created = [r for r in result.cleanup if r.created.via.label == "POST /orders"]
    assert created and all(r.outcome in ("removed", "already gone") for r in created), result.cleanup
    assert {r.created.owner.name for r in created} >= {"alice", "bob"}
    assert all(r.detail.startswith("DELETE /orders/{orderId} as ") for r in created)


def test_clinic_bookings_are_cancelled_and_their_slots_freed() -> None:
    """CarePoint's cancel is a DELETE that keeps the appointment (status cancelled) and frees its slot: after a
    full scan of the vulnerable build, as many appointments are booked and slots free as before, and the
    cleanup says each booking was cancelled (still readable, ended) by the patient who made it."""
    with serve_clinic(CLINIC_FLAWS) as clinic:
        before = _clinic_state(clinic)
        result = clinicscan.scan(clinic)
        assert _clinic_state(clinic) == before
        clinicscan.assert_intact(clinic)
    booked = [r for r in result.cleanup if r.created.via.label == "POST /v2/appointments"]
    assert booked and {r.outcome for r in booked} <= {"cancelled", "already gone"}, result.cleanup
    assert all(r.created.owner.name != "anonymous" for r in booked)


def test_a_held_back_delete_is_never_called_and_the_order_is_listed_as_left() -> None:
    """With `--exclude deleteOrder` the classifier holds the DELETE back: the cleanup does not call it, the
    order stays (alice sees one more), and the report says why it was left."""
    from bastion.tester.scan.engine import run_scan
    from bastion.tester.scan.interface import ScanOptions
    from tests.tester.scan.vulnscan import identities

    with serve_vulnapp() as app:
        before = _orders(app)
        options = ScanOptions(base_url=app.base_url, max_rps=500, exclude=("deleteOrder",))
        result = run_scan(app.spec_path, options, identities(users=1), [])
        after = _orders(app)
    assert len(after["alice"]) == len(before["alice"]) + 1
    [left] = [r for r in result.cleanup if r.created.via.label == "POST /orders"]
    assert left.outcome == "left"
    assert left.detail.startswith("DELETE /orders/{orderId} is held back by the safety classifier")
    assert result.refused == {}


def _every_format(result: ScanResult) -> dict[str, str]:
    return {"json": str(to_json(result)["cleanup"]), "sarif": str(to_sarif(result)), "junit": to_junit(result),
            "html": to_html(result)}


def test_every_report_lists_what_was_created_removed_and_left() -> None:
    """The library declares no DELETE for books and no way to remove an account: the books discovery created
    and the throwaway sign-ups are listed as left, with that reason, in every format (JSON counts and entries,
    SARIF notes, a JUnit case's output, an HTML table); the count of left sign-ups is what the library holds
    beyond its seeded accounts."""
    with serve_library() as lib:
        seeded = len(lib.state.accounts)
        result = library.scan(lib, ["API3-MASS-ASSIGNMENT"])
        extra = len(lib.state.accounts) - seeded
    data = to_json(result)["cleanup"]
    assert data["created"] == len(result.cleanup) and data["left"] == data["created"] > 0
    signups = [r for r in result.cleanup if r.created.via.label == "POST /users/register"]
    assert len(signups) == extra > 0
    books = [r for r in result.cleanup if r.created.via.label == "POST /books"]
    assert books and all("declares no DELETE (or cancel/close operation) for /books/{book_title}" in r.detail
                         for r in books)
    note = (f"left on the target: {extra} object(s) the scan created through POST /users/register and did not "
            f"remove: the document gives what POST /users/register created no path, so the scan cannot address "
            "it to remove it")
    assert note in result.notes
    for name, text in _every_format(result).items():
        assert "POST /users/register" in text and "/books/" in text, name
    suite = ET.fromstring(to_junit(result))
    [case] = [c for c in suite.iter("testcase") if c.get("classname") == "cleanup"]
    assert note in (case.findtext("system-out") or "")
