"""The built-in routes of the OAuth server: matched before services' routes on the normalised
path, answered by the gateway, never forwarded, with their own body limits; and what the
loader refuses around them."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.config import ConfigError, load_config
from bastion.demo.server import DemoServer
from bastion.services import check_backends
from bastion.testing import GatewayProcess


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway with the OAuth server on and a public prefix route "/" to the demo API."""
    folder = tmp_path_factory.mktemp("builtin")
    with DemoServer() as api:
        config = {
            "access_log": {"path": "access.log"},
            "oauth_server": {"enabled": True},
            "services": [{"name": "books", "upstream": api.url,
                          "routes": [{"path": "/", "prefix": True, "public": True}]}],
        }
        with GatewayProcess(config, folder=folder, env={"BASTION_PEPPER": "p" * 40}) as gw:
            yield gw


def send(gw: GatewayProcess, method: str, target: str, body: bytes | Iterable[bytes] | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client, which sends the target exactly as given (an iterable
    body goes chunked)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers or {},
                     encode_chunked=body is not None and not isinstance(body, bytes))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def record_of(gw: GatewayProcess, request_id: str) -> dict[str, Any]:
    """The request's access record (written off the request path: waited for)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for record in gw.access_log_records():
            if record["request_id"] == request_id:
                return record
        time.sleep(0.05)
    raise AssertionError(f"no access record for {request_id}")


def test_builtin_paths_win_over_a_prefix_route_and_are_never_forwarded(gateway: GatewayProcess) -> None:
    """Under a service's prefix route "/", the five endpoints are the gateway's: a wrong
    method is a 405 naming the endpoint's methods, a request through a non-normalised path
    (duplicate slash, ;params) still reaches the endpoint, and none of them goes upstream."""
    status, headers, _ = send(gateway, "GET", "/oauth/token")
    assert (status, headers["allow"]) == (405, "POST")
    form = {"content-type": "application/x-www-form-urlencoded"}
    for target in ("/oauth/token", "/oauth//token", "/oauth/token;x=1"):
        status, headers, body = send(gateway, "POST", target, b"grant_type=client_credentials", form)
        assert status == 401, (target, body)
        assert b'"invalid_client"' in body
        record = record_of(gateway, headers["x-request-id"])
        assert (record["route"], record["service"]) == ("oauth_server:token", "(oauth_server)")
        assert record.get("upstream") is None
    status, headers, body = send(gateway, "GET", "/.well-known/jwks.json")
    assert status == 200 and b'"keys"' in body
    assert record_of(gateway, headers["x-request-id"]).get("upstream") is None


def test_other_paths_still_go_to_the_services(gateway: GatewayProcess) -> None:
    """Only the exact normalised paths are built in: a path that climbs out of /oauth/token
    is the path it normalises to and goes to its service, as does a path beside them."""
    for target in ("/oauth/token/../../books?limit=1", "/books?limit=1"):
        status, headers, _ = send(gateway, "GET", target)
        assert status == 200, target
        record = record_of(gateway, headers["x-request-id"])
        assert record["route"] == "books:/" and record["upstream"], record
    status, headers, _ = send(gateway, "GET", "/oauth/tokens")
    assert record_of(gateway, headers["x-request-id"])["route"] == "books:/"


def test_builtin_routes_bound_the_body(gateway: GatewayProcess) -> None:
    """The endpoints read at most 16 KiB of form (413 beyond, also when it arrives chunked),
    and the discovery documents take no body at all (400: nothing could read it)."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    big = b"grant_type=client_credentials&x=" + b"a" * 17000
    assert send(gateway, "POST", "/oauth/token", big, form)[0] == 413
    assert send(gateway, "POST", "/oauth/token", iter([big[:9000], big[9000:]]), form)[0] == 413
    assert send(gateway, "GET", "/.well-known/jwks.json", b"x", {"content-length": "1"})[0] == 400


def write(folder: Path, config: dict[str, Any]) -> Path:
    path = folder / "bastion.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_service_route_on_a_builtin_path_is_a_load_error(tmp_path: Path) -> None:
    """A route declared on exactly /oauth/token would never be reached once the server is
    on: the load fails, naming the route and the setting; with the server off it loads."""
    config: dict[str, Any] = {
        "oauth_server": {"enabled": True},
        "services": [{"name": "api", "upstream": "http://127.0.0.1:9",
                      "routes": [{"path": "/oauth/token", "public": True}]}],
    }
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, config))
    assert "/oauth/token is answered by the built-in OAuth server (oauth_server.enabled)" in str(caught.value)
    config["oauth_server"] = {"enabled": False}
    assert load_config(write(tmp_path, config)).builtin_routes == ()


def test_several_workers_on_the_memory_backend_are_refused(tmp_path: Path) -> None:
    """Failure counters and assertion replay memory must be shared by every worker: with the
    server on, the memory backend and more than one worker is a configuration error."""
    config = {
        "oauth_server": {"enabled": True},
        "services": [{"name": "api", "upstream": "http://127.0.0.1:9",
                      "routes": [{"path": "/", "prefix": True, "public": True}]}],
    }
    loaded = load_config(write(tmp_path, config))
    assert check_backends(loaded, 1) is None
    issue = check_backends(loaded, 2)
    assert issue is not None and "oauth_server" in issue.message
