"""Fuzz the detection engine: structured requests (any target, headers, JSON, form, multipart,
XML or raw bodies, gzip or not) through ``DetectionEngine.evaluate`` at paranoia 1 or 4.

Run: ``python -m tests.fuzz.fuzz_detection [libFuzzer flags] CORPUS_DIR``.
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["bastion"]):
    from bastion.stages.detection import DetectionConfig, DetectionEngine, Verdict
    from bastion.stages.detection.content import FILE_NAME
    from bastion.stages.detection.inspect import KNOWN_MAX_CHARS, Cut, Known, Limits, extract
    from bastion.types import Request

from tests.fuzz.codec import Reader, read_request, to_request
from tests.fuzz.harness import main
from tests.fuzz.seeds import detection_seeds

ENGINES = [DetectionEngine(DetectionConfig(paranoia=1)), DetectionEngine(DetectionConfig(paranoia=4))]
LIMITS = Limits()
#: Tight limits, so that the inputs and characters cut often.
TIGHT = Limits(max_inputs=8, max_total_chars=300)
_LINE_KINDS = frozenset({"path", "query", "query-name", "header", "cookie", "cookie-name"})


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
    check_known(request, reader.choice(2) == 0)
    verdict = engine.evaluate(request)
    if not isinstance(verdict, Verdict) or not 0 <= verdict.score <= verdict.total_score:
        raise Broken(f"evaluate() gave {verdict!r}")
    if verdict.hits:
        record = verdict.log_record()
        if any(len(h["snippet"]) > 40 or not h["snippet"].isprintable() for h in record["hits"]):
            raise Broken("a logged snippet is long or unprintable")


def check_known(request: Request, tight: bool) -> None:
    """With some of its values known, extraction gives the other inputs, in order, and
    the limits cut where they cut without known values."""
    limits = TIGHT if tight else LIMITS
    full_cut, known_cut = Cut(), Cut()
    everything = extract(request, limits, named=False, cut=full_cut)
    known = Known(lines_apart=True)
    for inp in everything[::2]:
        if not inp.markup and inp.content != FILE_NAME and len(inp.value) <= KNOWN_MAX_CHARS:
            known.bucket(inp.is_key, inp.location in _LINE_KINDS).add(inp.value)
    kept = extract(request, limits, named=False, cut=known_cut, known=known)
    expected = [
        i for i in everything
        # (Markup and an upload's file name are never left out.)
        if i.markup or i.content == FILE_NAME or len(i.value) > KNOWN_MAX_CHARS
        or i.value not in known.bucket(i.is_key, i.location in _LINE_KINDS)
    ]
    if kept != expected or known_cut.reason != full_cut.reason:
        raise Broken("extract(known=...) does not leave out exactly the known values")


if __name__ == "__main__":
    main(check, detection_seeds)
