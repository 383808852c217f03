"""Medians over rounds, the results table, the machine description and docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from proxybench import mix
from proxybench.scenarios import BASTION_NONE, DIRECT, INSPECT, MODSEC, NGINX, PROTECT
from proxybench.wrk import WrkResult

PROXY_START = "<!-- bench:proxy:start -->"
PROXY_END = "<!-- bench:proxy:end -->"
MIX_START = "<!-- bench:mix:start -->"
MIX_END = "<!-- bench:mix:end -->"
SOAK_START = "<!-- bench:soak:start -->"
SOAK_END = "<!-- bench:soak:end -->"

#: Issue 2's targets for Bastion with no stages (2 cores, 2 workers each, same run).
TARGET_SCENARIO = "bastion-none"
TARGET_MIN_RPS_VS_NGINX = 0.6
TARGET_MAX_CPU_US = 70.0
TARGET_MAX_ADDED_P50_MS = 0.3
#: The input-defense targets (--mix): Bastion with validation and detection against Bastion
#: with no stages and against nginx + ModSecurity + CRS PL1, same mix, same rounds.
MIX_REFERENCES = (BASTION_NONE, MODSEC)
TARGET_MIN_INSPECT_VS_NONE = 0.7
TARGET_MIN_INSPECT_VS_MODSEC = 10.0
#: Issue 16's target: response filtering + redaction against no stages, same path, same rounds
#: (stated for the 1 KB document).
TARGET_MIN_PROTECT_VS_NONE = 0.8


@dataclass
class Sample:
    """One load run against one target: wrk's figures and the CPU the target spent."""

    wrk: WrkResult
    cpu_s: float

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s * 1e6 / self.wrk.requests if self.wrk.requests else float("nan")


@dataclass
class TargetRuns:
    """All runs against one target over the rounds."""

    name: str
    description: str
    throughput: list[Sample] = field(default_factory=list)
    moderate: list[WrkResult] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    """The medians over rounds for one target, with the ratios to the baselines."""

    name: str
    description: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    rps_vs_nginx: float | None
    rps_vs_direct: float | None
    moderate_p50_ms: float | None
    added_p50_ms: float | None
    errors: int
    #: RPS ratio to each extra reference scenario (see ``summarize``'s ``references``).
    rps_vs: Mapping[str, float | None] = field(default_factory=dict)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(runs: Sequence[TargetRuns], references: Sequence[str] = ()) -> list[Row]:
    """One row per target: medians of every figure, ratios of the median RPS to the baselines
    (nginx, direct, and each of ``references``)."""
    by_name = {r.name: r for r in runs}

    def median_rps(name: str) -> float | None:
        target = by_name.get(name)
        return _median([s.wrk.rps for s in target.throughput]) if target else None

    def median_moderate_p50_ms(name: str) -> float | None:
        target = by_name.get(name)
        if target is None or not target.moderate:
            return None
        return _median([m.p50_us for m in target.moderate]) / 1e3

    nginx_rps, direct_rps = median_rps(NGINX), median_rps(DIRECT)
    reference_rps = {name: median_rps(name) for name in references}
    direct_p50 = median_moderate_p50_ms(DIRECT)
    rows = []
    for target in runs:
        rps = _median([s.wrk.rps for s in target.throughput])
        moderate = median_moderate_p50_ms(target.name)
        rows.append(Row(
            name=target.name,
            description=target.description,
            rps=rps,
            p50_ms=_median([s.wrk.p50_us for s in target.throughput]) / 1e3,
            p99_ms=_median([s.wrk.p99_us for s in target.throughput]) / 1e3,
            cpu_us=_median([s.cpu_us_per_request for s in target.throughput]),
            rps_vs_nginx=rps / nginx_rps if nginx_rps else None,
            rps_vs_direct=rps / direct_rps if direct_rps else None,
            moderate_p50_ms=moderate,
            added_p50_ms=moderate - direct_p50 if moderate is not None and direct_p50 is not None
            else None,
            errors=sum(s.wrk.errors for s in target.throughput) + sum(m.errors for m in target.moderate),
            rps_vs={name: rps / ref if ref else None for name, ref in reference_rps.items()},
        ))
    return rows


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def _ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


HEADERS = ("Target", "RPS", "vs nginx", "vs upstream", "p50 ms", "p99 ms", "CPU µs/req",
           "p50 ms @c4", "added p50 ms @c4", "errors")


