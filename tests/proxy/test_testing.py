"""The test helpers shipped in ``bastion.testing``: the response parser and the gateway process."""

from __future__ import annotations

import pytest

from bastion.testing import GatewayProcess, IncompleteResponse, parse_responses

from .conftest import gateway_config
from .scripted import ScriptedUpstream
from .util import assert_problem, one


def test_parse_responses_splits_every_framing() -> None:
    """One buffer with a 100 Continue, a Content-Length body, a HEAD answer (length but no
    body), a chunked body with a trailer and a close-delimited body parses into five
    responses in order."""
    data = (b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n"
            b"HTTP/1.0 200 OK\r\n\r\nuntil close")
    responses = parse_responses(data, ["POST", "HEAD", "GET", "GET"])
    assert [r.status for r in responses] == [100, 200, 200, 201, 200]
    assert [r.framing for r in responses] == ["none", "length", "none", "chunked", "close"]
    assert [r.body for r in responses] == [b"", b"abc", b"", b"abcde", b"until close"]
    assert responses[3].trailers == [("X-Sum", "5")]
    assert responses[2].header("content-length") == "11"


def test_parse_responses_refuses_a_cut_response() -> None:
    """A body shorter than its Content-Length is incomplete, and says how long it will be."""
    with pytest.raises(IncompleteResponse) as info:
        parse_responses(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert info.value.needed == len(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n") + 10


def test_gateway_process_reload(upstream: ScriptedUpstream) -> None:
    """``GatewayProcess.reload`` applies a changed config through the admin API: a route
    added to the file answers after the reload, and a broken file is rejected with 422
    while the previous config keeps serving."""
    routes = [{"path": "/one", "public": True}]
    config = gateway_config(upstream.url, routes=routes)
    with GatewayProcess(config, workers=2) as gw:
        assert_problem(one(gw, "GET", "/two"), 404)
        gw.write_config({**gw.config, "services": [{**config["services"][0], "routes": [
            *routes, {"path": "/two", "public": True}]}]})
        assert gw.reload()[0] == 200
        statuses = set()
        for _ in range(20):  # both workers, whichever the kernel picks
            statuses.add(one(gw, "GET", "/two").status)
            if statuses == {200}:
                break
        assert 200 in statuses
        gw.write_config("services: [oops")
        status, body = gw.reload()
        assert status == 422
        assert body["errors"]
        assert one(gw, "GET", "/one").status == 200
        assert "gateway on" in gw.stderr_text()
