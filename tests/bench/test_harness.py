"""The proxy benchmark's pure parts: reading wrk's report, the summary, the Markdown section.

No load is generated here; the servers and wrk are exercised by running bench/run.py.
"""

from __future__ import annotations

import http.server
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from proxybench.report import (
    PROXY_END,
    PROXY_START,
    Sample,
    SectionMarkersError,
    TargetRuns,
    replace_section,
    summarize,
)
from proxybench.servers import UPSTREAM_BODY, proxy_nginx_config, upstream_nginx_config
from proxybench.wrk import WrkOutputError, WrkResult, parse_wrk_output, wrk_command

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:41237/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   311.73us  130.01us   5.51ms   89.47%
    Req/Sec    49.07k     3.79k   57.13k    70.30%
  Latency Distribution
     50%  289.00us
     75%  347.00us
     90%  437.00us
     99%    1.23ms
  976625 requests in 10.10s, 209.56MB read
Requests/sec:  96698.48
Transfer/sec:     20.75MB
"""

WRK_OUTPUT_WITH_ERRORS = """\
Running 3s test @ http://127.0.0.1:41237/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.50s   200.00ms   2.00s    80.00%
    Req/Sec     2.00      1.00     4.00     90.00%
  Latency Distribution
     50%    1.20s
     75%    1.50s
     90%    1.80s
     99%    2.00s
  6 requests in 3.00s, 1.02KB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:      2.00
