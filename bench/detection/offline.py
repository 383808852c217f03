"""Run the detection engine in-process over request corpora and report block rates.

    python bench/detection/offline.py [--paranoia 1] [--corpus PATH ...] [--misses] [--fps]
                                      [--engine native|modsecurity]
                                      [--crs-pl N [--crs-family 932]] [--no-core]

With ``--crs-pl N`` (for the CRS regression corpus, ``../shared/corpora/crs-regression-
requests.jsonl``) only the request-phase stages of the CRS rules of paranoia level ``N``
are replayed (the response-phase 95x stages need an upstream's answer), optionally only
one family (the rule ID's first three digits); categories are the CRS families, split by
what the stage expects.

No server is involved. Each corpus line's bytes first go through the gateway's own HTTP/1.1
core (``core.py``: llhttp and the strict framing rules, the target parser, routing to one
catch-all route, the body limits): a request the core refuses counts as blocked (``core``
in the listings, with its reason), as it is through a real gateway. The request the core
builds goes through :class:`DetectionEngine.evaluate` (or, with ``--engine modsecurity``, the OWASP CRS
from Debian's modsecurity-crs through libmodsecurity). Prints per-category block rates, the per-request
cost in microseconds, and optionally the attacks missed and the benign requests blocked.
``--no-core`` skips the core: each line becomes a :class:`~bastion.types.Request` directly
(the figures of the rounds before the core was measured).

A CRS stage that expects none only says that the one rule under test must not fire: many
carry an attack that a neighbouring rule is there to catch. So with ``--crs-pl`` (and the
native engine) each such stage is also judged by the CRS itself, Debian's CRS through
libmodsecurity at the same paranoia level and threshold (``--no-crs-judge`` skips it), and
the summary gives, beside the raw rate, Bastion's rate over the stages the CRS would pass:
the false positives, apart from the attacks another rule owns. A stage the core refuses is
judged as its line would reach the engine without the core.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import CoreGate, CoreRefusal
from corpus import BENIGN, GOTESTWAF, load, rate_table

from bastion.stages.detection import DetectionConfig, DetectionEngine
from bastion.stages.detection.modsec import ModSecurityEngine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, action="append", help="JSONL corpus (repeatable)")
    parser.add_argument("--paranoia", type=int, default=1)
    parser.add_argument("--threshold", type=int, default=5)
    parser.add_argument("--backend", choices=["hyperscan", "re2"], default="hyperscan")
    parser.add_argument("--engine", choices=["native", "modsecurity"], default="native")
    parser.add_argument("--misses", action="store_true", help="list attacks that passed")
    parser.add_argument("--fps", action="store_true", help="list benign requests blocked")
    parser.add_argument("--repeat", type=int, default=3, help="timing repetitions per request")
    parser.add_argument("--crs-pl", type=int, help="CRS corpus: only request-phase stages of rules of this PL")
    parser.add_argument("--crs-family", help="CRS corpus: only this family (e.g. 932)")
    parser.add_argument("--no-core", action="store_true", help="skip the gateway's HTTP/1.1 core checks")
    parser.add_argument(
        "--no-crs-judge", action="store_true", help="CRS corpus: do not judge expect-none stages by the CRS itself"
    )
    args = parser.parse_args()
    keep = _crs_filter(args.crs_pl, args.crs_family) if args.crs_pl is not None or args.crs_family else None
    corpora = args.corpus or [p for p in (GOTESTWAF, BENIGN) if p.exists()]
    config = DetectionConfig(paranoia=args.paranoia, threshold=args.threshold, engine=args.engine)
    engine: DetectionEngine | ModSecurityEngine
    if args.engine == "modsecurity":
        engine = ModSecurityEngine(config)
        backend = "libmodsecurity + CRS"
    else:
        engine = DetectionEngine(config, prefer=args.backend)
        backend = engine.matcher.backend_name
    gate = None if args.no_core else CoreGate()
    judge: ModSecurityEngine | None = None
    if keep is not None and args.engine == "native" and not args.no_crs_judge:
        judge = _crs_judge(args.paranoia, args.threshold)
    print(
        f"engine={args.engine} backend={backend} paranoia={args.paranoia} threshold={args.threshold}"
        f" core={'off' if gate is None else 'on'}"
    )
    for path in corpora:
        results: dict[str, list[bool]] = defaultdict(list)
        expect: dict[str, bool] = {}
        timings: list[float] = []
        judged = _Judged()
        for sample in load(path, keep):
            if keep is not None:
                # A CRS family has stages that expect a detection and stages that expect none.
                label = "block" if sample.expect_block else "none"
                sample = dataclasses.replace(sample, category=f"{sample.category} {label}")
            admitted = sample.to_request() if gate is None else gate.admit(sample.to_wire())
            expect[sample.category] = sample.expect_block
            crs = ""
            if judge is not None and not sample.expect_block:
                judged_request = sample.to_request() if isinstance(admitted, CoreRefusal) else admitted
                crs_blocks = judge.evaluate(judged_request).block_category is not None
                crs = f" crs={'block' if crs_blocks else 'pass'}"
            if isinstance(admitted, CoreRefusal):  # the gateway answers before any stage
                results[sample.category].append(True)
                if crs:
                    judged.add(crs_blocks, core=True, detection=False)
                if args.fps and not sample.expect_block:
                    print(f"FP   {sample.id}{crs} core {admitted.status} {admitted.reason}: {admitted.detail}")
                continue
            verdict = engine.evaluate(admitted)
            blocked = verdict.block_category is not None
            results[sample.category].append(blocked)
            if crs:
                judged.add(crs_blocks, core=False, detection=blocked)
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                engine.evaluate(admitted)
                best = min(best, time.perf_counter() - t0)
            timings.append(best * 1e6)
            if args.misses and sample.expect_block and not blocked:
                print(
                    f"MISS {sample.id} score={verdict.score} {sample.target[:100]!r} "
                    f"{sample.body[:160]!r} {[h['rule'] for h in verdict.log_record()['hits']]}"
                )
            if args.fps and not sample.expect_block and blocked:
                hits = verdict.log_record()["hits"]
                print(f"FP   {sample.id}{crs} {hits} {sample.target[:100]!r} {sample.body[:200]!r}")
        print(f"\n== {path.name}")
        print(rate_table(results, expect))
        if judge is not None:
            print(judged.summary(args.paranoia))
        timings.sort()
        print(
            f"per request (µs, includes Request construction): median {statistics.median(timings):.1f}"
            f"  p90 {timings[int(len(timings) * 0.9)]:.1f}  p99 {timings[int(len(timings) * 0.99)]:.1f}"
            f"  max {timings[-1]:.1f}"
        )
    return 0


@dataclasses.dataclass
class _Judged:
    """Expect-none stages by what the CRS itself decides and what Bastion does with them."""

    #: [stages, refused by the core, blocked by detection], CRS passing, CRS blocking.
    passed: list[int] = dataclasses.field(default_factory=lambda: [0, 0, 0])
    refused: list[int] = dataclasses.field(default_factory=lambda: [0, 0, 0])

    def add(self, crs_blocks: bool, *, core: bool, detection: bool) -> None:
        counts = self.refused if crs_blocks else self.passed
        counts[0] += 1
        counts[1] += core
        counts[2] += detection

    def summary(self, paranoia: int) -> str:
        lines = [f"expect none, judged by the CRS itself (libmodsecurity, paranoia {paranoia}):"]
        for label, (n, core, detection) in (("CRS passes", self.passed), ("CRS blocks", self.refused)):
            blocked = core + detection
            rate = 100 * blocked / n if n else 0.0
            lines.append(
                f"  {label:<10} {n:>5} stages, Bastion blocks {blocked:>4} {rate:>6.1f}%"
                f"  (core {core}, detection {detection})"
            )
        return "\n".join(lines)


def _crs_judge(paranoia: int, threshold: int) -> ModSecurityEngine | None:
    """The CRS at the measured paranoia level and threshold, through libmodsecurity (None,
    with a note, where libmodsecurity or the CRS files are missing)."""
    config = DetectionConfig(paranoia=paranoia, threshold=threshold, engine="modsecurity")
    try:
        return ModSecurityEngine(config)
    except Exception as exc:  # a bench tool: say why the judge is missing and measure on
        print(f"no CRS judge ({type(exc).__name__}: {exc}); pip install '.[modsecurity]' and modsecurity-crs")
        return None


def _crs_filter(paranoia: int | None, family: str | None) -> Callable[[dict[str, object]], bool]:
    """Rows of the CRS regression corpus: request phase, rules of this paranoia level, family."""

    def keep(row: dict[str, object]) -> bool:
        if row.get("phase") != "request":
            return False
        if paranoia is not None and row.get("rule_pl") != paranoia:
            return False
        return family is None or str(row.get("rule_id", "")).startswith(family)

    return keep


if __name__ == "__main__":
    raise SystemExit(main())
