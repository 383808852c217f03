"""Throughput of the redact stage's scan, in process, beside a no-stage baseline.

    python bench/redact.py            # 1 KB, 100 KB and 10 MB JSON bodies; about 20 s
    python bench/redact.py --quick    # a check that it runs (tiny repeats; figures meaningless)

Each body goes through the chain's body filter as the proxy feeds it: a 1 KB or 100 KB body
known in full is one final piece; the 10 MB body comes in 64 KiB reads. Three runs per body,
interleaved: ``baseline`` (a chain without body stages: what the proxy does without
redaction), ``redact`` (the default types on ``mask``: card, ssn, iban, secrets,
password_hash) and ``redact-all`` (every type, e-mail, phone and JWTs included, whose
4 KB carry-over is rescanned on every read). The bodies are JSON records of the kind APIs
return (UUIDs, timestamps, prices, text), one in fifty carrying a card number, so the
masking path is measured too. Figures are MB/s of body (10^6 bytes), the median of
``--repeats``, and µs per KB; the issue's target is >= 200 MB/s for the scan. Run it in a
compiled install for production figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from bastion.pipeline.chain import Chain
from bastion.pipeline.stage import Stage
from bastion.sensitive import DETECTORS
from bastion.stages.redact import RedactConfig, RedactStage
from bastion.types import Exchange, Request, Response

READ = 64 * 1024


def json_body(size: int) -> bytes:
    """``size`` bytes (about) of a JSON array of records; one in fifty has a card number."""
    records: list[bytes] = []
    total = 2
    i = 0
    while total < size:
        card = b', "card": "4111 1111 1111 1111"' if i % 50 == 49 else b""
        record = (
            b'{"id": "550e8400-e29b-41d4-a716-%012d", "created": 1733565760%03d, "price": %d.99, '
            b'"name": "Widget %d", "description": "A sturdy widget for everyday use, order ORD-2024-%06d"%s}'
            % (i, i % 1000, i % 997, i, i, card)
        )
        records.append(record)
        total += len(record) + 2
        i += 1
    return b"[" + b", ".join(records) + b"]"


def pieces(body: bytes) -> list[bytes]:
    """How the proxy hands the body over: whole when small, else in reads of 64 KiB."""
    if len(body) <= READ:
        return [body]
    return [body[i : i + READ] for i in range(0, len(body), READ)]


def runner(stages: list[Stage], parts: list[bytes]) -> Callable[[], int]:
    """One pass of ``parts`` through a chain of ``stages``' body filter; the bytes out."""
    chain = Chain(stages)
    request = Request("GET", "/items", "/items", "", [("host", "api.test")])

    def run() -> int:
        exchange = Exchange(request, "bench")
        exchange.response = Response(200, [("content-type", "application/json")], None)
        chain.response(exchange)
        body = chain.body_filter(exchange)
        out = 0
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if body is None:
                out += len(part)  # no body stage: the proxy sends the read as it is
            else:
                out += len(body.feed(part, i == last) or b"")
        return out

    return run


def measure(size: int, repeats: int, budget: float) -> dict[str, float]:
    """MB/s per configuration for a body of ``size`` bytes (median of ``repeats`` runs)."""
    parts = pieces(json_body(size))
    total = sum(len(p) for p in parts)
    configs: dict[str, list[Stage]] = {
        "baseline": [],
        "redact": [RedactStage(RedactConfig())],
        "redact-all": [RedactStage(RedactConfig(types=list(DETECTORS)))],
    }
    runs = {name: runner(stages, parts) for name, stages in configs.items()}
    # Enough passes per sample that each takes about ``budget`` seconds of redact.
    start = time.perf_counter()
    runs["redact"]()
    loops = max(1, int(budget / max(time.perf_counter() - start, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():  # interleaved: noise spreads over all three
            t0 = time.perf_counter()
            for _ in range(loops):
                run()
            samples[name].append(total * loops / (time.perf_counter() - t0) / 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny repeats: check that it runs")
    args = parser.parse_args()
    repeats, budget = (1, 0.001) if args.quick else (args.repeats, 0.2)
    print("| body | baseline MB/s | redact MB/s | redact µs/KB | redact-all MB/s | redact-all µs/KB |")
    print("|---|---|---|---|---|---|")
    for label, size in (("1 KB JSON", 1024), ("100 KB JSON", 100 * 1024), ("10 MB JSON", 10 * 1000 * 1000)):
        mbps = measure(size, repeats, budget)
        per_kb = {name: 1024 / (value * 1e6) * 1e6 for name, value in mbps.items()}
        print(
            f"| {label} | {mbps['baseline']:,.0f} | {mbps['redact']:,.0f} | {per_kb['redact']:.2f} "
            f"| {mbps['redact-all']:,.0f} | {per_kb['redact-all']:.2f} |"
        )


if __name__ == "__main__":
    main()
