"""Running ``wrk`` and reading the report it prints.

wrk has no request budget and no rate limit: every run is bounded by ``-d`` (whole
seconds), and a run's size in requests is steered through its duration.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: wrk prints times with these suffixes (``format_time_us`` in its source).
TIME_UNITS_US: dict[str, float] = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}

_TIME = r"([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)"
_PERCENTILE = re.compile(rf"^\s*([0-9]+(?:\.[0-9]+)?)%\s+{_TIME}\s*$", re.MULTILINE)
_REQUESTS = re.compile(rf"^\s*([0-9]+) requests in {_TIME}", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s*([0-9]+(?:\.[0-9]+)?)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)"
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: ([0-9]+)")

class WrkOutputError(ValueError):
    """wrk's output lacks a figure the benchmark needs (wrong flags, or wrk failed)."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run, as wrk reported it."""

    requests: int
    duration_s: float
    rps: float
    p50_us: float
    p99_us: float
    socket_errors: int
    non_2xx: int

    @property
    def errors(self) -> int:
        """Failed or non-2xx/3xx responses; any of them makes the run's figures suspect."""
        return self.socket_errors + self.non_2xx


def time_to_us(value: str, unit: str) -> float:
    """Convert one of wrk's printed times (``"289.00"``, ``"us"``) to microseconds."""
    try:
        return float(value) * TIME_UNITS_US[unit]
    except KeyError:
        raise WrkOutputError(f"wrk printed a time with an unknown unit {unit!r}") from None


def parse_wrk_output(text: str) -> WrkResult:
    """Read requests, duration, RPS, p50, p99 and errors from ``wrk --latency`` output."""
    percentiles = {float(p): time_to_us(v, u) for p, v, u in _PERCENTILE.findall(text)}
    missing = [name for p, name in ((50.0, "50%"), (99.0, "99%")) if p not in percentiles]
    if missing:
        raise WrkOutputError(
            f"wrk's output has no {' or '.join(missing)} latency line; was it run with --latency?"
        )
    requests = _REQUESTS.search(text)
    rps = _RPS.search(text)
    if requests is None or rps is None:
        raise WrkOutputError("wrk's output has no 'N requests in T' or 'Requests/sec:' line")
    socket_errors = _SOCKET_ERRORS.search(text)
    non_2xx = _NON_2XX.search(text)
    return WrkResult(
        requests=int(requests.group(1)),
        duration_s=time_to_us(requests.group(2), requests.group(3)) / 1e6,
        rps=float(rps.group(1)),
        p50_us=percentiles[50.0],
        p99_us=percentiles[99.0],
        socket_errors=sum(int(g) for g in socket_errors.groups()) if socket_errors else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def wrk_command(
    url: str,
    *,
    threads: int,
    connections: int,
    duration_s: float,
    headers: Sequence[str] = (),
    script: Path | None = None,
    script_args: Sequence[str] = (),
    timeout_s: float | None = None,
) -> list[str]:
    """The wrk argv for one bounded run with the latency distribution.

    ``timeout_s`` is wrk's ``--timeout`` (its default is 2 s): a response slower than that
    counts as a timeout error instead of a latency, and the run still ends after ``-d``.
    """
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--latency"]
    if timeout_s is not None:
        cmd += ["--timeout", f"{max(1, round(timeout_s))}s"]
    for header in headers:
        cmd += ["-H", header]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    return cmd


def run_wrk(cmd: Sequence[str], *, duration_s: float) -> tuple[WrkResult, str]:
    """Run wrk to completion (killed if it outlives its duration by 30 s); parse its report."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=duration_s + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise WrkOutputError(f"wrk exited with status {proc.returncode}:\n{out}")
    return parse_wrk_output(out), out
