"""Detection's CPU cost on typical.py's requests, as the least of several rounds: for
comparing two versions of the code on a shared machine, run alternately.

    python bench/detection/ab_cost.py [--rounds 7]

Prints one JSON line: the mean per request over typical.py's 2,000 distinct ~1 KB orders
(warm: the memory of clean values emptied before each round; cold: before each request)
and the best mean of each request of typical.py's mix, repeated. To compare with another
commit, extract its ``src`` (``git archive <commit> src | tar -x -C /tmp/old``) and run
this script alternately with ``PYTHONPATH=/tmp/old/src`` and without, with the same
install: the least of several runs is what load on other cores disturbs least.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import typical

from bastion.stages.detection import DetectionConfig, DetectionEngine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    engine = DetectionEngine(DetectionConfig())
    forget = engine.matcher.forget
    orders = [typical._post("/v1/orders", typical.order_of_1kb(i)) for i in range(2000)]
    warm = min(typical.mean_over(orders, engine.evaluate, None, forget) for _ in range(args.rounds))
    cold = min(typical.mean_over(orders[:500], engine.evaluate, forget) for _ in range(max(1, args.rounds // 2)))
    figures = {"orders warm": warm, "orders cold": cold}
    for label, request in typical.MIX:
        figures[label] = typical.best_of(lambda r=request: engine.evaluate(r), 300, 9)
    print(json.dumps({name: round(value, 1) for name, value in figures.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
