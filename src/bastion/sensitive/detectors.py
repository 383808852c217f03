"""What each kind of sensitive value looks like: the patterns that find candidates, and the
check (in Python, on the candidate alone) that decides whether a candidate is one.

Patterns go to hyperscan (see :mod:`bastion.sensitive.scanner`), which reports every end
offset of every pattern with its leftmost start (or, where tracking starts costs much, the
detector's :attr:`Detector.start` finds it from the end); a pattern cannot look around, so each
check also looks at the byte before and the byte after the candidate (a card number inside
a longer number is not a card number). The patterns of the kinds made of digits start and
end with ``\b`` and leave out first digits no value of theirs has: JSON is full of digits
(timestamps, IDs, prices), and every candidate costs a check in Python, so the fewer the
faster (a card pattern without them halves the scan's throughput on a typical API body). A check reads nothing outside
``data[start - 1 : start + max_length + CONTEXT]``: that is what lets the streaming scanner
decide a value once, whatever the chunking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bastion.sensitive.checks import card_number_valid, iban_valid, ssn_valid

#: Bytes after a candidate that a check may read (a decimal point and the digit after it).
CONTEXT: Final = 2

_DIGITS: Final = frozenset(b"0123456789")
_ALNUM: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_TOKEN: Final = _ALNUM | frozenset(b"_-")
_B64URL_DOT: Final = _TOKEN | frozenset(b".")
_DASH_DOT: Final = frozenset(b"-.")
_CRYPT: Final = _ALNUM | frozenset(b"./+")
_EMAIL_DOMAIN: Final = _ALNUM | frozenset(b"-")
#: What may follow a PEM header when no END line is in reach: base64, line breaks (also
#: JSON's escaped ``\n``), and the ``Proc-Type:``/``DEK-Info:`` lines of legacy keys.
_PEM_BODY: Final = _ALNUM | frozenset(b"+/=\r\n \t\\:,-")

#: A check: ``(data, start, end)`` -> the finding's end (``end``, or further for a value
#: whose pattern only finds its beginning), or -1 when the candidate is not one.
Check = Callable[[bytes, int, int], int]
#: Where a candidate ending at ``end`` starts (its leftmost start), for a detector whose
#: patterns hyperscan runs without tracking starts (see :attr:`Detector.start`).
Start = Callable[[bytes, int], int]


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind of sensitive value."""

    kind: str
    patterns: tuple[str, ...]
    check: Check
    #: The longest value it reports (bounds the streaming carry-over).
    max_length: int
    description: str
    #: Finds a candidate's start from its end, so that hyperscan need not track starts for
    #: these patterns (start of match tracking tripled the cost of a scan with e-mail);
    #: ``None``: hyperscan reports the leftmost start.
    start: Start | None = None


def _before(data: bytes, start: int) -> int:
    """The byte before ``start``, or -1 at the start of the data."""
    return data[start - 1] if start > 0 else -1


def _after(data: bytes, end: int) -> int:
    """The byte at ``end``, or -1 past the end of the data."""
    return data[end] if end < len(data) else -1


def _clear(data: bytes, start: int, end: int, around: frozenset[int]) -> bool:
    """Neither the byte before nor the byte after the candidate is in ``around``."""
    return _before(data, start) not in around and _after(data, end) not in around


def _card(data: bytes, start: int, end: int) -> int:
    before = _before(data, start)
    after = _after(data, end)
    if before in _ALNUM or before == 0x2E or after in _ALNUM:  # 0x2E '.': a decimal fraction
        return -1
    if after == 0x2E and end + 1 < len(data) and data[end + 1] in _DIGITS:
        return -1
    value = data[start:end]
    digits = value.replace(b" ", b"").replace(b"-", b"")
    if len(digits) != len(value):
        # Grouped: one kind of separator throughout (4111-1111 1111-1111 is not written).
        separators = {c for c in value if c not in _DIGITS}
        if len(separators) != 1:
            return -1
    return end if card_number_valid(digits) else -1


_SSN_AROUND: Final = _ALNUM | frozenset(b"-")


def _ssn(data: bytes, start: int, end: int) -> int:
    if not _clear(data, start, end, _SSN_AROUND):
        return -1
    return end if ssn_valid(data[start : start + 3], data[start + 4 : start + 6], data[start + 7 : end]) else -1


