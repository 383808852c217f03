"""A baseline kept in the state backend: an exponentially weighted moving average (EWMA) of
one number per interval (a consumer's requests to a route, a route's share of 5xx).

Time is cut into fixed intervals (``bucket = ts // interval``). When the first event of a
new interval is counted, whichever worker counted it folds the *previous* interval's
number into the average and writes it back; every other worker only reads it. The average
starts at zero and is corrected for that start (as Adam's moments are), so after one
interval the baseline is that interval's number, not ``alpha`` times it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Intervals without events folded at most (a baseline idle longer is as good as zero).
MAX_GAP = 1000


@dataclass(frozen=True, slots=True)
class Baseline:
    """The raw average (biased towards its zero start), how many intervals it has seen, and
    the last interval folded in (``-1``: none)."""

    value: float = 0.0
    samples: int = 0
    last: int = -1

    def expected(self, alpha: float) -> float:
        """The usual number per interval: the average corrected for its zero start."""
        if self.samples == 0:
            return 0.0
        return self.value / (1.0 - (1.0 - alpha) ** self.samples)

    def fold(self, bucket: int, sample: float, alpha: float, *, gaps: bool) -> Baseline:
        """The baseline with interval ``bucket``'s ``sample`` folded in; with ``gaps``, the
        intervals between the last one folded and ``bucket`` count as zeros (no traffic)."""
        if bucket <= self.last:
            return self  # folded already (two workers raced to the same interval)
        value, samples = self.value, self.samples
        if gaps and samples:
            missed = min(bucket - self.last - 1, MAX_GAP)
            value *= (1.0 - alpha) ** missed
            samples += missed
        return Baseline(alpha * sample + (1.0 - alpha) * value, samples + 1, bucket)

    def encode(self) -> str:
        return f"{self.value!r}:{self.samples}:{self.last}"

    @classmethod
    def decode(cls, raw: bytes | None) -> Baseline:
        """The baseline stored as ``raw``; a new one for a missing or unreadable value."""
        if raw is None:
            return cls()
        try:
            value, samples, last = raw.decode().split(":")
            return cls(float(value), int(samples), int(last))
        except ValueError:
            return cls()
