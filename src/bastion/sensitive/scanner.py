"""Find sensitive values in bytes: one hyperscan pass for candidates, a check each.

Candidates come from one hyperscan database holding every pattern of the kinds a scanner
was built for (linear time, no backtracking, whatever the body). Where hyperscan cannot be
loaded, RE2 finds them, a little slower. Python's ``re`` never runs over a body: only the
candidates' own checks run in Python, on the candidate and the byte on either side.

:class:`StreamScanner` scans a body that arrives in chunks with bounded memory: it carries
the last :attr:`Scanner.hold` bytes (plus one of context) over to the next chunk, so a value
split across chunks is found once, and finds exactly what one scan of the whole body finds.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Final

from bastion.sensitive.detectors import CONTEXT, DETECTORS, Detector, expand


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - depends on the machine
        return None


_hs = _optional("hyperscan")
_re2 = _optional("re2")


@dataclass(frozen=True, slots=True)
class Finding:
    """One sensitive value: its kind and where it is (``data[start:end]``)."""

    kind: str
    start: int
    end: int


class _Candidates:
    """Every (pattern, start, end) of the patterns in some data; start -1 where the backend
    was told not to track it (the detector's :attr:`~Detector.start` finds it)."""

    name: str

    def scan(self, data: bytes) -> list[tuple[int, int, int]]:
        raise NotImplementedError


class _Hyperscan(_Candidates):
    name = "hyperscan"

    def __init__(self, patterns: list[str], som: list[bool]) -> None:
        self._db: Any = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        self._db.compile(
            expressions=[p.encode() for p in patterns],
            ids=list(range(len(patterns))),
            elements=len(patterns),
            # Leftmost start of a match only where no check can find it more cheaply; no
            # other flag: the kinds are case-sensitive.
            flags=[_hs.HS_FLAG_SOM_LEFTMOST if s else 0 for s in som],
        )
        self._scratch: Any = _hs.Scratch(self._db)
        self._som = som

    def scan(self, data: bytes) -> list[tuple[int, int, int]]:
        found: list[tuple[int, int, int]] = []
        som = self._som

        def on_match(pattern: int, start: int, end: int, flags: int, context: object) -> None:
            found.append((pattern, start if som[pattern] else -1, end))

        # Positional (match_event_handler, flags, context, scratch): the binding parses
        # keyword arguments by name on every call, which cost ~3,400 instructions a scan
        # (callgrind), twice a response on a route that redacts headers and body.
        self._db.scan(data, on_match, 0, None, self._scratch)
        return found


class _Re2(_Candidates):
    """RE2 finds leftmost-first matches only; each is reported with every shorter end, as
    hyperscan reports them, so the checks choose the same ends."""

    name = "re2"

    def __init__(self, patterns: list[str]) -> None:
        self._compiled: list[Any] = [_re2.compile(p.encode()) for p in patterns]

    def scan(self, data: bytes) -> list[tuple[int, int, int]]:
        found: list[tuple[int, int, int]] = []
        for pattern, compiled in enumerate(self._compiled):
            for match in compiled.finditer(data):
                start, end = match.span()
                found.extend((pattern, start, e) for e in range(start + 1, end + 1))
        return found


def _candidates(patterns: list[str], som: list[bool], prefer: str) -> _Candidates:
    if prefer == "hyperscan" and _hs is not None:
        try:
            return _Hyperscan(patterns, som)
        except Exception as exc:  # pragma: no cover - e.g. a CPU without SSSE3
            # Not fail-open: the same patterns run on RE2, only slower; say so once.
            logging.getLogger("bastion.sensitive").warning("hyperscan unavailable (%s); using RE2", exc)
    if _re2 is None:  # pragma: no cover - both are dependencies
        raise RuntimeError("neither hyperscan nor google-re2 can be loaded: sensitive data cannot be scanned")
    return _Re2(patterns)


class Scanner:
    """The detectors of some kinds, compiled once (at config load); :meth:`find` is the
    per-body work."""

    def __init__(self, types: tuple[str, ...] | list[str], *, prefer: str = "hyperscan") -> None:
        self.kinds: Final = expand(types)
        detectors: list[Detector] = [DETECTORS[k] for k in self.kinds]
        patterns: list[str] = []
        som: list[bool] = []
        self._owner: list[Detector] = []
        for detector in detectors:
            for pattern in detector.patterns:
                patterns.append(pattern)
                som.append(detector.start is None)
                self._owner.append(detector)
        self._candidates = _candidates(patterns, som, prefer)
        self.backend: Final = self._candidates.name
        #: The longest value any of the kinds can be.
        self.max_length: Final = max((d.max_length for d in detectors), default=0)
        #: What a chunked scan holds back: a value starting there may go on past the chunk.
        self.hold: Final = self.max_length + CONTEXT

    def find(self, data: bytes, first: int = 0, last: int = -1) -> list[Finding]:
        """The values in ``data`` that start in ``[first, last)`` (``last`` -1: anywhere),
        leftmost first; where two overlap, the one starting first (then the longer) wins."""
        if last < 0:
            last = len(data)
        valid: list[tuple[int, int, str]] = []
        owner = self._owner
        for pattern, start, end in self._candidates.scan(data):
            detector = owner[pattern]
            if start < 0 and detector.start is not None:
                start = detector.start(data, end)
            if start < first or start >= last:
                continue
            stop = detector.check(data, start, end)
            if stop >= 0:
                valid.append((start, -stop, detector.kind))
        if not valid:
            return []
        valid.sort()
        out: list[Finding] = []
        covered = -1
        for start, neg_end, kind in valid:
            if start >= covered:
                out.append(Finding(kind, start, -neg_end))
                covered = -neg_end
        return out


class StreamScanner:
    """One body's scan, chunk by chunk: :meth:`feed` gives the findings it could decide,
    with offsets into the whole body. Holds at most ``scanner.hold + 1`` bytes between chunks."""

    __slots__ = ("_base", "_carry", "_covered", "_first", "_scanner")

    def __init__(self, scanner: Scanner) -> None:
        self._scanner = scanner
        self._carry = b""
        #: Offset in the body of ``_carry[0]``.
        self._base = 0
        #: Where in the carry undecided values may start: 1 once the carry begins with a
        #: byte of context (the byte before a value matters), 0 at the start of the body.
        self._first = 0
        #: End (in the body) of the last finding: nothing before it is reported again.
        self._covered = 0

    def feed(self, chunk: bytes, final: bool) -> list[Finding]:
        """The findings decided once ``chunk`` came (every one left when ``final``)."""
        scanner = self._scanner
        data = self._carry + chunk if self._carry else chunk
        base = self._base
        first = self._first
        last = len(data) if final else len(data) - scanner.hold
        if last <= first:
            self._carry = data  # not enough yet to decide anything (at most hold + 1 bytes)
            return []
        found: list[Finding] = []
        for f in scanner.find(data, first, last):
            if base + f.start >= self._covered:
                found.append(Finding(f.kind, base + f.start, base + f.end))
                self._covered = base + f.end
        if final:
            self._carry = b""
            self._base = base + len(data)
            self._first = 0
        else:
            keep = last - 1  # the byte before the first undecided position, as context
            self._carry = data[keep:]
            self._base = base + keep
            self._first = 1
        return found
