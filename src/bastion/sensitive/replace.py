"""What a sensitive value becomes: masked (its last four letters or digits kept) or removed.

Neither result can be found again by any detector (the chunked redaction sees part of its
own output again), and both keep a JSON string a valid JSON string: only letters and digits
are replaced, never quotes, backslashes or what a backslash escapes.
"""

from __future__ import annotations

from typing import Final

#: How many of a value's last letters and digits a mask keeps (enough to tell which card).
MASK_KEEP: Final = 4
_STAR: Final = 0x2A
_BACKSLASH: Final = 0x5C
_ALNUM: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def mask(value: bytes) -> bytes:
    """``value`` with every letter and digit but the last :data:`MASK_KEEP` replaced by ``*``;
    separators, and JSON escapes (``\\n``, ``\\u002b``), are kept as they are."""
    out = bytearray(value)
    escaped = 0
    maskable: list[int] = []
    for i, c in enumerate(value):
        if escaped:
            escaped -= 1
            if escaped == 4 and c != 0x75:  # not \u: a one-character escape
                escaped = 0
            continue
        if c == _BACKSLASH:
            escaped = 5  # the escaped character, and four hex digits after a 'u'
        elif c in _ALNUM:
            maskable.append(i)
    for i in maskable[: max(0, len(maskable) - MASK_KEEP)] if len(maskable) > MASK_KEEP else maskable:
        out[i] = _STAR
    return bytes(out)


def removal_mark(kind: str) -> bytes:
    """What a removed value is replaced with."""
    return b"[REDACTED " + kind.encode() + b"]"
