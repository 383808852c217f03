"""Checksums and ranges that tell a real value from a look-alike (pure functions on bytes).

A candidate the patterns found is only a finding once its check passes: a 16-digit order
number fails Luhn nine times in ten, an IBAN-shaped reference fails mod 97 ninety-six
times in a hundred, and SSNs in ranges never issued are not SSNs.
"""

from __future__ import annotations

from typing import Final

_ZERO: Final = 48

#: IBAN length by country (ISO 13616 registry, SWIFT release 2024): a candidate of another
#: length, or from a country not listed, is not an IBAN.
_IBAN_REGISTRY: Final = (
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 "
    "DJ27 DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 "
    "HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 "
    "MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29 RO24 "
    "RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 "
    "VG24 XK20 YE30"
)
IBAN_LENGTHS: Final[dict[bytes, int]] = {entry[:2].encode(): int(entry[2:]) for entry in _IBAN_REGISTRY.split()}


def luhn_valid(digits: bytes) -> bool:
    """Whether the ASCII ``digits`` pass the Luhn check (ISO/IEC 7812 card numbers)."""
    total = 0
    double = False
    for i in range(len(digits) - 1, -1, -1):
        d = digits[i] - _ZERO
        if double:
            d *= 2
            if d > 9:
                d -= 9
        total += d
        double = not double
    return total % 10 == 0


def card_number_valid(digits: bytes) -> bool:
    """A payment card number: 13 to 19 digits, a major network's first digit (2 to 6:
    Mastercard, Amex/Diners/JCB, Visa, Mastercard, Discover/UnionPay), Luhn-valid, and not
    one digit repeated (test fillers like ``0000...``)."""
    if not 13 <= len(digits) <= 19 or digits[0] not in b"23456":
        return False
    if digits.count(digits[:1]) == len(digits):
        return False
    return luhn_valid(digits)


def ssn_valid(area: bytes, group: bytes, serial: bytes) -> bool:
    """A US Social Security number in a range the SSA issues: area not 000, 666 or 9xx,
    group not 00, serial not 0000."""
    return area != b"000" and area != b"666" and area[:1] != b"9" and group != b"00" and serial != b"0000"


def iban_valid(compact: bytes) -> bool:
    """An IBAN without spaces: a listed country, its length, and ISO 7064 mod 97-10 == 1."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    remainder = 0
    for c in compact[4:] + compact[:4]:
        if 48 <= c <= 57:
            remainder = (remainder * 10 + c - 48) % 97
        elif 65 <= c <= 90:
            remainder = (remainder * 100 + c - 55) % 97
        else:
            return False
    return remainder == 1
