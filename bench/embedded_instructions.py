"""Instructions per request of the embedded mode, counted by callgrind (no timing noise).

    python bench/embedded_instructions.py [--python .venv/bin/python] [--requests 1000] [--hashseed 0]
                                          [--keep DIR] [--served [--cache-sim]]

One process under ``valgrind --tool=callgrind`` imports the FastAPI example (examples/fastapi),
builds the same applications as ``bench/embedded.py --in-process`` (the example alone,
the example behind ``protect()``, a trivial application alone and behind the same
``protect()``), warms each up with the same request (``GET /books?q=dune&limit=5``), then
for each one zeroes the counters, runs ``--requests`` requests' ASGI messages through it
(no server, no socket) and dumps the counters. Printed: instructions per request for each,
the ratio example alone / protected (issue 21's target is 0.8 in requests per second; in
process, without the server's own share, the ratio is the stricter of the two), and what
``protect()`` adds to the trivial application (Bastion's own steps and stages). Instruction
counts do not depend on the machine's load, so two builds can be compared on a busy
machine. Needs valgrind (Debian package). Slow: a few minutes.

``--served`` counts what the server process spends instead, socket and server included:
uvicorn (uvloop, httptools, its access log off, as ``bench/embedded.py`` runs it) serves
``app:api`` (the example alone), then ``app:app`` (behind ``protect()``), each under
callgrind with its instrumentation off until the server listens (so that the imports and
the start do not take many minutes). This script, outside valgrind, sends ``--requests``
keep-alive requests over 4 connections between a zero and a dump of the counters (after a
warm-up), and prints both counts per request and their ratio: the served ratio, which
``bench/embedded.py`` measures in requests per second. Work that follows the clock
(uvicorn's 0.1 s tick, the access log's 20 ms flush timer) weighs more under valgrind, where
a request takes ~50x longer, than in a real run. ``--cache-sim`` (with ``--served``) also has
callgrind simulate the caches and prints the L1 instruction and data misses per request beside
the count: where the clock's gap comes from when the request's path no longer fits the caches.
"""

from __future__ import annotations

import argparse
import asyncio
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

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fastapi"
PATH = "/books?q=dune&limit=5"
NAMES = ("alone", "protected", "trivial", "trivial+protect")


