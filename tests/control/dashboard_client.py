"""Helpers of the dashboard tests: admin users made in a test gateway's store, and a
sign-in through the dashboard's forms with httpx (what a browser does, without one)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pyotp

from bastion.config import load_config
from bastion.control.accounts.roles import Role
from bastion.store import Store, admins, open_store
from bastion.testing import GatewayProcess

NEW_PASSWORD = "correct horse battery staple 42"


@contextmanager
def gateway_store(gw: GatewayProcess) -> Iterator[Store]:
    loaded = load_config(gw.config_path)
    store = open_store(loaded.config.store, loaded.config.consumers)
    try:
        yield store
    finally:
        store.close()


def make_admin(gw: GatewayProcess, name: str, role: Role) -> str:
    """A new admin user in the gateway's store; its one-time password."""
    with gateway_store(gw) as store, store.write() as session:
        return admins.create(session, name, role)[1]


def field(html: str, name: str) -> str:
    """The value of the form field ``name`` in a page."""
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match is not None, f"no field {name} in:\n{html}"
    return match.group(1)


def secret_on(html: str) -> str:
    match = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', html)
    assert match is not None, html
    return match.group(1)


def post_login(client: httpx.Client, name: str, password: str) -> httpx.Response:
    page = client.get("/ui/login")
    return client.post("/ui/login", data={"name": name, "password": password,
                                          "csrf_token": field(page.text, "csrf_token")})


def sign_in(client: httpx.Client, name: str, one_time: str, *, enrol: bool) -> str | None:
    """The whole first sign-in: one-time password, new password, TOTP enrolment when
    ``enrol``. Returns the TOTP secret (if enrolled)."""
    answer = post_login(client, name, one_time)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login/step", answer.text
    step = client.get("/ui/login/step")
    answer = client.post("/ui/login/step", data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                                                 "csrf_token": field(step.text, "csrf_token")})
    if not enrol:
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/", answer.text
        return None
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login/step", answer.text
    step = client.get("/ui/login/step")
    secret = secret_on(step.text)
    answer = client.post("/ui/login/step", data={"code": pyotp.TOTP(secret).now(), "sealed": field(step.text, "sealed"),
                                                 "csrf_token": field(step.text, "csrf_token")})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/", answer.text
    return secret


def csrf_of(client: httpx.Client) -> str:
    """The signed-in session's CSRF token (from the sign-out form every page has)."""
    return field(client.get("/ui/routes").text, "csrf_token")