def _iban(data: bytes, start: int, end: int) -> int:
    if not _clear(data, start, end, _ALNUM):
        return -1
    return end if iban_valid(data[start:end].replace(b" ", b"")) else -1


def _email(data: bytes, start: int, end: int) -> int:
    if end - start > 254 or _after(data, end) in _EMAIL_DOMAIN:
        return -1
    at = data.find(b"@", start, end)
    if at < 0:
        return -1
    if at - start > 64 or data[start] == 0x2E or data[at - 1] == 0x2E:
        return -1
    if _after(data, end) == 0x2E and end + 1 < len(data) and data[end + 1] in _ALNUM:
        return -1  # a longer domain goes on
    return end


_EMAIL_LOCAL: Final = _ALNUM | frozenset(b"._%+-")


def _email_start(data: bytes, end: int) -> int:
    """The leftmost start of the e-mail pattern's match ending at ``end``: the run of
    local-part bytes before its one ``@``. Looks back no further than a valid address
    reaches: where it stops short, the start it gives makes :func:`_email` refuse the
    candidate, as the real one would (longer than 254 bytes, or a local part over 64)."""
    floor = max(0, end - 255)
    at = data.rfind(b"@", floor, end)
    if at < 0:
        return floor
    start = at
    stop = max(floor, at - 65)
    while start > stop and data[start - 1] in _EMAIL_LOCAL:
        start -= 1
    return start


def _phone(data: bytes, start: int, end: int) -> int:
    if _before(data, start) in _ALNUM or _before(data, start) == 0x2B or _after(data, end) in _ALNUM:
        return -1
    if _after(data, end) in _DASH_DOT and end + 1 < len(data) and data[end + 1] in _DIGITS:
        return -1
    digits = sum(1 for c in data[start:end] if c in _DIGITS)
    # E.164 allows up to 15 digits; national numbers have at least 10 (NANP).
    return end if 10 <= digits <= 15 else -1


def _jwt(data: bytes, start: int, end: int) -> int:
    return end if _clear(data, start, end, _B64URL_DOT) else -1


def _crypt_hash(data: bytes, start: int, end: int) -> int:
    return end if _after(data, end) not in _CRYPT else -1


def _token(data: bytes, start: int, end: int) -> int:
    return end if _clear(data, start, end, _TOKEN) else -1


def _slack(data: bytes, start: int, end: int) -> int:
    # The pattern is unbounded (a bounded repeat this long is too large for hyperscan with
    # start offsets): the length is checked here.
    return end if end - start <= 255 and _clear(data, start, end, _TOKEN) else -1


def _alnum_token(data: bytes, start: int, end: int) -> int:
    return end if _clear(data, start, end, _ALNUM) else -1


_PEM_MAX: Final = 4096


def _private_key(data: bytes, start: int, end: int) -> int:
    """From the BEGIN line to the end of the END line when it is within reach; otherwise
    over what looks like the key's body (never further than :data:`_PEM_MAX` bytes)."""
    limit = min(len(data), start + _PEM_MAX)
    close = data.find(b"-----END ", end, limit)
    if close >= 0:
        tail = data.find(b"-----", close + 9, limit)
        if tail >= 0:
            return tail + 5
    stop = end
    while stop < limit and data[stop] in _PEM_BODY:
        stop += 1
    return stop


