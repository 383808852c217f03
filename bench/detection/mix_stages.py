"""In process: what the ``bastion-inspect`` scenario's stages cost per request of the mix.

    python bench/detection/mix_stages.py [--requests 3000] [--rounds 7]

Loads the config ``bench/run.py --mix`` gives ``bastion-inspect`` (the mix's OpenAPI
document, validation on, detection in block mode at paranoia 1), builds each request of
the mix as the gateway does (header strings decoded from bytes, the route matched, a
fresh Request and Exchange), and runs the route's request chain, as the gateway does
before forwarding. Each round sends new sequence numbers in the order's comment and gift
message, like wrk does, so detection meets free text it has not seen.

It prints the best round's chain time per request, minus the time to build the requests
alone (also printed): the stages' in-process share of what ``bench/run.py --mix`` measures
through the gateway, without sockets, other processes or cold caches. Run it with a
compiled install's Python (``/path/to/venv/bin/python bench/detection/mix_stages.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.config import load_config
from bastion.proxy.runtime import RouteRuntime, Runtime
from bastion.routing.router import Match
from bastion.types import Exchange, Request
from proxybench import mix
from proxybench.scenarios import INSPECT, SCENARIOS
from proxybench.servers import bastion_config

HOST = "api.example.com"
RawRequest = tuple[str, bytes, list[tuple[bytes, bytes]], bytes]


def runtime() -> Runtime:
    """The bastion-inspect scenario's routes and chains, loaded from its generated config."""
    scenario = next(s for s in SCENARIOS if s.name == INSPECT)
    folder = Path(tempfile.mkdtemp(prefix="mix-stages-"))
    api = folder / "openapi.json"
    api.write_text(json.dumps(scenario.openapi))
    config = bastion_config(port=1, admin_port=2, upstream_port=3, access_log=None,
                            policies=scenario.policies, overrides=scenario.overrides, openapi=api)
    path = folder / "bastion.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return Runtime(load_config(str(path)))


def wire_requests(first: int, count: int) -> list[RawRequest]:
    """``count`` requests of the mix as bytes, sequence numbers from ``first``."""
    out: list[RawRequest] = []
    for i in range(first, first + count):
        req = mix.MIX[i % len(mix.MIX)]
        seq = b"%05d" % (i % 100_000)
        headers = [(k.lower().encode(), v.encode().replace(mix.SEQ_PLACEHOLDER.encode(), seq)) for k, v in req.headers]
        body = req.body.replace(mix.SEQ_PLACEHOLDER.encode(), seq)
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        out.append((req.method, req.target.encode(), headers, body))
    return out


def build(rt: Runtime, raw: RawRequest) -> tuple[RouteRuntime, Request]:
    """What the gateway's parser and prelude make of a request (X-Request-Id is replaced)."""
    method, target, wire_headers, body = raw
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in wire_headers if k != b"x-request-id"]
    text = target.decode("latin-1")
    path, _, query = text.partition("?")
    match = rt.router.match(HOST, path, method)
    assert isinstance(match, Match), text
    request = Request(method, text, path, query, headers, client_ip="127.0.0.1", scheme="http", host=HOST,
                      http_version="1.1")
    request.path_params = match.params
    route: RouteRuntime = match.route
    if route.chain.needs_request_body:
        request.body = body
    return route, request


def run_chains(rt: Runtime, raws: list[RawRequest]) -> None:
    for raw in raws:
        route, request = build(rt, raw)
        answer = route.chain.request(Exchange(request, "rid", route.service, route.id, 0.0))
        assert answer is None, answer  # every request of the mix is valid and clean


def build_only(rt: Runtime, raws: list[RawRequest]) -> None:
    for raw in raws:
        build(rt, raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    rt = runtime()
    run_chains(rt, wire_requests(90_000, 300))  # warm-up: compiled paths, remembered headers
    best_chain = best_build = float("inf")
    for r in range(args.rounds):
        raws = wire_requests(r * args.requests, args.requests)
        start = time.perf_counter()
        build_only(rt, raws)
        best_build = min(best_build, (time.perf_counter() - start) / len(raws))
        raws = wire_requests(50_000 + r * args.requests, args.requests)  # new text again
        start = time.perf_counter()
        run_chains(rt, raws)
        best_chain = min(best_chain, (time.perf_counter() - start) / len(raws))
    result: dict[str, Any] = {
        "stages_us_per_request": round((best_chain - best_build) * 1e6, 2),
        "build_us_per_request": round(best_build * 1e6, 2),
        "requests_per_round": args.requests,
        "rounds": args.rounds,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