def headers_with(references: Sequence[str]) -> tuple[str, ...]:
    """:data:`HEADERS` with a ``vs <reference>`` column after ``vs upstream`` per reference."""
    return (*HEADERS[:4], *(f"vs {name}" for name in references), *HEADERS[4:])


def table_cells(rows: Sequence[Row], references: Sequence[str] = ()) -> list[list[str]]:
    """The cells of :func:`headers_with` ``(references)``, one list per row."""
    return [
        [r.name, f"{r.rps:,.0f}", _ratio(r.rps_vs_nginx), _ratio(r.rps_vs_direct),
         *(_ratio(r.rps_vs.get(name)) for name in references),
         _ms(r.p50_ms), _ms(r.p99_ms), f"{r.cpu_us:.1f}", _ms(r.moderate_p50_ms),
         "-" if r.name == DIRECT else _ms(r.added_p50_ms, signed=True), str(r.errors)]
        for r in rows
    ]


def markdown_table(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table; every column but the first right-aligned (numbers)."""
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def text_table(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """The same table for a terminal, columns padded."""
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def target_checks(rows: Sequence[Row]) -> list[tuple[str, bool]]:
    """Issue 2's targets for Bastion with no stages, each with whether this run met it."""
    row = next((r for r in rows if r.name == TARGET_SCENARIO), None)
    if row is None:
        return []
    checks = []
    if row.rps_vs_nginx is not None:
        checks.append((f"throughput ≥ {TARGET_MIN_RPS_VS_NGINX}x nginx: {row.rps_vs_nginx:.2f}x",
                       row.rps_vs_nginx >= TARGET_MIN_RPS_VS_NGINX))
    checks.append((f"proxy CPU ≤ {TARGET_MAX_CPU_US:.0f} µs/request: {row.cpu_us:.1f} µs",
                   row.cpu_us <= TARGET_MAX_CPU_US))
    if row.added_p50_ms is not None:
        checks.append((f"added p50 at moderate load ≤ {TARGET_MAX_ADDED_P50_MS} ms: "
                       f"{row.added_p50_ms:+.3f} ms", row.added_p50_ms <= TARGET_MAX_ADDED_P50_MS))
    return checks


def protect_checks(rows: Sequence[Row]) -> list[tuple[str, bool]]:
    """Issue 16's target for ``bastion-protect`` against ``bastion-none``, if both ran."""
    row = next((r for r in rows if r.name == PROTECT), None)
    vs_none = None if row is None else row.rps_vs.get(BASTION_NONE)
    if vs_none is None:
        return []
    return [(f"response protection throughput ≥ {TARGET_MIN_PROTECT_VS_NONE}x Bastion with no "
             f"stages: {vs_none:.2f}x", vs_none >= TARGET_MIN_PROTECT_VS_NONE)]


def mix_checks(rows: Sequence[Row]) -> list[tuple[str, bool]]:
    """The input-defense targets (``bastion-inspect`` against ``bastion-none`` and against
    nginx + ModSecurity + CRS PL1), each with whether this run met it."""
    row = next((r for r in rows if r.name == INSPECT), None)
    if row is None:
        return []
    checks = []
    vs_none, vs_modsec = row.rps_vs.get(BASTION_NONE), row.rps_vs.get(MODSEC)
    if vs_none is not None:
        checks.append((f"throughput ≥ {TARGET_MIN_INSPECT_VS_NONE}x Bastion with no stages: "
                       f"{vs_none:.2f}x", vs_none >= TARGET_MIN_INSPECT_VS_NONE))
    if vs_modsec is not None:
        checks.append((f"throughput ≥ {TARGET_MIN_INSPECT_VS_MODSEC:.0f}x nginx + ModSecurity + CRS "
                       f"PL1: {vs_modsec:.1f}x", vs_modsec >= TARGET_MIN_INSPECT_VS_MODSEC))
    return checks


def _first_line(cmd: Sequence[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def machine_description(python: Path) -> dict[str, str]:
    """What the figures were measured on: CPUs, memory, kernel and the tools' versions."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = found.group(1).strip() if found else model
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        found = re.search(r"^MemTotal:\s*([0-9]+) kB", meminfo.read_text(), re.MULTILINE)
        memory = f"{int(found.group(1)) / 1024**2:.1f} GiB" if found else memory
    return {
        "CPUs (nproc)": _first_line(["nproc"]),
        "CPU model": model,
        "Memory": memory,
        "Kernel": f"{platform.system()} {platform.release()}",
        "Python (Bastion's)": _first_line([str(python), "--version"]),
        "nginx": _first_line(["nginx", "-v"]).removeprefix("nginx version: "),
        "wrk": _first_line(["wrk", "-v"]).split(" Copyright")[0],
        "Load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def proxy_section(
    *,
    command: str,
    date: str,
    machine: Mapping[str, str],
    rows: Sequence[Row],
    rounds: int,
    wrk_throughput: str,
    wrk_moderate: str,
    workers: int,
    note: str | None = None,
    use_mix: bool = False,
    wrk_timeout_s: float | None = None,
) -> str:
    """The Markdown between the proxy markers (or, ``use_mix``, the mix markers): how it was
    run, on what, with which requests, and the results."""
    references = MIX_REFERENCES if use_mix else ()
    if use_mix:
        title = ("## Input defense: Bastion with validation and detection vs no stages, nginx "
                 "and nginx + ModSecurity + CRS")
        requests = ["### Requests: a small JSON API mix", "", *mix.describe(), ""]
        checks_title, checks = "### Input defense targets (bastion-inspect)", mix_checks(rows)
    else:
        title = "## Proxy overhead: Bastion vs nginx vs the upstream direct"
        requests = ["Every request is `GET /` with wrk's default headers (only `Host`) and no body; "
                    "`python bench/run.py --mix` measures a JSON API mix with Bastion's input "
                    "defense and ModSecurity (its own section).", ""]
        checks_title, checks = "### Issue 2 targets (Bastion with no stages)", target_checks(rows)
    parts = [
        title,
        "",
        f"Command: `{command}`  ",
        f"Date: {date}",
        "",
        *([f"> {note}", ""] if note else []),
        "### Machine",
        "",
        *(f"- {key}: {value}" for key, value in machine.items()),
        "",
        *requests,
        f"### Results (median of {rounds} interleaved round(s), {workers} worker(s) per proxy)",
        "",
        f"Throughput, p50, p99 and CPU: `{wrk_throughput}`. "
        f"Moderate load (the `@c4` columns): `{wrk_moderate}`.",
        "",
        markdown_table(headers_with(references), table_cells(rows, references)),
        "",
        *(f"- **{r.name}**: {r.description}" for r in rows),
        "",
    ]
    if checks:
        parts += [checks_title, ""]
        parts += [f"- {'met' if ok else '**not met**'}: {text}" for text, ok in checks]
        parts.append("")
    parts += [
        "### How to read this",
        "",
        "- The machine is a shared 2-core box: wrk, nginx and Bastion compete for the same",
        "  two cores, and other work may run at the same time. Absolute RPS moves from run to",
        "  run; the ratios to nginx and to the upstream (measured in the same interleaved",
        "  rounds) and the CPU µs per request are the steadier figures.",
        "- CPU µs/req is user+system CPU of the target's whole process tree (nginx master and",
        "  workers; Bastion's supervisor and workers) divided by the requests served. For",
        "  `direct` it is the upstream's own cost; for a proxy it excludes the upstream.",
        "- `added p50 @c4` is the proxy's median latency minus the upstream's, with 4",
        "  connections (a moderate load that leaves the cores mostly idle).",
        "- `errors` counts socket errors and non-2xx/3xx responses; any makes a row suspect.",
    ]
    if use_mix:
        parts += [
            f"- `vs {BASTION_NONE}` is the share of Bastion's no-stage throughput kept with the",
            f"  stages on; `vs {MODSEC}` is the throughput as a multiple of nginx + ModSecurity",
            "  + CRS's on the same mix.",
            "- Before the load, every request of the mix went once through every target and got",
            "  the upstream's 200 and body (neither Bastion nor the CRS refuses it), and the",
            "  inspecting targets refused the search with a SQL injection in `q` (403) and",
            "  Bastion the search with `limit=1000` (400): the stages measured were on.",
            "- Detection remembers values it has already seen in clean requests: the mix's",
            "  headers, query, item id and most order fields repeat, as in real traffic, while",
            "  each order's comment and gift message are new. `bench/detection/typical.py` gives",
            "  in-process costs, with every value new and with the CPU caches evicted.",
        ]
        if wrk_timeout_s is not None:
            parts += [
                f"- wrk runs with a {wrk_timeout_s:.0f} s `--timeout` (its default is 2 s), so "
                "ModSecurity's slower",
                "  answers count as latencies rather than timeouts; every run still stops after `-d`.",
            ]
    return "\n".join(parts)


#: RSS growth between the first 100k-request sample and the last that still counts as flat.
SOAK_FLAT_KIB = 2048
SOAK_FLAT_FRACTION = 0.05

#: (requests sent so far, {worker pid: VmRSS in KiB, None once the worker is gone}).
SoakSample = tuple[int, Mapping[int, int | None]]


@dataclass(frozen=True)
class SoakSummary:
    lines: list[str]
    flat: bool
    verdict: str


def summarize_soak(
    samples: Sequence[SoakSample], workers: Sequence[int], *, idle_limit_mib: float
) -> SoakSummary:
    """Per worker: idle RSS, RSS once warm (first sample after idle), at the end, and whether
    it grew after warming up by more than max(2 MiB, 5 %)."""
    lines, flat_all = [], True
    for pid in workers:
        series = [rss.get(pid) for _, rss in samples]
        values = [v for v in series if v is not None]
        if len(values) != len(series) or not values:
            lines.append(f"- worker {pid}: exited during the soak")
            flat_all = False
            continue
        idle, end = values[0], values[-1]
        warm = values[1] if len(values) > 1 else idle
        warm_at = samples[1][0] if len(samples) > 1 else 0
        growth = end - warm
        flat = growth <= max(SOAK_FLAT_KIB, SOAK_FLAT_FRACTION * warm)
        flat_all = flat_all and flat
        lines.append(
            f"- worker {pid}: idle {idle / 1024:.1f} MiB "
            f"({'within' if idle / 1024 <= idle_limit_mib else 'OVER'} {idle_limit_mib:.0f} MiB), "
            f"{warm / 1024:.1f} MiB after {warm_at:,} requests, {end / 1024:.1f} MiB at the end "
            f"({growth / 1024:+.1f} MiB: {'flat' if flat else 'GROWING'})"
        )
    verdict = (f"RSS {'stays flat' if flat_all else 'does NOT stay flat'} (flat: growth after "
               f"the first sample under load <= max({SOAK_FLAT_KIB // 1024} MiB, "
               f"{SOAK_FLAT_FRACTION:.0%}))")
    return SoakSummary(lines, flat_all, verdict)


def soak_section(*, command: str, date: str, samples: Sequence[SoakSample],
                 workers: Sequence[int], soak: SoakSummary) -> str:
    """The Markdown between the soak markers: RSS of each worker over the requests sent."""
    header = ["Requests", *(f"worker {pid} RSS MiB" for pid in workers)]
    cells = [[f"{sent:,}", *(f"{kib / 1024:.1f}" if (kib := rss.get(pid)) is not None else "gone"
                             for pid in workers)] for sent, rss in samples]
    return "\n".join([
        "## Soak: worker memory over many requests (Bastion with no stages)", "",
        f"Command: `{command}`  ", f"Date: {date}", "",
        markdown_table(header, cells), "", *soak.lines, "", soak.verdict,
    ])


class SectionMarkersError(ValueError):
    """The file has a broken pair of section markers; it is left untouched."""


def replace_section(document: str, start: str, end: str, body: str) -> str:
    """``document`` with the text between the ``start`` and ``end`` markers replaced by ``body``.

    Everything outside the markers is kept byte for byte. Without the markers the section
    is appended (under a ``# Benchmarks`` title when the document is empty).
    """
    block = f"{start}\n{body.strip()}\n{end}"
    starts, ends = document.count(start), document.count(end)
    if starts == 0 and ends == 0:
        if not document.strip():
            return f"# Benchmarks\n\n{block}\n"
        return document.rstrip("\n") + "\n\n" + block + "\n"
    if starts != 1 or ends != 1 or document.index(start) > document.index(end):
        raise SectionMarkersError(
            f"expected one {start} followed by one {end}, found {starts} start and {ends} end "
            "marker(s) out of order or repeated; fix the file by hand"
        )
    head, rest = document.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + block + tail


def write_section(path: Path, start: str, end: str, body: str) -> None:
    """Replace (or add) one marked section of a Markdown file, creating the file if needed."""
    existing = path.read_text() if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(existing, start, end, body))
