"""Proxy benchmark: the upstream direct, nginx as a proxy and Bastion, in one invocation.

    python bench/run.py [--duration 10] [--connections 32] [--rounds 3] [--workers 2]
                        [--out docs/benchmarks.md] [--mix] [--soak N] [--path PATH]

Starts, on 127.0.0.1 and free ports, an nginx upstream returning a 109-byte JSON body,
nginx as a plain reverse proxy and Bastion in each configuration of
``proxybench/scenarios.py``; loads each with wrk in interleaved rounds; reports the
medians of RPS, p50, p99 and CPU µs per request with the ratios to nginx and to the
upstream, and writes them to the proxy section of ``docs/benchmarks.md``.

Every request is ``GET /``, or ``GET PATH`` with ``--path`` (``/orders-1k`` and
``/orders-100k``: JSON documents of about 1 KB and 100 KB, ``proxybench/documents.py``),
the same for every scenario of the run, baselines included. ``--mix`` instead sends a small JSON API mix (two GETs and a
1 KB JSON POST, ``proxybench/mix.py``) to every scenario, adds Bastion with validation and
detection (``bastion-inspect``) and nginx + ModSecurity + CRS PL1 (``nginx-modsec-pl1``),
and writes its own section (ratios to Bastion with no stages and to ModSecurity too).

``--soak N`` instead sends N requests to Bastion with no stages and samples each worker's
RSS idle and every 100k requests (long; not for CI). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import shlex
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxybench import documents, mix, procs, report
from proxybench.modsecurity import INSTALL_HINT, missing_files
from proxybench.scenarios import (
    BASTION_NONE,
    MODSEC,
    NO_STAGES,
    Scenario,
    StartContext,
    select,
    start_scenario,
)
from proxybench.servers import UPSTREAM_BODY, RunningServer, start_bastion, start_upstream
from proxybench.wrk import run_wrk, wrk_command

ROOT = Path(__file__).resolve().parent.parent
MODERATE_CONNECTIONS = 4
MODERATE_THREADS = 1
WARMUP_SECONDS = 1.0
SOAK_STEP = 100_000
SOAK_CHUNK_MAX_SECONDS = 600.0
SOAK_FIRST_CHUNK_SECONDS = 2.0
TARGET_MAX_IDLE_RSS_MIB = 60


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (throughput)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (throughput)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians reported")
    parser.add_argument("--workers", type=int, default=2, help="nginx proxy and Bastion workers")
    parser.add_argument("--upstream-workers", type=int, default=1, help="upstream nginx workers")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md",
                        help="Markdown file whose proxy section is (re)written")
    parser.add_argument("--note", help="a remark printed above the results (e.g. 'smoke run')")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--only", action="append", metavar="SCENARIO",
                        help="run only this scenario (repeatable; baselines always run)")
    parser.add_argument("--bastion", type=Path, default=ROOT / ".venv" / "bin" / "bastion",
                        help="the bastion executable")
    parser.add_argument("--before", type=Path, metavar="PATH",
                        help="also run every Bastion scenario with this other bastion executable (a "
                        "build before a change), as '<scenario>@before', in the same interleaved rounds")
    parser.add_argument("--mix", action="store_true",
                        help="send the JSON API mix (proxybench/mix.py) instead of GET /, add the "
                        "bastion-inspect and nginx-modsec-pl1 scenarios, write the mix section")
    parser.add_argument("--wrk-timeout", type=float, default=10,
                        help="wrk --timeout in seconds: slower responses count as errors")
    parser.add_argument("--path", default="/", choices=("/", *documents.SIZES),
                        help="the path every scenario is loaded with: / answers a 109-byte JSON, "
                        "the others JSON documents of about that size")
    parser.add_argument("--soak", type=int, metavar="N",
                        help="send N requests to Bastion with no stages and watch worker RSS")
    args = parser.parse_args(argv)
    for name in ("duration", "connections", "threads", "rounds", "workers", "upstream_workers",
                 "wrk_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.soak is not None and args.soak <= 0:
        parser.error("--soak must be positive")
    if args.soak is not None and args.mix:
        parser.error("--soak and --mix do not go together")
    if args.path != "/" and (args.mix or args.soak is not None):
        parser.error("--path does not go with --mix or --soak (they send their own requests)")
    try:
        args.scenarios = select(args.only, args.mix, args.workers)
    except ValueError as exc:
        parser.error(str(exc))
    missing = missing_files()
    if args.soak is None and missing and any(s.kind == "modsecurity" for s in args.scenarios):
        parser.error(f"{MODSEC} needs {', '.join(map(str, missing))}: {INSTALL_HINT}")
    return args


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(
    servers: Sequence[tuple[Scenario, RunningServer]], args: argparse.Namespace,
    script: Path | None = None,
) -> list[report.TargetRuns]:
    """Interleaved rounds: every target's throughput run, then every target's moderate run.

    Each wrk run lasts ``--duration`` whatever the target's speed (wrk stops at ``-d``), so
    a round's length is bounded even with ModSecurity's hundreds of requests per second.
    """
    runs = {s.name: report.TargetRuns(s.name, s.description) for s, _ in servers}

    def wrk_for(scenario: Scenario, server: RunningServer, threads: int, conns: int,
                seconds: float) -> list[str]:
        return wrk_command(server.url_for(args.path), threads=threads, connections=conns, duration_s=seconds,
                           headers=(*scenario.wrk_headers, *server.headers), script=script, timeout_s=args.wrk_timeout)

    log(f"warm-up: {WARMUP_SECONDS:.0f} s per target")
    for scenario, server in servers:
        run_wrk(wrk_for(scenario, server, args.threads, args.connections, WARMUP_SECONDS),
                duration_s=WARMUP_SECONDS)
    for rnd in range(1, args.rounds + 1):
        for scenario, server in servers:
            before = procs.tree_cpu_seconds(server.process.pid)
            result, _ = run_wrk(wrk_for(scenario, server, args.threads, args.connections,
                                        args.duration), duration_s=args.duration)
            sample = report.Sample(result, procs.tree_cpu_seconds(server.process.pid) - before)
            runs[scenario.name].throughput.append(sample)
            log(f"round {rnd}/{args.rounds} {scenario.name:>16}: {result.rps:10,.0f} req/s  "
                f"p50 {result.p50_us / 1e3:6.3f} ms  p99 {result.p99_us / 1e3:6.3f} ms  "
                f"CPU {sample.cpu_us_per_request:6.1f} µs/req  errors {result.errors}")
        for scenario, server in servers:
            result, _ = run_wrk(wrk_for(scenario, server, MODERATE_THREADS, MODERATE_CONNECTIONS,
                                        args.duration), duration_s=args.duration)
            runs[scenario.name].moderate.append(result)
            log(f"round {rnd}/{args.rounds} {scenario.name:>16} @c{MODERATE_CONNECTIONS}: "
                f"p50 {result.p50_us / 1e3:6.3f} ms  errors {result.errors}")
    return list(runs.values())


def command_line(argv: Sequence[str]) -> str:
    script = Path(__file__).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    return shlex.join(["python", str(script), *argv])


def expected_body(path: str) -> bytes:
    """What the upstream answers ``GET path`` with."""
    return UPSTREAM_BODY.encode() if path == "/" else documents.document(documents.SIZES[path])


def check_scenario(scenario: Scenario, server: RunningServer, args: argparse.Namespace) -> None:
    """Before any load: the requests of the run pass through the server to the upstream
    (200 and its body), the requests the scenario must refuse are refused, and the leaks it
    must stop are stopped."""
    server.check_proxies_upstream(mix.MIX if args.mix else (), args.path, expected_body(args.path))
    if scenario.protects:
        check_protects(scenario, server)
    for request, expected in scenario.refuses:
        status, body = mix.send(server.port, request)
        if status != expected:
            raise procs.ServerFailed(
                f"{scenario.name}: {request.label} returned {status} ({body[:200]!r}), not "
                f"{expected}: the inspection this scenario measures is not on"
            )


def check_protects(scenario: Scenario, server: RunningServer) -> None:
    """``GET /leak`` (an undeclared property, a card number in a declared one) comes back
    200 with the property removed and the number masked, the rest of the order kept."""
    status, body = procs.http_get(server.port, documents.LEAK_PATH, headers=server.headers)
    leaked = [text for text in (documents.LEAK_CARD, documents.LEAK_UNDECLARED)
              if text.encode() in body]
    if status != 200 or leaked or b'"note"' not in body:
        raise procs.ServerFailed(
            f"{scenario.name}: GET {documents.LEAK_PATH} returned {status} with {body[:300]!r}"
            f"{f' (still carrying {leaked})' if leaked else ''}: the response protection this "
            "scenario measures is not on"
        )


def run_benchmark(args: argparse.Namespace, argv: Sequence[str], folder: Path,
                  stack: contextlib.ExitStack) -> int:
    scenarios: tuple[Scenario, ...] = args.scenarios
    script = mix.write_lua(folder) if args.mix else None
    upstream = start_upstream(stack, folder, args.upstream_workers)
    ctx = StartContext(stack, folder, upstream, args.workers, args.bastion)
    servers: list[tuple[Scenario, RunningServer]] = []
    for scenario in scenarios:
        server = start_scenario(scenario, ctx)
        check_scenario(scenario, server, args)
        servers.append((scenario, server))
        log(f"started {scenario.name} on {server.url}")
        if args.before is not None and scenario.kind == "bastion":
            before = dataclasses.replace(scenario, name=f"{scenario.name}@before",
                                         description=f"{scenario.description} ({args.before})")
            server = start_scenario(before, dataclasses.replace(ctx, bastion_bin=args.before))
            check_scenario(before, server, args)
            servers.append((before, server))
            log(f"started {before.name} on {server.url}")
    if args.mix:
        log(f"every request of the mix answered 200 through every target ({len(mix.MIX)} requests)")
    machine = report.machine_description(args.bastion.parent / "python")
    date = _now()

    references: tuple[str, ...] = report.MIX_REFERENCES if args.mix else ()
    if any(s.protects for s in scenarios):
        references = (BASTION_NONE,)  # bastion-protect's ratio (not with --mix)
    rows = report.summarize(measure(servers, args, script), references)
    cells = report.table_cells(rows, references)
    print()
    print(report.text_table(report.headers_with(references), cells))
    checks = report.mix_checks(rows) if args.mix else [*report.target_checks(rows),
                                                        *report.protect_checks(rows)]
    for text, ok in checks:
        print(f"  {'met' if ok else 'NOT MET'}: {text}")
    if any(r.errors for r in rows):
        print("  warning: some runs had socket errors or non-2xx responses (see 'errors')")
    if not args.no_write:
        shown_script = Path("mix.lua") if script else None
        section = report.proxy_section(
            command=command_line(argv), date=date, machine=machine, rows=rows, rounds=args.rounds,
            workers=args.workers, note=args.note, use_mix=args.mix, wrk_timeout_s=args.wrk_timeout,
            wrk_throughput=shlex.join(wrk_command("URL", threads=args.threads,
                                                  connections=args.connections,
                                                  duration_s=args.duration, script=shown_script,
                                                  timeout_s=args.wrk_timeout)),
            wrk_moderate=shlex.join(wrk_command("URL", threads=MODERATE_THREADS,
                                                connections=MODERATE_CONNECTIONS,
                                                duration_s=args.duration, script=shown_script,
                                                timeout_s=args.wrk_timeout)),
        )
        start, end = (report.MIX_START, report.MIX_END) if args.mix else (report.PROXY_START,
                                                                          report.PROXY_END)
        report.write_section(args.out, start, end, section)
        print(f"\nwrote the {'mix' if args.mix else 'proxy'} section of {args.out}")
    return 0


def worker_pids(supervisor: int) -> list[int]:
    """Bastion's worker processes: the supervisor's children running bastion.proxy.worker."""
    return [pid for pid in procs.children(supervisor) if "bastion.proxy.worker" in procs.cmdline(pid)]


def run_soak(args: argparse.Namespace, folder: Path, stack: contextlib.ExitStack) -> int:
    upstream = start_upstream(stack, folder, args.upstream_workers)
    bastion = start_bastion(stack, "bastion-none", folder, bastion_bin=args.bastion,
                            upstream_port=upstream.port, workers=args.workers, access_log=False,
                            policies=NO_STAGES, overrides={})
    bastion.check_proxies_upstream()
    workers = worker_pids(bastion.process.pid)
    samples: list[report.SoakSample] = []

    def sample(sent: int) -> None:
        rss = {pid: procs.rss_kib(pid) for pid in workers}
        samples.append((sent, rss))
        log(f"{sent:>10,} requests: " + "  ".join(
            f"worker {pid} {'gone' if kib is None else f'{kib / 1024:.1f} MiB'}"
            for pid, kib in rss.items()))

    sample(0)
    sent = errors = 0
    next_sample = SOAK_STEP
    rate: float | None = None
    # wrk cannot stop after N requests (its -d always runs in full), so each chunk's
    # duration is sized from the rate so far to land near the next 100k boundary.
    while sent < args.soak:
        goal = min(next_sample, args.soak)
        seconds = SOAK_FIRST_CHUNK_SECONDS if rate is None else min(
            SOAK_CHUNK_MAX_SECONDS, max(1.0, (goal - sent) / rate))
        result, _ = run_wrk(
            wrk_command(bastion.url, threads=args.threads, connections=args.connections,
                        duration_s=seconds),
            duration_s=seconds,
        )
        if result.requests == 0:
            log("wrk completed no request; stopping the soak")
            break
        rate = result.rps
        sent += result.requests
        errors += result.errors
        if sent >= goal or goal - sent < rate:  # within a second of the boundary
            sample(sent)
            next_sample = goal + SOAK_STEP
    if sorted(worker_pids(bastion.process.pid)) != sorted(workers):
        log("warning: the worker set changed during the soak (a worker restarted)")

    print()
    print(f"soak: {sent:,} requests to bastion-none ({args.workers} workers), errors {errors}")
    soak = report.summarize_soak(samples, workers, idle_limit_mib=TARGET_MAX_IDLE_RSS_MIB)
    print("\n".join(soak.lines))
    print(soak.verdict)
    if not args.no_write:
        body = report.soak_section(command=command_line(sys.argv[1:]), date=_now(),
                                   samples=samples, workers=workers, soak=soak)
        report.write_section(args.out, report.SOAK_START, report.SOAK_END, body)
        print(f"\nwrote the soak section of {args.out}")
    return 0 if soak.flat else 1


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the `finally` below stops every server either way.
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp, \
            contextlib.ExitStack() as stack:
        folder = Path(tmp)
        try:
            if args.soak is not None:
                return run_soak(args, folder, stack)
            return run_benchmark(args, argv, folder, stack)
        except procs.ServerFailed as exc:
            log(f"error: {exc}")
            return 1
        except KeyboardInterrupt:
            log("interrupted; stopping the servers")
            return 130
        finally:
            # Stop servers in reverse start order, before the temp folder is removed; a
            # second Ctrl-C must not cut this short (each stop is bounded anyway).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            stack.close()


if __name__ == "__main__":
    raise SystemExit(main())
