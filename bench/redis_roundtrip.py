"""What one Redis command per request, and a Redis rate limit, cost the gateway, through the
real data plane.

    python bench/redis_roundtrip.py [--rounds 3] [--duration 5] [--connections 32] [--workers 2]
                          [--python .venv/bin/python] [--before OTHER/bin/python]

Starts on 127.0.0.1 and free ports the nginx upstream of ``run.py``, a ``redis-server``
(no persistence) and, with ``proxybench/stategateway.py``, Bastion's workers twice on the
same config (``backends: {state: redis}``, no stages, access log off): once as they are
(``redis-none``), once with a bench-only stage doing one ``incr`` with a TTL per request
(``redis-incr``: a rate limiter's counter, EVALSHA of the backend's script). nginx as a
proxy runs too, for scale. The rounds interleave the targets (``run.py``'s ``measure``);
the gateway's CPU µs per request with the stage minus without it is what the Redis round
trip costs the gateway (issue 13's target: at most 40 µs at 32 connections). A third
gateway (``redis-ratelimit``) runs the real ``ratelimit`` stage from the config, two limits
per request (by client IP and global, too high to refuse anything) checked and counted in
its one GCRA script: what a Redis rate limit costs the gateway (issue 15's targets: at most
40 µs of CPU per request at 32 connections, and at least 0.7x the throughput of the same
gateway without it). CPU is the gateway's process tree's CPU time over each wrk run, not
wall clock. Redis's own CPU is reported apart (it is not the gateway's). ``--before`` runs both gateways of another
install too, in the same rounds (a before/after of a change). Prints only;
docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxybench import procs, report
from proxybench.procs import ManagedProcess, ServerFailed, free_port
from proxybench.scenarios import DIRECT, NGINX, NO_STAGES, Scenario
from proxybench.servers import RunningServer, bastion_config, start_nginx_proxy, start_upstream
from run import _raise_on_sigterm, log, measure

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = Path(__file__).resolve().parent / "proxybench" / "stategateway.py"
NONE, INCR, RATELIMIT = "redis-none", "redis-incr", "redis-ratelimit"
#: The redis-ratelimit gateway's policies: the stage as a user configures it, two limits.
RATELIMIT_POLICIES = {
    **NO_STAGES,
    "ratelimit": [{"limit": 10**9, "window": "1h", "by": "ip"}, {"limit": 10**9, "window": "1d", "by": "global"}],
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/redis_roundtrip.py", description=(__doc__ or "").splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=float, default=5, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (throughput)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians reported")
    parser.add_argument("--workers", type=int, default=2, help="nginx proxy and Bastion workers")
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python",
                        help="the Python of the Bastion install under test")
    parser.add_argument("--before", type=Path, metavar="PYTHON",
                        help="also run both gateways with this other install's Python (e.g. a build "
                        "before a change), in the same interleaved rounds")
    parser.add_argument("--wrk-timeout", type=float, default=10, help="wrk --timeout in seconds")
    args = parser.parse_args(argv)
    args.path = "/"  # run.measure loads this path: the upstream's 109-byte JSON
    if shutil.which("redis-server") is None:
        parser.error("needs redis-server on the PATH (apt-get install redis-server)")
    return args


def start_redis(stack: contextlib.ExitStack, folder: Path) -> tuple[ManagedProcess, int]:
    port = free_port()
    process = ManagedProcess("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"], folder / "redis.out")
    stack.callback(process.stop)
    process.start()

    def pong() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    process.wait_until(pong, 10, f"PONG on port {port}")
    return process, port


def start_gateway(stack: contextlib.ExitStack, name: str, folder: Path, python: Path,
                  args: argparse.Namespace, upstream_port: int, redis_port: int, stage: str,
                  policies: Mapping[str, Any] = NO_STAGES) -> RunningServer:
    port = free_port()
    config = bastion_config(
        port=port, admin_port=free_port(), upstream_port=upstream_port, access_log=None,
        policies=policies,
        overrides={"backends": {"state": "redis", "redis": {"url": f"redis://127.0.0.1:{redis_port}/0",
                                                            "timeout": 1.0}}},
    )
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")
    process = ManagedProcess(name, [str(python), str(GATEWAY), "--config", str(path),
                                    "--workers", str(args.workers), "--stage", stage],
                             folder / f"{name}.out")
    stack.callback(process.stop)
    process.start()
    ready = Path(str(path) + ".ready")
    process.wait_until(ready.exists, 30, "every worker listening")
    server = RunningServer(name, port, process)
    server.check_proxies_upstream()
    return server


def run(args: argparse.Namespace, folder: Path, stack: contextlib.ExitStack) -> int:
    upstream = start_upstream(stack, folder, 1)
    redis, redis_port = start_redis(stack, folder)
    servers = [
        (Scenario(DIRECT, "the upstream itself", "direct"), upstream),
        (Scenario(NGINX, "nginx as a plain reverse proxy", "nginx"),
         start_nginx_proxy(stack, NGINX, folder, upstream.port, args.workers)),
    ]
    pairs = [("", args.python)] + ([("-before", args.before)] if args.before else [])
    for suffix, python in pairs:
        servers += [
            (Scenario(NONE + suffix, f"Bastion workers ({python}), Redis backend configured, no stage",
                      "bastion"),
             start_gateway(stack, NONE + suffix, folder, python, args, upstream.port, redis_port, "none")),
            (Scenario(INCR + suffix, "the same with one Redis incr (EVALSHA) per request", "bastion"),
             start_gateway(stack, INCR + suffix, folder, python, args, upstream.port, redis_port, "incr")),
            (Scenario(RATELIMIT + suffix, "the same with the ratelimit stage: two limits, one EVALSHA "
                      "per request", "bastion"),
             start_gateway(stack, RATELIMIT + suffix, folder, python, args, upstream.port, redis_port, "none",
                           RATELIMIT_POLICIES)),
        ]
    for scenario, _ in servers:
        log(f"started {scenario.name}")
    redis_before = procs.cpu_seconds([redis.pid])
    runs = measure(servers, args)
    redis_cpu = procs.cpu_seconds([redis.pid]) - redis_before
    rows = report.summarize(runs)
    commands = sum(sum(s.wrk.requests for s in r.throughput) + sum(m.requests for m in r.moderate)
                   for r in runs if r.name.startswith((INCR, RATELIMIT)))
    print()
    print(report.text_table(report.HEADERS, report.table_cells(rows)))
    by_name = {r.name: r for r in rows}
    print()
    for suffix, python in pairs:
        incr, none = by_name[INCR + suffix], by_name[NONE + suffix]
        added = incr.cpu_us - none.cpu_us
        print(f"  {python}: gateway CPU for one Redis command per request: {added:.1f} µs/req "
              f"({incr.cpu_us:.1f} - {none.cpu_us:.1f}), target <= 40 {'met' if added <= 40 else 'NOT MET'}; "
              f"throughput {incr.rps / none.rps:.2f}x without it")
        limited = by_name[RATELIMIT + suffix]
        added = limited.cpu_us - none.cpu_us
        ratio = limited.rps / none.rps
        print(f"  {python}: gateway CPU for a Redis rate limit (two limits, one script): {added:.1f} µs/req "
              f"({limited.cpu_us:.1f} - {none.cpu_us:.1f}), target <= 40 {'met' if added <= 40 else 'NOT MET'}; "
              f"throughput {ratio:.2f}x without it, target >= 0.7 {'met' if ratio >= 0.7 else 'NOT MET'}")
    print(f"  redis-server CPU: {redis_cpu:.2f} s for {commands:,} commands "
          f"({redis_cpu * 1e6 / max(commands, 1):.1f} µs each; not the gateway's)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="bastion-bench-redis-") as tmp, \
            contextlib.ExitStack() as stack:
        try:
            return run(args, Path(tmp), stack)
        except ServerFailed as exc:
            log(f"error: {exc}")
            return 1
        except KeyboardInterrupt:
            log("interrupted; stopping the servers")
            return 130
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            stack.close()


if __name__ == "__main__":
    raise SystemExit(main())
