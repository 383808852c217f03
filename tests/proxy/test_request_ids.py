"""Request IDs (``proxy/prelude.py``): 32 hex digits, a worker's random prefix and its
counter, built from a table of the last three digits and a part redone every 4,096 IDs."""

from __future__ import annotations

from bastion.proxy.prelude import _RequestIds


def test_ids_count_in_hex_across_the_table_boundaries() -> None:
    """Over 3 x 4,096 + 10 IDs (three carries into the upper digits) every ID is the
    prefix and the counter in 16 hex digits, so all are distinct and in order; the prefix
    is 16 hex digits of its own."""
    ids = _RequestIds()
    prefix = ids.prefix
    assert len(prefix) == 16 and int(prefix, 16) >= 0
    seen = [ids.next() for _ in range(3 * 4096 + 10)]
    assert seen == [f"{prefix}{n:016x}" for n in range(1, len(seen) + 1)]


def test_the_upper_digits_follow_a_large_counter() -> None:
    """With a counter of 15 hex digits, rolling over into its 16th, the ID still spells the
    counter: no digit is lost or carried wrongly where the upper part changes."""
    ids = _RequestIds()
    start = 16**15 - 2
    ids.count = start
    ids.high = ids.prefix + f"{start >> 12:013x}"
    assert [ids.next() for _ in range(4)] == [f"{ids.prefix}{n:016x}" for n in range(start + 1, start + 5)]