def _control(option: str) -> None:
    """``callgrind_control option`` on this process, which keeps running Python meanwhile:
    valgrind reads its command file between blocks of executed code, never while the
    process waits in a system call."""
    proc = subprocess.Popen(["callgrind_control", option, str(os.getpid())], stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        sum(range(1000))  # keep executing code until callgrind has answered
    if proc.returncode != 0:
        raise RuntimeError(f"callgrind_control {option} failed")


def drive(requests: int) -> None:
    """The process under callgrind: one zero and one dump around each application's run."""
    import importlib.util

    from bastion.asgi import protect

    folder = Path(tempfile.mkdtemp(prefix="bastion-bench-embedded-"))
    for name in ("app.py", "bastion.yaml", "openapi.json"):
        shutil.copy(EXAMPLE / name, folder / name)
    spec = importlib.util.spec_from_file_location("bench_embedded_app", folder / "app.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    path, _, query = PATH.partition("?")
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def trivial(scope: dict[str, object], receive: object, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"[]"})

    guarded = protect(trivial, config=folder / "bastion.yaml")
    apps = dict(zip(NAMES, (example.api, example.app, trivial, guarded), strict=True))

    async def run() -> None:
        await example.app.startup()
        await guarded.startup()
        try:
            for app in apps.values():
                for _ in range(max(50, requests // 5)):
                    await app(dict(scope), receive, send)
            if set(statuses) != {200}:
                raise RuntimeError(f"the request was not answered with 200 by each: {sorted(set(statuses))}")
            for app in apps.values():
                _control("--zero")
                for _ in range(requests):
                    await app(dict(scope), receive, send)
                _control("--dump")
        finally:
            await example.app.shutdown()
            await guarded.shutdown()

    try:
        asyncio.run(run())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


#: callgrind's cache events, as ``--cache-sim=yes`` names them, and what they are printed as.
CACHE_EVENTS = {"I1mr": "I1 misses", "D1mr": "D1 read misses", "D1mw": "D1 write misses"}


def _totals(dump: Path) -> dict[str, int]:
    """A dump's totals by event name (``Ir``, and the cache events when simulated)."""
    text = dump.read_text()
    events = re.search(r"^events: (.+)$", text, re.M)
    totals = re.search(r"^(?:summary|totals): ([\d ]+)$", text, re.M)
    if events is None or totals is None:
        raise RuntimeError(f"no totals in {dump}")
    return dict(zip(events.group(1).split(), (int(n) for n in totals.group(1).split()), strict=False))


def served(
    python: Path, requests: int, hashseed: str, keep: Path | None, start_timeout: float, cache_sim: bool = False
) -> int:
    """``--served``: uvicorn under callgrind, alone then protected (see the module's doc)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from instructions import send
    from proxybench.procs import free_port

    per: dict[str, float] = {}
    misses: dict[str, dict[str, float]] = {}
    for name, target in (("alone", "app:api"), ("protected", "app:app")):
        with tempfile.TemporaryDirectory(prefix="bastion-callgrind-") as tmp:
            folder = Path(tmp)
            for file in ("app.py", "bastion.yaml", "openapi.json"):
                shutil.copy(EXAMPLE / file, folder / file)
            port = free_port()
            out = folder / "callgrind.out"
            argv = [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--instr-atstart=no",
                "--separate-threads=yes", *(["--cache-sim=yes"] if cache_sim else []),
                str(python), "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
                "--no-access-log", "--log-level", "warning", "--loop", "uvloop", "--http", "httptools",
            ]
            with (folder / "server.log").open("wb") as log:
                proc = subprocess.Popen(argv, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONHASHSEED": hashseed})
            try:
                deadline = time.monotonic() + start_timeout
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        if proc.poll() is not None or time.monotonic() > deadline:
                            print((folder / "server.log").read_text()[-2000:], file=sys.stderr)
                            return 1
                        time.sleep(1)
                # uvicorn's 0.1 s tick runs code while it waits: callgrind reads its commands then.
                subprocess.run(["callgrind_control", "--instr=on", str(proc.pid)], check=True,
                               stdout=subprocess.DEVNULL)
                send(port, max(100, requests // 5), path=PATH)
                subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, stdout=subprocess.DEVNULL)
                send(port, requests, path=PATH)
                subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, stdout=subprocess.DEVNULL)
            finally:
                proc.terminate()
                proc.wait(120)
            # One dump per thread (``.1-01`` is the event loop's): the others are
            # asyncio.to_thread's, the store poller's reads once a second, whose work follows
            # the clock (under valgrind ~50x more of it per request than in a real run).
            for dumped in sorted(folder.glob("callgrind.out.1-*")):
                totals = _totals(dumped)
                thread = "loop" if dumped.name.endswith("-01") else "threads"
                per[f"{name} ({thread})"] = per.get(f"{name} ({thread})", 0.0) + totals["Ir"] / requests
                if thread == "loop" and cache_sim:
                    misses[name] = {event: totals.get(event, 0) / requests for event in CACHE_EVENTS}
                if keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(dumped, keep / f"callgrind.served.{name}.{dumped.name.rsplit('-', 1)[1]}")
    print(f"served by uvicorn, GET {PATH}, {requests} requests each, instructions per request of the server")
    for name, value in per.items():
        print(f"{name:<16} {value:>12,.0f}")
    for name, counts in misses.items():
        print(f"{name} (loop): " + ", ".join(f"{label} {counts[event]:,.0f}" for event, label in CACHE_EVENTS.items()))
    alone, protected = per["alone (loop)"], per["protected (loop)"]
    print(f"on the event loop's thread, protect() adds {protected - alone:,.0f} instructions per request; "
          f"alone / protected: {alone / protected:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--hashseed", default="0")
    parser.add_argument("--keep", type=Path, help="copy the dumps here (callgrind.out.1 to .4, for callgrind_annotate)")
    parser.add_argument("--served", action="store_true",
                        help="count uvicorn's process serving the example, alone and protected")
    parser.add_argument("--cache-sim", action="store_true",
                        help="with --served: simulate the caches, print L1 misses per request too")
    parser.add_argument("--start-timeout", type=float, default=900,
                        help="seconds uvicorn may take to listen under valgrind (--served)")
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        drive(args.requests)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not on the PATH (Debian package 'valgrind')", file=sys.stderr)
        return 2
    if args.served:
        return served(args.python, args.requests, args.hashseed, args.keep, args.start_timeout, args.cache_sim)
    with tempfile.TemporaryDirectory(prefix="bastion-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        started = time.monotonic()
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--collect-atstart=yes",
             str(args.python), __file__, "--driver", "--requests", str(args.requests)],
            check=True, env={**os.environ, "PYTHONHASHSEED": args.hashseed},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # the example's access log, valgrind's notes
        )
        totals: list[int] = []
        for i in range(1, len(NAMES) + 1):
            match = re.search(r"^(?:summary|totals): (\d+)", Path(f"{out}.{i}").read_text(), re.M)
            if match is None:
                raise RuntimeError(f"no totals in {out}.{i}")
            totals.append(int(match.group(1)))
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f"{out}.{i}", args.keep / f"callgrind.out.{i}")
    per = {name: total / args.requests for name, total in zip(NAMES, totals, strict=True)}
    print(f"in process, GET {PATH}, {args.requests} requests each, instructions per request "
          f"(callgrind, {time.monotonic() - started:.0f} s)")
    for name in NAMES:
        print(f"{name:<16} {per[name]:>12,.0f}")
    print(f"protect() adds {per['trivial+protect'] - per['trivial']:,.0f} instructions per request; "
          f"the example alone / protected: {per['alone'] / per['protected']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
