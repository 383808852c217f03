"""Upstream credentials (``upstream.credentials``): the gateway adds them to every request it
forwards, so clients never hold them, and a client's own value for those headers is dropped."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.config import ConfigError, load_config
from bastion.testing import GatewayProcess

from .conftest import gateway_config
from .scripted import ScriptedUpstream
from .util import one

CREDENTIALS = {
    "headers": {"X-Api-Key": "${UPSTREAM_KEY}"},
    "basic": {"username": "gateway", "password": "${UPSTREAM_PW}"},
}


@pytest.fixture(scope="module")
def credentialed(upstream: ScriptedUpstream) -> Iterator[GatewayProcess]:
    config = gateway_config(upstream.url, upstream_options={"credentials": CREDENTIALS})
    env = {"UPSTREAM_KEY": "k-123", "UPSTREAM_PW": "s3cret"}
    with GatewayProcess(config, env=env) as gw:
        yield gw


def test_the_gateway_sends_its_credentials_and_drops_the_clients(
    credentialed: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """The upstream gets the configured key and Basic credentials, once each; the client's
    own X-Api-Key and Authorization never reach it."""
    resp = one(credentialed, "GET", f"/echo?{token}", [("X-Api-Key", "forged"), ("Authorization", "Basic eDp5")])
    assert resp.status == 200
    (seen,) = upstream.records(token)
    assert seen.header_all("x-api-key") == ["k-123"]
    assert seen.header_all("authorization") == ["Basic " + base64.b64encode(b"gateway:s3cret").decode()]


def test_plain_text_credentials_are_refused_at_load(tmp_path: Path) -> None:
    """A credential written in plain text is a configuration error naming the field."""
    (tmp_path / "bastion.yaml").write_text(
        "services:\n  - name: s\n    upstream:\n      targets: ['http://127.0.0.1:9']\n"
        "      credentials: {headers: {X-Api-Key: k-123}}\n    routes: [{path: /, public: true}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "bastion.yaml")
    text = str(info.value)
    assert "services[0].upstream.credentials.headers.X-Api-Key" in text and "plain text" in text
    assert "k-123" not in text


def test_two_ways_to_set_authorization_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Basic and a bearer token both set Authorization: one of them, said at load."""
    monkeypatch.setenv("PW", "x")
    (tmp_path / "bastion.yaml").write_text(
        "services:\n  - name: s\n    upstream:\n      targets: ['http://127.0.0.1:9']\n"
        "      credentials: {basic: {username: u, password: '${PW}'}, bearer_token: '${PW}'}\n"
        "    routes: [{path: /, public: true}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "bastion.yaml")
    assert "each set Authorization" in str(info.value)
