"""Instructions per request of one Bastion worker, counted by callgrind (no timing noise).

    python bench/instructions.py [--python .venv/bin/python]
                                 [--scenario none|default|apikey|jwt|inspect|protect|audit|monitor|
                                             redis-none|redis-ratelimit|memory-ratelimit|noop-head] [--mix]
                                 [--hashseed N] [--gc default|freeze|off] [--requests 2000]

Starts the nginx upstream of ``run.py`` and one worker (``python -m bastion.proxy.worker``,
no supervisor) under ``valgrind --tool=callgrind``, warms it up, zeroes the counters, sends
``--requests`` keep-alive ``GET /`` (``--mix``: run.py's JSON API mix, with its sequence
numbers) over 4 connections, and prints the instructions the
worker executed per request (``Ir``: all threads, and the event loop's thread alone) and
the garbage collections it ran meanwhile.
``--scenario inspect`` is run.py's bastion-inspect (validation and detection, routes from
the mix's OpenAPI document) and sends the mix; ``--scenario apikey`` is run.py's
bastion-apikey (the catch-all route behind API-key authentication, a key made by
``bastion keys create`` sent as a bearer token with every request); ``--scenario jwt`` is the
same route behind JWT authentication instead (one HS256 issuer, its secret in a file beside the
config), the same signed token with every request: after the first, a cached verified token
(the cache hit, the expiry test and the revocation lookup of its ``jti``); ``--scenario
protect`` is run.py's bastion-protect (response schema filtering and redaction, routes from
the documents' OpenAPI document) and sends ``GET /orders-1k`` (``--path`` for another path, with any scenario).
``--scenario audit`` is ``none`` with the audit log on (to the store, SQLite); ``--scenario
monitor`` adds the threat detectors: the issue's "audit log + metrics + detectors" (metrics
are always on), compared with ``none``. For those two the counters are zeroed, and dumped,
only once the store took every record spooled so far: the audit threads' work for the
requests sent is inside the count, the store's first opening (its migration) is not. ``--scenario redis-ratelimit`` is
``redis_roundtrip.py``'s redis-ratelimit (the ``ratelimit`` stage, two limits, one ``EVALSHA``
per request) against a ``redis-server`` the script starts on a free port; ``redis-none`` is
the same worker and backend without the stage, ``memory-ratelimit`` the stage on the memory
backend (what the Redis round trip adds, apart from the stage's own work).
``--scenario noop-head`` is ``none`` plus a bench-only head stage whose hook returns ``None``
(added to every route by the worker's loader, as the tests' toy stages are): what the chain
charges for a stage that does nothing, compared with ``none``.
Instruction counts do not depend on the
load of the machine, so two settings can be compared on a busy machine: ``--hashseed``
fixes ``PYTHONHASHSEED`` (string hashes decide dict and set layouts), ``--gc freeze``
calls ``gc.freeze()`` once the worker has started (the configuration's objects leave the
collector's generations), ``--gc off`` disables the
collector. Needs valgrind (Debian package). Slow: about a minute per run.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxybench import documents, mix
from proxybench.procs import free_port
from proxybench.scenarios import NO_STAGES
from proxybench.servers import bastion_config, start_upstream
from redis_roundtrip import RATELIMIT_POLICIES, start_redis

ROOT = Path(__file__).resolve().parent.parent
#: The scenarios whose worker keeps its state in a redis-server started for the run.
REDIS_SCENARIOS = ("redis-none", "redis-ratelimit")

#: Run as the worker's main: optional GC setting applied once the worker listens, and
#: the number of collections per generation reported on SIGUSR2 (to stderr).
WRAPPER = """
import gc, signal, sys
from dataclasses import replace
from bastion.proxy import worker
mode = sys.argv.pop(1)
noop_head = sys.argv.pop(1) == "noop-head"
if noop_head:
    from bastion.config import load_config
    from bastion.pipeline.stage import HeadStage, StageConfig
    class NoopHead(HeadStage):
        def __init__(self):
            super().__init__("bench_noop", StageConfig())
        def on_request_head(self, exchange):
            return None
    def load(path):
        loaded = load_config(path)
        routes = tuple(replace(r, built=(*r.built, NoopHead())) for r in loaded.routes)
        return replace(loaded, routes=routes)
    init = worker.Worker.__init__
    def with_noop(self, *args, **kwargs):
        init(self, *args, load=load, **kwargs)
    worker.Worker.__init__ = with_noop
def report(*_):
    print("GCSTATS " + repr([s["collections"] for s in gc.get_stats()]), file=sys.stderr, flush=True)
signal.signal(signal.SIGUSR2, report)
start = worker.Worker.start
async def started(self):
    await start(self)
    if mode == "freeze":
        gc.collect()
        gc.freeze()
    elif mode == "off":
        gc.disable()