Transfer/sec:     348.00B
"""


def test_parses_throughput_and_percentiles_in_mixed_units() -> None:
    """RPS, the request count, the run time and p50/p99 come out exactly, us and ms alike."""
    result = parse_wrk_output(WRK_OUTPUT)
    assert result == WrkResult(
        requests=976625, duration_s=10.1, rps=96698.48, p50_us=289.0, p99_us=1230.0,
        socket_errors=0, non_2xx=0,
    )
    assert result.errors == 0


def test_parses_socket_errors_non_2xx_and_seconds() -> None:
    """Socket errors are summed, non-2xx counted, and latencies in seconds converted."""
    result = parse_wrk_output(WRK_OUTPUT_WITH_ERRORS)
    assert (result.p50_us, result.p99_us) == (1.2e6, 2.0e6)
    assert (result.socket_errors, result.non_2xx, result.errors) == (5, 4, 9)
    assert (result.requests, result.rps) == (6, 2.0)


def test_output_without_latency_distribution_is_an_error() -> None:
    """wrk run without --latency has no percentiles: the parser says so instead of guessing."""
    without = "\n".join(line for line in WRK_OUTPUT.splitlines() if "%  " not in line)
    with pytest.raises(WrkOutputError, match="--latency"):
        parse_wrk_output(without)


def test_wrk_command_is_bounded_and_asks_for_latency() -> None:
    """Every run has a whole-second duration and --latency; headers are passed with -H."""
    assert wrk_command("http://127.0.0.1:1/", threads=2, connections=32, duration_s=2.6,
                       headers=["Authorization: Bearer x"]) == [
        "wrk", "-t2", "-c32", "-d3s", "--latency", "-H", "Authorization: Bearer x",
        "http://127.0.0.1:1/",
    ]


def _sample(rps: float, p50_us: float, requests: int, cpu_s: float) -> Sample:
    return Sample(WrkResult(requests, 10.0, rps, p50_us, p50_us * 3, 0, 0), cpu_s)


def _moderate(p50_us: float) -> WrkResult:
    return WrkResult(1000, 10.0, 100.0, p50_us, p50_us * 2, 0, 0)


def test_summary_takes_medians_and_ratios_to_the_baselines() -> None:
    """Each figure is the median over rounds; RPS ratios use nginx's and direct's medians,
    the added p50 is the proxy's moderate-load p50 minus the upstream's."""
    direct = TargetRuns("direct", "upstream", [_sample(40000, 300, 400000, 4.0)] * 3,
                        [_moderate(100)] * 3)
    nginx = TargetRuns("nginx", "proxy", [_sample(20000, 600, 200000, 6.0)] * 3,
                       [_moderate(200)] * 3)
    bastion = TargetRuns(
        "bastion-none", "bastion",
        [_sample(10000, 900, 100000, 5.0), _sample(14000, 800, 140000, 7.0),
         _sample(99999, 1, 100000, 1.0)],
        [_moderate(300), _moderate(400), _moderate(350)],
    )
    rows = {row.name: row for row in summarize([direct, nginx, bastion])}
    row = rows["bastion-none"]
    assert row.rps == 14000
    assert row.rps_vs_nginx == pytest.approx(0.7)
    assert row.rps_vs_direct == pytest.approx(0.35)
    assert row.p50_ms == pytest.approx(0.8)
    assert row.cpu_us == pytest.approx(50.0)
    assert row.moderate_p50_ms == pytest.approx(0.35)
    assert row.added_p50_ms == pytest.approx(0.25)
    assert rows["nginx"].rps_vs_nginx == 1.0


def test_replace_section_keeps_everything_outside_the_markers() -> None:
    """Only the proxy section changes; a detection section before or after it is untouched."""
    document = (
        "# Benchmarks\n\nIntro.\n\n"
        f"{PROXY_START}\nold table\n{PROXY_END}\n\n"
        "<!-- bench:detection:start -->\nDetection rates.\n<!-- bench:detection:end -->\n"
    )
    updated = replace_section(document, PROXY_START, PROXY_END, "new table\n")
    assert updated == (
        "# Benchmarks\n\nIntro.\n\n"
        f"{PROXY_START}\nnew table\n{PROXY_END}\n\n"
        "<!-- bench:detection:start -->\nDetection rates.\n<!-- bench:detection:end -->\n"
    )


def test_replace_section_appends_when_the_markers_are_missing() -> None:
    """A file without the markers gets the section at its end; an empty one gets a title."""
    assert replace_section("", PROXY_START, PROXY_END, "table") == (
        f"# Benchmarks\n\n{PROXY_START}\ntable\n{PROXY_END}\n"
    )
    assert replace_section("# Benchmarks\n\nDetection.\n", PROXY_START, PROXY_END, "table") == (
        f"# Benchmarks\n\nDetection.\n\n{PROXY_START}\ntable\n{PROXY_END}\n"
    )


@pytest.mark.parametrize("document", [
    f"{PROXY_START}\nno end\n",
    f"{PROXY_END}\nend first\n{PROXY_START}\n",
    f"{PROXY_START}\na\n{PROXY_END}\n{PROXY_START}\nb\n{PROXY_END}\n",
])
def test_replace_section_refuses_broken_markers(document: str) -> None:
    """A lone, reversed or repeated marker is an error: the file is not guessed at."""
    with pytest.raises(SectionMarkersError):
        replace_section(document, PROXY_START, PROXY_END, "table")


def test_nginx_configs_stay_on_loopback_inside_the_run_folder(tmp_path: Path) -> None:
    """Both nginx instances listen on 127.0.0.1, keep pid, logs and temp files in the run's
    folder, and the upstream returns the 109-byte JSON body."""
    assert len(UPSTREAM_BODY.encode()) == 109
    upstream = upstream_nginx_config(tmp_path, 8001, 1)
    proxy = proxy_nginx_config(tmp_path, 8002, 8001, 2)
    assert f"return 200 '{UPSTREAM_BODY}';" in upstream
    assert "listen 127.0.0.1:8001;" in upstream and "worker_processes 1;" in upstream
    assert "listen 127.0.0.1:8002;" in proxy and "worker_processes 2;" in proxy
    assert 'proxy_set_header Connection "";' in proxy and "proxy_http_version 1.1;" in proxy
    for config in (upstream, proxy):
        paths = [line.split()[1].rstrip(";") for line in config.splitlines()
                 if line.strip().startswith(("pid ", "error_log ")) or "_temp_path" in line]
        assert paths and all(p.startswith(str(tmp_path)) for p in paths)


@contextmanager
def _ok_upstream() -> Iterator[int]:
    """A loopback HTTP upstream that answers every GET with 200 ``ok``; gives its port."""

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        yield upstream.server_address[1]
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_the_api_key_scenario_sends_a_key_the_gateway_accepts(tmp_path: Path) -> None:
    """``bastion-apikey`` starts a real gateway whose catch-all route requires authentication,
    with a key made by ``bastion keys create``: without the key a request gets 401 (checked
    before any load, or the figures would measure refusals), with the server's headers the
    upstream answers 200."""
    import contextlib

    from proxybench.procs import http_get
    from proxybench.servers import start_bastion

    with _ok_upstream() as upstream_port, contextlib.ExitStack() as stack:
        server = start_bastion(
            stack, "bastion-apikey", tmp_path, bastion_bin=Path(sys.executable).with_name("bastion"),
            upstream_port=upstream_port, workers=1, access_log=False,
            policies={"access": {"enabled": False}, "headers": {"enabled": False}}, overrides={},
            api_key=True,
        )
        (header,) = server.headers
        assert header.startswith("Authorization: Bearer bst_")
        assert http_get(server.port)[0] == 401
        assert http_get(server.port, headers=server.headers) == (200, b"ok")


def test_the_jwt_scenario_sends_a_token_the_gateway_accepts(tmp_path: Path) -> None:
    """``instructions.py --scenario jwt`` puts the catch-all route behind one HS256 issuer and
    signs a token for it: a real gateway refuses a request without it (401) and forwards
    the same token every time (200, the second a cached verified token), or the counts
    would measure refusals."""
    import contextlib

    from bastion.testing import GatewayProcess
    from instructions import jwt_header
    from proxybench.procs import free_port, http_get
    from proxybench.servers import bastion_config

    with _ok_upstream() as upstream_port:
        config = bastion_config(port=free_port(), admin_port=free_port(), upstream_port=upstream_port,
                                access_log=None, policies={"access": {"enabled": False}}, overrides={})
        line = jwt_header(config, tmp_path)
        name, _, value = line.decode().strip().partition(": ")
        assert name == "Authorization" and value.startswith("Bearer ey")
        with contextlib.ExitStack() as stack:
            gateway = stack.enter_context(GatewayProcess(config, folder=tmp_path))
            assert http_get(gateway.port, timeout=30)[0] == 401
            for _ in range(2):
                assert http_get(gateway.port, timeout=30, headers=(f"{name}: {value}",)) == (200, b"ok")


def test_the_memory_rate_limit_scenario_runs_with_one_worker_only(capsys: pytest.CaptureFixture[str]) -> None:
    """``bastion-rlmem`` (a rate limit on the memory backend, which Bastion refuses with several
    workers) is chosen with ``--workers 1``; named with ``--workers 2``, run.py stops with an
    error naming the scenario and why; not named, a two-worker run leaves it out."""
    from run import parse_args

    assert "bastion-rlmem" in [s.name for s in parse_args(["--only", "bastion-rlmem", "--workers", "1"]).scenarios]
    assert "bastion-rlmem" not in [s.name for s in parse_args(["--workers", "2"]).scenarios]
    with pytest.raises(SystemExit):
        parse_args(["--only", "bastion-rlmem", "--workers", "2"])
    assert "bastion-rlmem need --workers 1 (asked: 2)" in capsys.readouterr().err


def test_the_memory_rate_limit_scenario_limits_through_the_gateway(tmp_path: Path) -> None:
    """``bastion-rlmem``'s policies start a real one-worker gateway on the memory backend whose
    answers carry the rate limit's fields for both limits (the stage being measured is on)."""
    import contextlib
    import http.client

    from bastion.testing import GatewayProcess
    from proxybench.procs import free_port
    from proxybench.scenarios import SCENARIOS
    from proxybench.servers import bastion_config

    (scenario,) = [s for s in SCENARIOS if s.name == "bastion-rlmem"]
    with _ok_upstream() as upstream_port, contextlib.ExitStack() as stack:
        config = bastion_config(port=free_port(), admin_port=free_port(), upstream_port=upstream_port,
                                access_log=None, policies=dict(scenario.policies or {}), overrides={})
        gateway = stack.enter_context(GatewayProcess(config, folder=tmp_path))
        conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"ok")
            fields = response.getheader("ratelimit") or ""
        finally:
            conn.close()
        names = [part.split(";")[0] for part in fields.split(", ")]
        assert names == ['"ip-1000000000-per-3600s"', '"global-1000000000-per-86400s"']
        assert all(";r=999999999;" in part for part in fields.split(", "))
