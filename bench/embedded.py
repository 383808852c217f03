"""The embedded mode's cost: the FastAPI example alone vs behind ``protect()``, same invocation.

    python bench/embedded.py                          # --duration 10 --rounds 3 --connections 16
    python bench/embedded.py --duration 4 --rounds 1  # a short check (about 15 s)
    python bench/embedded.py --in-process 2000         # no server: CPU µs per request, in process

examples/fastapi is copied into a temporary folder and served twice by uvicorn (one process,
uvloop and httptools, uvicorn's own access log off), on 127.0.0.1 and a free port each:
``app:api`` (the FastAPI application alone) and ``app:app`` (the same application behind
``bastion.asgi.protect`` with the example's bastion.yaml: routing, validation and detection at
paranoia 1, the headers stage, Bastion's access log to the server's output). Each round runs
``wrk -t1 -c<connections> -d<duration>s`` against one, then the other (after a 1 s warm-up),
with ``GET /books?q=dune&limit=5``: a request validation and detection both inspect and the
application answers with 200. Printed per target: the median requests/s over rounds, the
ratio protected/alone (issue 21's target: >= 0.8), and the CPU µs per request the server
process spent (user + system, from /proc). Needs ``wrk``; every process it starts is stopped
when it ends.

``--in-process N`` needs no server and no wrk: the same request's ASGI messages go straight
to the applications, N times per round, and each one's CPU time per request is printed:
the example alone and protected, and a trivial application alone and behind the same
protect() (the difference is what Bastion itself adds: its steps and its stages).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxybench.procs import ManagedProcess, cpu_seconds, free_port, http_get
from proxybench.wrk import run_wrk, wrk_command

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fastapi"
PATH = "/books?q=dune&limit=5"
TARGETS = (("alone", "app:api"), ("protected", "app:app"))


def serve(folder: Path, name: str, target: str) -> tuple[ManagedProcess, int]:
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning", "--loop", "uvloop", "--http", "httptools",
    ]
    # Run from the example's folder (``exec``: the PID measured is uvicorn's): app.py imports
    # from there, and bastion.yaml and its store are found there.
    proc = ManagedProcess(name, ["sh", "-c", f'cd "{folder}" && exec "$@"', "sh", *argv], folder / f"{name}.log")
    proc.start()
    proc.wait_until(lambda: http_get(port, PATH)[0] == 200, 30, "an answer to GET " + PATH)
    return proc, port


def in_process(requests: int, rounds: int) -> None:
    """CPU µs per request with no server and no socket: the example's ASGI applications
    called with the same request's messages, and a trivial application alone and behind
    the same protect(), which isolates what Bastion adds (its steps and stages)."""
    import asyncio
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
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        return None

    async def trivial(scope: dict[str, object], receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"[]"})  # type: ignore[operator]

    guarded = protect(trivial, config=folder / "bastion.yaml")
    apps = {"alone": example.api, "protected": example.app, "trivial": trivial, "trivial+protect": guarded}

    async def measure() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {name: [] for name in apps}
        await example.app.startup()
        await guarded.startup()
        try:
            for _ in range(rounds):
                for name, app in apps.items():
                    for _ in range(requests // 10):  # warm
                        await app(dict(scope), receive, send)
                    start = time.process_time()
                    for _ in range(requests):
                        await app(dict(scope), receive, send)
                    out[name].append((time.process_time() - start) / requests * 1e6)
        finally:
            await example.app.shutdown()
            await guarded.shutdown()
        return out

    try:
        found = asyncio.run(measure())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"in process, GET {PATH}, {requests} requests x {rounds} rounds, median CPU µs per request")
    for name, values in found.items():
        print(f"{name:<16} {statistics.median(values):>8.1f}")
    alone, protected = statistics.median(found["alone"]), statistics.median(found["protected"])
    added = statistics.median(found["trivial+protect"]) - statistics.median(found["trivial"])
    print(f"Bastion adds {added:.1f} µs per request; the example alone / protected: {alone / protected:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--in-process", type=int, metavar="N", default=0,
                        help="no server: N requests per round through the ASGI applications themselves")
    args = parser.parse_args()
    if args.in_process:
        in_process(args.in_process, args.rounds)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not on the PATH (Debian package 'wrk')", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="bastion-bench-embedded-"))
    for name in ("app.py", "bastion.yaml", "openapi.json"):
        shutil.copy(EXAMPLE / name, folder / name)
    servers: dict[str, tuple[ManagedProcess, int]] = {}
    rps: dict[str, list[float]] = {name: [] for name, _ in TARGETS}
    cpu: dict[str, list[float]] = {name: [] for name, _ in TARGETS}
    errors: dict[str, int] = {name: 0 for name, _ in TARGETS}
    try:
        for name, target in TARGETS:
            servers[name] = serve(folder, name, target)
        url = "http://127.0.0.1:{port}" + PATH
        for _ in range(args.rounds):
            for name, _target in TARGETS:
                proc, port = servers[name]
                run_wrk(wrk_command(url.format(port=port), threads=1, connections=args.connections, duration_s=1),
                        duration_s=1)
                before = cpu_seconds([proc.pid])
                result, _ = run_wrk(
                    wrk_command(url.format(port=port), threads=1, connections=args.connections,
                                duration_s=args.duration, timeout_s=10),
                    duration_s=args.duration,
                )
                spent = cpu_seconds([proc.pid]) - before
                rps[name].append(result.rps)
                cpu[name].append(spent / max(1, result.requests) * 1e6)
                errors[name] += result.errors
    finally:
        for proc, _ in servers.values():
            proc.stop()
        time.sleep(0.1)
        shutil.rmtree(folder, ignore_errors=True)
    alone = statistics.median(rps["alone"])
    print(f"GET {PATH}, wrk -t1 -c{args.connections} -d{args.duration:g}s, {args.rounds} round(s), medians")
    print(f"{'target':<10} {'req/s':>9} {'ratio':>6} {'CPU µs/req':>11} {'errors':>7}")
    for name, _ in TARGETS:
        value = statistics.median(rps[name])
        print(f"{name:<10} {value:>9.0f} {value / alone:>6.2f} {statistics.median(cpu[name]):>11.0f} {errors[name]:>7}")
    ratio = statistics.median(rps["protected"]) / alone
    print(f"protect() is {ratio:.2f}x the application alone (issue 21's target: >= 0.8x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
