"""Bastion's detection beside nginx + ModSecurity + OWASP CRS, on the same corpora, in one run.

    python bench/detection/compare.py [--duration 5] [--connections 32] [--workers 2]
                                      [--concurrency 8] [--out docs/benchmarks.md] [--no-write]
                                      [--no-load]

Starts, on 127.0.0.1 and free ports, in a temporary folder:

- the proxy benchmark's nginx upstream (200 + a small JSON body for every request);
- ``bastion serve`` with a catch-all public route and ``detection: {paranoia: 1}``, plus the
  same Bastion with no detection (the throughput baseline);
- nginx + ModSecurity (the Debian module, loaded with ``load_module``) + OWASP CRS from the
  Debian package path, once with ``tx.paranoia_level=1`` and once with ``2``.

Replays the GoTestWAF corpus and the committed benign corpus against each WAF with
``replay.py`` (403 = blocked), loads Bastion with detection, Bastion without it and
nginx + ModSecurity PL1 with ``wrk -c32`` on a small GET (not with ``--no-load``), and writes the side-by-side
table between the ``bench:detection`` markers of ``docs/benchmarks.md``. Every server is
stopped when the run ends (or is interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import shlex
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus import BENIGN, GOTESTWAF
from replay import ReplayResult, replay

from bastion.stages.detection.config import modsecurity_installed
from proxybench import report
from proxybench.modsecurity import INSTALL_HINT, missing_files, start_modsecurity
from proxybench.servers import RunningServer, start_bastion, start_upstream
from proxybench.wrk import WrkResult, run_wrk, wrk_command

ROOT = Path(__file__).resolve().parents[2]
START = "<!-- bench:detection:start -->"
END = "<!-- bench:detection:end -->"
#: The small GET every throughput run sends (a query, as API reads have).
LOAD_PATH = "/v1/books/42?fields=title,author"
#: Headers of the load requests: a client that names itself and the API's host, as real
#: clients do (the CRS scores a missing User-Agent and a numeric Host as anomalies).
LOAD_HEADERS = ("Host: api.example.com", "User-Agent: bench-client/1.0", "Accept: application/json")


@dataclass
class Waf:
    """One system under test: where it listens and what the replays found."""

    label: str
    server: RunningServer
    gotestwaf: ReplayResult | None = None
    benign: ReplayResult | None = None


def _rate(result: ReplayResult | None, expect_block: bool) -> str:
    if result is None:
        return "-"
    n, b = result.rate(expect_block)
    if not n:
        return "-"
    rate = 100 * b / n
    # Two decimals below 1%: one request in 5,500 is 0.02%, not "0.0%".
    return f"{rate:.2f}% ({b}/{n})" if 0 < rate < 1 else f"{rate:.1f}% ({b}/{n})"


def _refused(result: ReplayResult | None) -> str:
    """Requests the HTTP parser refused with 400 (malformed targets): never upstream, but not a 403."""
    return "-" if result is None else str(result.statuses.get(400, 0))


def _category_rate(result: ReplayResult | None, category: str) -> str:
    if result is None or category not in result.results:
        return "-"
    blocked = result.results[category]
    return f"{100 * sum(blocked) / len(blocked):.0f}%"


def detection_section(
    *,
    wafs: Sequence[Waf],
    throughput: Sequence[tuple[str, WrkResult]],
    machine: dict[str, str],
    command: str,
    date: str,
    duration: float,
    connections: int,
) -> str:
    """The Markdown of the detection section."""
    labels = [w.label for w in wafs]
    out = [
        "## Attack detection: Bastion beside nginx + ModSecurity + OWASP CRS",
        "",
        f"Command: `{command}`  ",
        f"Date: {date}",
        "",
        "Machine:",
        "",
        *[f"- {k}: {v}" for k, v in machine.items()],
        "",
        "Each request of a corpus is replayed over loopback (`bench/detection/replay.py`, 8 at a "
        "time, one connection each) to each system; 403 counts as blocked, anything else as passed "
        "(a 400 from a server's HTTP parser never reaches the upstream either, but is counted as passed).",
        "",
        "### Block rates",
        "",
    ]
    rows = [
        ["GoTestWAF attacks (should block)", *[_rate(w.gotestwaf, True) for w in wafs]],
        ["GoTestWAF benign (should pass)", *[_rate(w.gotestwaf, False) for w in wafs]],
        ["Bastion benign corpus (should pass)", *[_rate(w.benign, False) for w in wafs]],
        ["GoTestWAF attacks refused 400 (not counted)", *[_refused(w.gotestwaf) for w in wafs]],
    ]
    out.append(report.markdown_table(["corpus", *labels], rows))
    out += ["", "### GoTestWAF attacks blocked, per category", ""]
    categories = sorted({c for w in wafs if w.gotestwaf for c, exp in w.gotestwaf.expect.items() if exp})
    cat_rows = []
    for category in categories:
        sizes = [len(w.gotestwaf.results[category]) for w in wafs if w.gotestwaf and category in w.gotestwaf.results]
        cat_rows.append([category, str(max(sizes, default=0)), *[_category_rate(w.gotestwaf, category) for w in wafs]])
    out.append(report.markdown_table(["category", "requests", *labels], cat_rows))
    if throughput:
        out += _throughput_lines(throughput, duration, connections)
    return "\n".join(out) + "\n"


def _throughput_lines(throughput: Sequence[tuple[str, WrkResult]], duration: float, connections: int) -> list[str]:
    """The Markdown of the wrk runs, with the ratios the targets are stated in."""
    out = [
        "",
        f"### Throughput: wrk -c{connections}, {duration:.0f} s, `GET {LOAD_PATH}` (2 workers each)",
        "",
        "A quick check, one run each and one request repeated (detection remembers its values, so "
        "this shows the warm path); the interleaved comparison on a varied JSON API mix is "
        "`bench/run.py --mix` (section above).",
        "",
    ]
    tp_rows = [
        [label, f"{r.rps:,.0f}", f"{r.p50_us / 1000:.2f}", f"{r.p99_us / 1000:.2f}", str(r.errors)]
        for label, r in throughput
    ]
    out.append(report.markdown_table(["system", "requests/s", "p50 ms", "p99 ms", "errors"], tp_rows))
    by_label = dict(throughput)
    notes = []
    det = by_label.get("Bastion detection PL1")
    plain = by_label.get("Bastion without detection")
    modsec = by_label.get("nginx + ModSecurity CRS PL1")
    if det and plain and plain.rps:
        notes.append(f"Bastion with detection: {det.rps / plain.rps:.2f}x Bastion without detection (target >= 0.7x)")
    if det and modsec and modsec.rps:
        notes.append(f"Bastion with detection: {det.rps / modsec.rps:.1f}x nginx + ModSecurity PL1 (target >= 10x)")
    if notes:
        out += ["", *[f"- {n}" for n in notes]]
    return out


def run(args: argparse.Namespace, argv: Sequence[str], folder: Path, stack: contextlib.ExitStack) -> int:
    corpora = [p for p in (GOTESTWAF, BENIGN) if p.exists()]
    upstream = start_upstream(stack, folder, 1)
    detection_policy = {"detection": {"paranoia": 1}}
    bastion = start_bastion(
        stack,
        "bastion-detection",
        folder,
        bastion_bin=args.bastion,
        upstream_port=upstream.port,
        workers=args.workers,
        access_log=False,
        policies=detection_policy,
        overrides={},
    )
    wafs = [Waf("Bastion PL1", bastion)]
    if modsecurity_installed():
        modsec_engine = start_bastion(
            stack,
            "bastion-modsecurity",
            folder,
            bastion_bin=args.bastion,
            upstream_port=upstream.port,
            workers=args.workers,
            access_log=False,
            policies={"detection": {"paranoia": 1, "engine": "modsecurity"}},
            overrides={},
        )
        wafs.append(Waf("Bastion engine: modsecurity PL1", modsec_engine))
    else:
        print("-- libmodsecurity is not installed: no 'engine: modsecurity' column", flush=True)
    nginx_pl1 = None
    for paranoia in (1, 2):
        server = start_modsecurity(stack, folder, paranoia, upstream.port, args.workers)
        wafs.append(Waf(f"ModSecurity CRS PL{paranoia}", server))
        nginx_pl1 = nginx_pl1 or server
    for waf in wafs:
        target = f"127.0.0.1:{waf.server.port}"
        for path in corpora:
            print(f"-- replay {path.name} -> {waf.label}", flush=True)
            result = asyncio.run(replay(target, path, args.concurrency, 10.0, False))
            if path == GOTESTWAF:
                waf.gotestwaf = result
            else:
                waf.benign = result
    throughput: list[tuple[str, WrkResult]] = []
    if not args.no_load:
        throughput = measure_load(args, folder, stack, upstream.port, bastion, nginx_pl1)
    section = detection_section(
        wafs=wafs,
        throughput=throughput,
        machine=report.machine_description(Path(sys.executable)),
        command="python " + shlex.join(["bench/detection/compare.py", *argv]),
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        duration=args.duration,
        connections=args.connections,
    )
    print(section)
    if not args.no_write:
        report.write_section(args.out, START, END, section)
        print(f"written to {args.out}")
    return 0


def measure_load(
    args: argparse.Namespace,
    folder: Path,
    stack: contextlib.ExitStack,
    upstream_port: int,
    bastion: RunningServer,
    nginx_pl1: RunningServer | None,
) -> list[tuple[str, WrkResult]]:
    """wrk on Bastion with detection, Bastion without it and nginx + ModSecurity PL1."""
    plain = start_bastion(
        stack,
        "bastion-plain",
        folder,
        bastion_bin=args.bastion,
        upstream_port=upstream_port,
        workers=args.workers,
        access_log=False,
        policies=None,
        overrides={},
    )
    loads = [
        ("Bastion detection PL1", bastion),
        ("Bastion without detection", plain),
    ]
    if nginx_pl1 is not None:
        loads.append(("nginx + ModSecurity CRS PL1", nginx_pl1))
    throughput: list[tuple[str, WrkResult]] = []
    for label, server in loads:
        url = f"http://127.0.0.1:{server.port}{LOAD_PATH}"
        cmd = wrk_command(url, threads=2, connections=args.connections, duration_s=args.duration, headers=LOAD_HEADERS)
        print(f"-- {shlex.join(cmd)}  ({label})", flush=True)
        load, _ = run_wrk(cmd, duration_s=args.duration)
        print(f"   {load.rps:,.0f} requests/s, errors {load.errors}", flush=True)
        throughput.append((label, load))
    return throughput


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/detection/compare.py", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="nginx and Bastion workers")
    parser.add_argument("--concurrency", type=int, default=8, help="replay requests in flight")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    parser.add_argument("--no-load", action="store_true", help="replay the corpora only, no wrk runs")
    parser.add_argument("--bastion", type=Path, default=ROOT / ".venv" / "bin" / "bastion")
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(args_list)
    missing = missing_files()
    if missing:
        raise SystemExit(f"{', '.join(map(str, missing))} missing: {INSTALL_HINT}")

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    with tempfile.TemporaryDirectory(prefix="bastion-detection-bench-") as tmp, contextlib.ExitStack() as stack:
        return run(args, args_list, Path(tmp), stack)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
    raise SystemExit(130)