worker.Worker.start = started
sys.exit(worker.main())
"""


def mix_request(i: int) -> bytes:
    """The mix's request ``i % 3`` as bytes, its sequence number ``i`` (as wrk's script does)."""
    req = mix.MIX[i % len(mix.MIX)]
    seq = f"{i % 100000:05d}"
    body = req.body.replace(mix.SEQ_PLACEHOLDER.encode(), seq.encode())
    head = [f"{req.method} {req.target} HTTP/1.1"]
    head += [f"{k}: {v.replace(mix.SEQ_PLACEHOLDER, seq)}" for k, v in req.headers]
    if body:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def send(port: int, count: int, connections: int = 4, use_mix: bool = False, extra: bytes = b"",
         path: str = "/") -> None:
    """``count`` keep-alive requests (``GET path``, or the JSON API mix) over ``connections``
    sockets, one at a time per socket; ``extra`` header lines go with each ``GET path``."""
    plain = f"GET {path} HTTP/1.1\r\nHost: bench\r\n".encode() + extra + b"\r\n"
    socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(connections)]
    try:
        for i in range(count):
            sock = socks[i % connections]
            sock.sendall(mix_request(i) if use_mix else plain)
            data = b""
            while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the worker closed the connection")
                data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {data[:200]!r}")
    finally:
        for sock in socks:
            sock.close()


def _length(data: bytes) -> int:
    match = re.search(rb"(?i)content-length: *(\d+)", data)
    return int(match.group(1)) if match else 0


def api_key_header(python: Path, config: dict[str, Any], path: Path, folder: Path) -> bytes:
    """As run.py's bastion-apikey: the catch-all route requires authentication, a consumer
    ``bench`` gets a key made by ``bastion keys create`` in a SQLite store beside the config
    (written to ``path``); the header line that sends it."""
    config["consumers"] = [{"name": "bench", "roles": ["user"]}]
    config["store"] = {"url": f"sqlite:///{folder / 'bench.db'}"}
    for route in config["services"][0].get("routes", []):
        route["public"] = False
    path.write_text(json.dumps(config))
    made = subprocess.run([str(python), "-m", "bastion", "keys", "create", "bench", "-c", str(path)],
                          capture_output=True, text=True, timeout=120, check=True)
    return f"Authorization: Bearer {made.stdout.strip().splitlines()[-1]}\r\n".encode()


def jwt_header(config: dict[str, Any], folder: Path) -> bytes:
    """The catch-all route behind JWT authentication: one issuer whose HS256 secret is in a
    file in ``folder``, API keys off (so the worker needs no store); the header line sending
    a token it signs, valid for a day, with a ``jti`` (revocation is looked up on every hit)."""
    secret = os.urandom(32)
    (folder / "jwt.secret").write_bytes(secret)
    issuer = "https://idp.bench"
    policies = config.setdefault("policies", {})
    policies["auth"] = {
        "api_keys": {"enabled": False},
        "jwt": {"issuers": [{"issuer": issuer, "secret_file": str(folder / "jwt.secret"),
                             "algorithms": ["HS256"], "audiences": ["bench-api"]}]},
    }
    for route in config["services"][0].get("routes", []):
        route["public"] = False

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": issuer, "aud": "bench-api", "sub": "bench", "scope": "bench:read", "iat": now,
              "exp": now + 86_400, "jti": os.urandom(8).hex()}
    signing_input = part({"alg": "HS256", "typ": "JWT"}) + "." + part(claims)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    token = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    return f"Authorization: Bearer {token}\r\n".encode()


def wait_stored(spool: Path, timeout: float) -> None:
    """Wait until the audit store took every record the worker spooled (its spool file is
    emptied then), so that the store thread's work for the requests sent falls inside the
    count, and the store's first opening (its migration) before it."""
    deadline = time.monotonic() + timeout
    time.sleep(1)  # the writer spools a batch every flush_interval
    while any(path.stat().st_size for path in spool.glob("*.spool")) or not any(spool.glob("*.spool")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the audit store did not take the spool {spool} in {timeout:.0f} s")
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/instructions.py")
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python")
    parser.add_argument("--scenario", choices=("none", "default", "apikey", "jwt", "inspect", "protect", "audit",
                                               "monitor", *REDIS_SCENARIOS, "memory-ratelimit", "noop-head"),
                        default="none",
                        help="inspect: run.py's bastion-inspect (validation + detection; implies --mix); "
                             "protect: run.py's bastion-protect (response filtering + redaction; "
                             "path /orders-1k unless --path)")
    parser.add_argument("--mix", action="store_true", help="send the JSON API mix instead of GET /")
    parser.add_argument("--path", help="the path of every GET (default /, /orders-1k for protect)")
    parser.add_argument("--hashseed", default="0")
    parser.add_argument("--gc", choices=("default", "freeze", "off"), default="default")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--start-timeout", type=float, default=300,
                        help="seconds the worker may take to listen under valgrind (more on a loaded machine)")
    parser.add_argument("--keep", type=Path, help="copy the callgrind dump here (for callgrind_annotate)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bastion-callgrind-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        upstream = start_upstream(stack, folder, 1)
        port = free_port()
        use_mix = args.mix or args.scenario == "inspect"
        openapi = None
        policies: dict[str, object] | None = (
            dict(NO_STAGES) if args.scenario in ("none", "apikey", "jwt", "audit", "monitor", "redis-none", "noop-head")
            else None
        )
        overrides: dict[str, object] = {}
        if args.scenario in ("audit", "monitor"):
            overrides["audit"] = {"enabled": True, "spool_dir": str(folder / "spool")}
        if args.scenario == "monitor":
            overrides["detectors"] = {"enabled": True}
        if args.scenario == "inspect":
            openapi = folder / "openapi.json"
            openapi.write_text(json.dumps(mix.OPENAPI))
            policies = {**NO_STAGES, "detection": {"paranoia": 1}}
        if args.scenario == "protect":
            openapi = folder / "openapi.json"
            openapi.write_text(json.dumps(documents.OPENAPI))
            policies = {**NO_STAGES, "response": {"schema": "filter"},
                        "redact": {"types": ["card", "ssn", "secrets"]}}
        if args.scenario.endswith("-ratelimit"):
            policies = dict(RATELIMIT_POLICIES)
        if args.scenario in REDIS_SCENARIOS:
            _, redis_port = start_redis(stack, folder)
            overrides["backends"] = {"state": "redis", "redis": {"url": f"redis://127.0.0.1:{redis_port}/0",
                                                                 "timeout": 1.0}}
        path_wanted = args.path or ("/orders-1k" if args.scenario == "protect" else "/")
        config = bastion_config(port=port, admin_port=free_port(), upstream_port=upstream.port,
                                access_log=folder / "access.log" if args.scenario == "default" else None,
                                policies=policies, overrides=overrides, openapi=openapi)
        path = folder / "bastion.yaml"
        extra = b""
        if args.scenario == "apikey":
            extra = api_key_header(args.python, config, path, folder)
        if args.scenario == "jwt":
            extra = jwt_header(config, folder)
        path.write_text(json.dumps(config))
        out = folder / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": args.hashseed}
        log = (folder / "worker.log").open("wb")
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--collect-atstart=yes",
             "--separate-threads=yes",
             str(args.python), "-c", WRAPPER, args.gc, args.scenario,
             "--config", str(path), "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        stack.callback(lambda: proc.poll() is None and proc.kill())
        deadline = time.monotonic() + args.start_timeout
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                print((folder / "worker.log").read_text()[-2000:], file=sys.stderr)
                return 1
            time.sleep(1)
        send(port, args.warmup, use_mix=use_mix, extra=extra, path=path_wanted)
        audited = args.scenario in ("audit", "monitor")
        if audited:
            wait_stored(folder / "spool", args.start_timeout)
        subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, stdout=subprocess.DEVNULL)
        proc.send_signal(__import__("signal").SIGUSR2)
        time.sleep(1)
        send(port, args.requests, use_mix=use_mix, extra=extra, path=path_wanted)
        if audited:
            wait_stored(folder / "spool", args.start_timeout)
        proc.send_signal(__import__("signal").SIGUSR2)
        time.sleep(1)
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, stdout=subprocess.DEVNULL)
        time.sleep(1)
        proc.terminate()
        proc.wait(600)  # a loaded machine under valgrind may take minutes to stop it
        # The dump asked for after the load (``callgrind.out.1``, one file per thread with
        # --separate-threads): from the zeroing to then. Thread 1 runs the event loop; the
        # others are asyncio.to_thread's (the API key store's polls and last-use writes),
        # whose work follows the clock, not the load: under valgrind a request takes ~50x
        # longer, so a poll per second weighs ~50x more per request than in a real run.
        per_thread: dict[int, int] = {}
        for dumped in folder.glob("callgrind.out.1-*"):
            match = re.search(r"^(?:summary|totals): (\d+)", dumped.read_text(), re.M)
            if match is None:
                raise RuntimeError(f"no totals in {dumped}")
            per_thread[int(dumped.name.rsplit("-", 1)[1])] = int(match.group(1))
        if 1 not in per_thread:
            raise RuntimeError(f"no dump of the main thread in {folder}")
        ir = sum(per_thread.values())
        loop_ir = per_thread[1]
        if args.keep is not None:
            shutil.copyfile(folder / "callgrind.out.1-01", args.keep)
        stats = re.findall(r"GCSTATS (\[.*\])", (folder / "worker.log").read_text())
        gcs = [b - a for a, b in zip(eval(stats[0]), eval(stats[1]), strict=True)] if len(stats) >= 2 else "?"
        load = " mix" if use_mix else " GET " + path_wanted
        what = f"scenario={args.scenario}{load} hashseed={args.hashseed} gc={args.gc}"
        print(f"{what}: {ir / args.requests:,.0f} "
              f"instructions per request ({args.requests} requests), "
              f"{loop_ir / args.requests:,.0f} of them on the event loop's thread; "
              f"GC collections per generation meanwhile {gcs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
