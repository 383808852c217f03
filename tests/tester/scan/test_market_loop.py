"""The closed loop on the market app (``tests/tester/marketapp``), an API shaped unlike the checks expect.

FastAPI-style conventions: camelCase, UUIDs, a form-encoded OAuth2 login whose token comes back only as a
cookie, orders nested under their owner (``/users/{userId}/orders/{orderId}``), 201 with an empty body and a
``Location``, HAL-wrapped paginated lists, 422 validation errors and an enum role. Each flaw is found when on,
nothing when off, and the seeded accounts are as they were afterwards. Every scan runs over real HTTPS.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from bastion.tester.scan.engine import ScanResult, run_scan
from bastion.tester.scan.identities import IdentityConfig, LoginFlow
from bastion.tester.scan.interface import ScanOptions
from bastion.tester.scan.registry import BY_ID
from tests.tester.marketapp.app import ALL_FLAWS, COOKIE, SEED_USERS
from tests.tester.marketapp.server import RunningMarket, serve_market

#: The check that must find each flaw.
TRAIT_CHECKS = {
    "bola": ("API1-BOLA-READ", "GET /users/{userId}/orders/{orderId}"),
    "mass_assignment": ("API3-MASS-ASSIGNMENT", "PATCH /users/me"),
    "user_enumeration": ("API2-USER-ENUM", "POST /auth/token"),
    "revealing_headers": ("API8-REVEALING-HEADERS", "response headers"),
    "weak_jwt_secret": ("API2-JWT-WEAK-SECRET", "GET /users/me"),
    # Sellers only: reached through the role-escalation chain, which ``mass_assignment`` opens.
    "webhook_ssrf": ("API7-SSRF", "POST /webhooks"),
}
#: Flaws a check finds on their own (the webhook's SSRF needs a way to become a seller, see below).
ALONE = sorted(set(TRAIT_CHECKS) - {"webhook_ssrf"})
LOGIN = "login_for_access_token_auth_token_post"


def identities() -> list[IdentityConfig]:
    """alice and bob (customers) and carol (admin), each logging in with the form and keeping the cookie."""
    return [IdentityConfig(email.split("@")[0], role="admin" if role == "admin" else "user",
                           login=LoginFlow(LOGIN, {"username": email, "password": password}, cookie=COOKIE))
            for email, password, role in SEED_USERS]


def scan(market: RunningMarket, checks: Sequence[str] | None = None, exclude: Iterable[str] = ()) -> ScanResult:
    chosen = None if checks is None else [BY_ID[c] for c in checks]
    options = ScanOptions(base_url=market.base_url, max_rps=500, ca_file=str(market.ca_file), exclude=tuple(exclude))
    return run_scan(market.spec_path, options, identities(), checks=chosen)


def assert_intact(market: RunningMarket) -> None:
    """The seeded accounts keep their role and display name, and their seeded orders are there."""
    for email, _, role in SEED_USERS:
        account = market.state.by_email(email)
        assert account is not None and (account.role, account.display_name) == (role, email.split("@")[0].title())
        assert any(o.owner == account.id and o.sku == "SEED-1" for o in market.state.orders.values())


def test_secure_twin_yields_nothing_and_is_left_as_it_was() -> None:
    """Every check against the secure market: zero findings, the cookie login worked for all three identities,
    the health watch stayed healthy, and the seeded accounts are intact. (Before the scan's HTTP client kept a
    cookie jar, the last login's cookie rode along on "anonymous" requests: false findings here.)"""
    with serve_market() as market:
        result = scan(market)
        assert_intact(market)
    assert [(f.check.id, f.target, f.message) for f in result.findings] == []
    assert result.identities == ["alice", "bob", "carol"]
    assert result.health == []


def test_every_flaw_is_found_and_nothing_else() -> None:
    """With every flaw on, a full scan finds exactly one finding per flaw, on the operation that has it: BOLA on
    an order nested under its owner (the create answered 201 with only a Location), mass assignment of the enum
    role (restored), enumeration through 401 details, the revealing headers, the weak key of a JWT that
    travels in a cookie, and the sellers' SSRF through the role-escalation chain; the seeded accounts are intact
    afterwards."""
    with serve_market(ALL_FLAWS) as market:
        result = scan(market)
        assert_intact(market)
    assert sorted((f.check.id, f.target) for f in result.findings) == sorted(TRAIT_CHECKS.values())
    found = {f.check.id: f.message for f in result.findings}
    assert found["API1-BOLA-READ"].startswith("bob read alice's object at /users/")
    assert 'The scan restored `role` to "customer".' in found["API3-MASS-ASSIGNMENT"]
    assert result.health == []


@pytest.mark.parametrize("flaw", ALONE)
def test_each_flaw_alone_is_found_by_its_check(flaw: str) -> None:
    """Each flaw on its own is found by its check, and by nothing else of that check."""
    check, target = TRAIT_CHECKS[flaw]
    with serve_market({flaw}) as market:
        result = scan(market, [check])
        assert_intact(market)
    assert [(f.check.id, f.target) for f in result.findings] == [(check, target)]


def test_orders_listed_under_the_owner_are_learned_without_creating_any() -> None:
    """With the create operation excluded, BOLA is still found: the scan fills the list's `{userId}` with the
    user's own ID (read from its profile), finds the seeded order inside the HAL wrapper
    (`_embedded.orders`) and has bob read it."""
    with serve_market({"bola"}) as market:
        result = scan(market, ["API1-BOLA-READ"], exclude=["POST /users/{userId}/orders"])
        alice = market.state.by_email("alice@market.test")
        assert alice is not None
        seeded = next(o.id for o in market.state.orders.values() if o.owner == alice.id)
        assert len(market.state.orders) == len(SEED_USERS)  # nothing was created
    [bola] = result.findings
    assert bola.message.startswith(f"bob read alice's object at /users/{alice.id}/orders/{seeded} (200)")


def test_a_customer_who_can_make_itself_an_admin_reaches_the_sellers_ssrf() -> None:
    """The chain through a mass assignment: a throwaway customer registers (201 + Location), sets its own
    undeclared `role` to the enum's `admin` through PATCH /users/me, logs in again for a fresh cookie, and the SSRF
    check run again as it finds the sellers' webhook ping; it is a customer again at the end. With the SSRF alone
    (no way to become a seller) nothing is found and the notes say the webhook went unprobed and why."""
    with serve_market({"mass_assignment", "webhook_ssrf"}) as market:
        chained = scan(market, ["API7-SSRF"])
        assert_intact(market)
        assert {a.role for a in market.state.accounts.values() if a.email.startswith("bscan")} == {"customer"}
    [ssrf] = chained.findings
    assert (ssrf.check.id, ssrf.target) == ("API7-SSRF", "POST /webhooks")
    assert 'raised its own `role` from "customer" to "admin" through PATCH /users/me' in ssrf.message
    with serve_market({"webhook_ssrf"}) as market:
        alone = scan(market, ["API7-SSRF"])
        assert_intact(market)
    assert alone.findings == []
    note = next(n for n in alone.notes if n.startswith("role-escalation chain: "))
    assert "refused alice (POST /webhooks)" in note and "PATCH /users/me with `role: \"admin\"` answered 422" in note
