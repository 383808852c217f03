"""Running a fuzz target under atheris with a time bound per input.

Every harness module ends with ``main(check, seeds)``. libFuzzer's own ``-timeout`` turns an
input that hangs into a failure; :func:`bounded` also fails an input that is merely slow
(over :data:`SLOW_SECONDS`, ``BASTION_FUZZ_SLOW_SECONDS`` to change it), raising
:class:`SlowInput` with the input's size so libFuzzer saves it as a crash.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

#: Slowest an input may be, in seconds (the harnesses run instrumented, so this is generous).
SLOW_SECONDS = float(os.environ.get("BASTION_FUZZ_SLOW_SECONDS", "0.5"))


class SlowInput(Exception):
    """One input took longer than the per-input bound."""


class Bounded:
    """``check`` timed per input; keeps the slowest time seen and fails past the bound."""

    def __init__(self, check: Callable[[bytes], None], limit: float = SLOW_SECONDS) -> None:
        self._check = check
        self.limit = limit
        self.slowest = 0.0
        self.runs = 0

    def __call__(self, data: bytes) -> None:
        start = time.perf_counter()
        self._check(data)
        elapsed = time.perf_counter() - start
        self.runs += 1
        if elapsed > self.slowest:
            self.slowest = elapsed
            # Reported as it happens: libFuzzer ends the process with exit(), not via Python.
            if elapsed > 0.05:
                print(f"#slowest {elapsed:.3f} s on an input of {len(data)} bytes", file=sys.stderr, flush=True)
        if elapsed > self.limit:
            raise SlowInput(f"an input of {len(data)} bytes took {elapsed:.3f} s (the bound is {self.limit} s)")


def write_seeds(directory: Path, seeds: Iterable[bytes]) -> int:
    """Write ``seeds`` into ``directory`` (one file each); how many were written."""
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, seed in enumerate(seeds, 1):
        (directory / f"seed-{count:05d}").write_bytes(seed)
    return count


def main(check: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]]) -> None:
    """Fuzz ``check`` with libFuzzer's command line (``sys.argv``).

    The first corpus directory given, when empty or missing, is filled with ``seeds()``
    first. Its first inputs are run once before fuzzing starts (unbounded), so one-time
    costs (lazy imports, compiled databases) are not charged to the first input. Files
    instead of a directory are replayed (``python -m tests.fuzz.fuzz_x crash-...``).
    """
    import atheris

    paths = [Path(a) for a in sys.argv[1:] if not a.startswith("-")]
    # Files given instead of a corpus directory are inputs to replay (libFuzzer's own mode).
    corpus = paths[0] if paths and not paths[0].is_file() else None
    if corpus is not None and (not corpus.exists() or not any(corpus.iterdir())):
        written = write_seeds(corpus, seeds())
        print(f"#seeds {written} written to {corpus}", file=sys.stderr, flush=True)
    for path in sorted(corpus.iterdir())[:50] if corpus is not None else ():
        try:
            check(path.read_bytes())
        except Exception:
            print(f"#seed {path} fails", file=sys.stderr, flush=True)
            raise
    check(b"")
    atheris.Setup(sys.argv, Bounded(check))
    atheris.Fuzz()
