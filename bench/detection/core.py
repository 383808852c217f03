"""The gateway's own HTTP/1.1 core in front of the offline detection measure.

A request the real gateway refuses before any stage runs (llhttp and the strict framing
rules of ``proxy/http1.py``, the target parser and routing of ``proxy/prelude.py``, the
body limits of ``proxy/jsonscan.py``) never reaches detection: the measure must count it as
blocked, and must not count it as passed. :class:`CoreGate` runs a request's bytes through
exactly that code, with a configuration of one catch-all public route, and gives either the
core's refusal or the :class:`~bastion.types.Request` the stages would see (hop-by-hop
headers dropped, the target normalised, the body as received). Nothing here re-implements
a check: it calls the data plane's functions.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bastion.config import load_config
from bastion.proxy.http1 import RequestReader
from bastion.proxy.jsonscan import over_body_json_limits
from bastion.proxy.prelude import Refusal, prelude
from bastion.proxy.runtime import Runtime
from bastion.types import Request

#: The address the requests come from (not a trusted proxy).
PEER = "192.0.2.10"


@dataclass(frozen=True, slots=True)
class CoreRefusal:
    """The core refused the request: its status and the reason in its access record."""

    status: int
    reason: str
    detail: str


class CoreGate:
    """One catch-all public route (``/``, prefix) in front of a dummy upstream, as a user
    with no OpenAPI document would configure it; detection itself is run by the caller."""

    def __init__(self) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "bastion.yaml"
            path.write_text(
                json.dumps(
                    {
                        "listen": {"host": "127.0.0.1", "port": 0},
                        "access_log": {"enabled": False},
                        "services": [
                            {
                                "name": "corpus",
                                "upstream": "http://127.0.0.1:9",
                                "routes": [{"path": "/", "prefix": True, "public": True}],
                            }
                        ],
                    }
                )
            )
            self.runtime = Runtime(load_config(path))

    def admit(self, wire: bytes) -> CoreRefusal | Request:
        """The core's refusal of the request in ``wire`` (its first request), or the request
        the stages would see. The client closes after sending: a body shorter than its
        declared length is cut short, as the gateway sees it when the client gives up."""
        reader = RequestReader(self.runtime.limits)
        reader.feed(wire)
        reader.end_of_input()
        if not reader.queue:
            # Nothing parsed to a head: the gateway waits, then times the client out.
            return CoreRefusal(408, "http.timeout", "No complete request head.")
        req = reader.queue[0]
        _, outcome = prelude(self.runtime, req, PEER, "http")
        if isinstance(outcome, Refusal):
            return CoreRefusal(outcome.status, outcome.reason, outcome.detail)
        route, exchange = outcome
        if req.error is not None:  # the body was broken or cut short after the head
            return CoreRefusal(req.error[0], req.reason, req.error[1])
        request = exchange.request
        body = req.take_buffered()
        request.body = body or None
        if request.body:
            over = over_body_json_limits(request, route.bounds)
            if over is not None:
                return CoreRefusal(413, over[0], over[1])
        return request
