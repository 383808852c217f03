"""Run the detection engine in-process over request corpora and report block rates.

    python bench/detection/offline.py [--paranoia 1] [--corpus PATH ...] [--misses] [--fps]
                                      [--engine native|modsecurity]

No server is involved: each corpus line becomes a :class:`bastion.types.Request` and goes
through :class:`DetectionEngine.evaluate` (or, with ``--engine modsecurity``, the OWASP CRS
from Debian's modsecurity-crs through libmodsecurity). Prints per-category block rates, the per-request
cost in microseconds, and optionally the attacks missed and the benign requests blocked.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

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
    args = parser.parse_args()
    corpora = args.corpus or [p for p in (GOTESTWAF, BENIGN) if p.exists()]
    config = DetectionConfig(paranoia=args.paranoia, threshold=args.threshold, engine=args.engine)
    engine: DetectionEngine | ModSecurityEngine
    if args.engine == "modsecurity":
        engine = ModSecurityEngine(config)
        backend = "libmodsecurity + CRS"
    else:
        engine = DetectionEngine(config, prefer=args.backend)
        backend = engine.matcher.backend_name
    print(f"engine={args.engine} backend={backend} paranoia={args.paranoia} threshold={args.threshold}")
    for path in corpora:
        results: dict[str, list[bool]] = defaultdict(list)
        expect: dict[str, bool] = {}
        timings: list[float] = []
        for sample in load(path):
            request = sample.to_request()
            verdict = engine.evaluate(request)
            blocked = verdict.block_category is not None
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                engine.evaluate(sample.to_request())
                best = min(best, time.perf_counter() - t0)
            timings.append(best * 1e6)
            results[sample.category].append(blocked)
            expect[sample.category] = sample.expect_block
            if args.misses and sample.expect_block and not blocked:
                print(
                    f"MISS {sample.id} score={verdict.score} {sample.target[:100]!r} "
                    f"{sample.body[:160]!r} {[h['rule'] for h in verdict.log_record()['hits']]}"
                )
            if args.fps and not sample.expect_block and blocked:
                print(f"FP   {sample.id} {verdict.log_record()['hits']} {sample.target[:100]!r} {sample.body[:200]!r}")
        print(f"\n== {path.name}")
        print(rate_table(results, expect))
        timings.sort()
        print(
            f"per request (µs, includes Request construction): median {statistics.median(timings):.1f}"
            f"  p90 {timings[int(len(timings) * 0.9)]:.1f}  p99 {timings[int(len(timings) * 0.99)]:.1f}"
            f"  max {timings[-1]:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