DETECTORS: Final[dict[str, Detector]] = {
    d.kind: d
    for d in (
        Detector(
            "card",
            (
                r"\b[2-6][0-9]{12,18}\b",
                r"\b[2-6][0-9]{3}[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]{4}([ -][0-9]{3})?\b",
                r"\b3[0-9]{3}[ -][0-9]{6}[ -][0-9]{4,5}\b",
            ),
            _card,
            23,
            "Payment card numbers: 13-19 digits, plain or grouped by spaces or dashes, Luhn-valid.",
        ),
        Detector(
            "ssn",
            (r"\b[0-8][0-9]{2}-[0-9]{2}-[0-9]{4}\b",),
            _ssn,
            11,
            "US Social Security numbers written NNN-NN-NNNN, in issued ranges.",
        ),
        Detector(
            "iban",
            (r"\b[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}\b", r"\b[A-Z]{2}[0-9]{2}( [A-Z0-9]{4}){2,7}( [A-Z0-9]{1,4})?\b"),
            _iban,
            42,
            "IBANs, compact or in groups of four, with their country's length and mod-97 checksum.",
        ),
        Detector(
            "email",
            (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}",),
            _email,
            254,
            "E-mail addresses (opt-in: often legitimate).",
            _email_start,
        ),
        Detector(
            "phone",
            (
                r"\+[1-9][0-9]{7,14}",
                r"\+[0-9]{1,3}[ .-]\(?[0-9]{1,4}\)?([ .-][0-9]{2,4}){2,4}",
                r"\(?[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4}",
            ),
            _phone,
            24,
            "Phone numbers in E.164 or written with separators (opt-in: often legitimate).",
        ),
        Detector(
            "jwt",
            (r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",),
            _jwt,
            4096,
            "JSON Web Tokens (signed or not).",
        ),
        Detector(
            "private_key",
            (r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----",),
            _private_key,
            _PEM_MAX,
            "PEM private key blocks (RSA, EC, DSA, OpenSSH, PKCS#8, encrypted, PGP).",
        ),
        Detector(
            "password_hash",
            (
                r"\$2[abxy]?\$[0-9]{2}\$[./A-Za-z0-9]{53}",
                r"\$argon2(id|i|d)\$v=[0-9]{1,3}\$m=[0-9]{1,10},t=[0-9]{1,10},p=[0-9]{1,3}\$[A-Za-z0-9+/]{8,64}\$[A-Za-z0-9+/]{16,128}",
                r"\$5\$(rounds=[0-9]{4,9}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43}",
                r"\$6\$(rounds=[0-9]{4,9}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86}",
            ),
            _crypt_hash,
            260,
            "Password hashes: bcrypt, argon2, SHA-crypt ($5$, $6$).",
        ),
        Detector(
            "aws_key",
            (r"\b(AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",),
            _alnum_token,
            20,
            "AWS access key IDs.",
        ),
        Detector(
            "github_token",
            (r"gh[pousr]_[A-Za-z0-9]{36}", r"github_pat_[A-Za-z0-9_]{82}"),
            _token,
            93,
            "GitHub tokens (classic and fine-grained).",
        ),
        Detector("gitlab_token", (r"glpat-[A-Za-z0-9_-]{20}",), _token, 26, "GitLab personal access tokens."),
        Detector("slack_token", (r"xox[abposr]-[A-Za-z0-9-]{10,}",), _slack, 255, "Slack tokens."),
        Detector(
            "stripe_key",
            (r"(sk|rk)_(live|test)_[A-Za-z0-9]{24,99}",),
            _alnum_token,
            108,
            "Stripe secret and restricted keys.",
        ),
        Detector("google_api_key", (r"AIza[0-9A-Za-z_-]{35}",), _token, 39, "Google API keys."),
        Detector(
            "bastion_key",
            (r"bst_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}", r"bcs_[A-Za-z0-9_-]{43}"),
            _token,
            54,
            "Bastion's own API keys (bst_) and OAuth client secrets (bcs_).",
        ),
        Detector(
            "phantom_token",
            (r"bpt_[A-Za-z0-9_-]{43}",),
            _token,
            47,
            "Bastion's phantom tokens (bpt_): not in 'secrets', since a login route returns them.",
        ),
    )
}

#: Names that stand for several kinds.
GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "secrets": (
        "aws_key",
        "github_token",
        "gitlab_token",
        "slack_token",
        "stripe_key",
        "google_api_key",
        "bastion_key",
        "private_key",
    ),
    "pii": ("card", "ssn", "iban"),
}

#: What ``types`` is when a policy does not say: no opt-in kinds (email, phone, jwt).
DEFAULT_TYPES: Final = ("card", "ssn", "iban", "secrets", "password_hash")


def expand(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The kinds ``names`` (kinds and groups) stand for, each once, in a stable order;
    ``ValueError`` naming the first unknown name."""
    out: list[str] = []
    for name in names:
        kinds = GROUPS.get(name, (name,))
        for kind in kinds:
            if kind not in DETECTORS:
                known = ", ".join([*DETECTORS, *GROUPS])
                raise ValueError(f"unknown sensitive data type {name!r}; known types: {known}")
            if kind not in out:
                out.append(kind)
    return tuple(out)
