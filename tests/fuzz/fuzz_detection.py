"""Fuzz the detection engine: structured requests (any target, headers, JSON, form, multipart,
XML or raw bodies, gzip or not) through ``DetectionEngine.evaluate`` at paranoia 1 or 4.

Run: ``python -m tests.fuzz.fuzz_detection [libFuzzer flags] CORPUS_DIR``.
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["bastion"]):
    from bastion.stages.detection import DetectionConfig, DetectionEngine, Verdict
    from bastion.stages.detection.inspect import Limits, extract

from tests.fuzz.codec import Reader, read_request, to_request
from tests.fuzz.harness import main
from tests.fuzz.seeds import detection_seeds

ENGINES = [DetectionEngine(DetectionConfig(paranoia=1)), DetectionEngine(DetectionConfig(paranoia=4))]
LIMITS = Limits()


class Broken(AssertionError):
    """An invariant of the detection engine does not hold."""


def check(data: bytes) -> None:
    reader = Reader(atheris.FuzzedDataProvider(data))
    request = to_request(read_request(reader))
    # One engine per input (the fuzzer picks which): both would double the time per input.
    engine = ENGINES[reader.choice(2)]
    named = extract(request, LIMITS)
    unnamed = extract(request, LIMITS, named=False)
    if len(named) > LIMITS.max_inputs:
        raise Broken(f"extract() gave {len(named)} inputs")
    # The engine probes with the unnamed inputs and attributes with the named ones: the
    # two must be the same values in the same order.
    if [(i.value, i.is_key, i.markup) for i in named] != [(i.value, i.is_key, i.markup) for i in unnamed]:
        raise Broken("extract(named=False) does not give the inputs extract() gives")
    verdict = engine.evaluate(request)
    if not isinstance(verdict, Verdict) or not 0 <= verdict.score <= verdict.total_score:
        raise Broken(f"evaluate() gave {verdict!r}")
    if verdict.hits:
        record = verdict.log_record()
        if any(len(h["snippet"]) > 40 or not h["snippet"].isprintable() for h in record["hits"]):
            raise Broken("a logged snippet is long or unprintable")


if __name__ == "__main__":
    main(check, detection_seeds)
