"""The checks behind the detectors: Luhn, IBAN mod 97, SSN ranges.

Property tests: a number completed with its own check digit passes, and changing any one
character of a valid number makes it fail (what both checksums guarantee for single errors).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bastion.sensitive.checks import IBAN_LENGTHS, card_number_valid, iban_valid, luhn_valid, ssn_valid

DIGITS = "0123456789"
UPPER_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def luhn_complete(payload: str) -> str:
    """``payload`` with the check digit that makes it Luhn-valid."""
    for d in DIGITS:
        if luhn_valid((payload + d).encode()):
            return payload + d
    raise AssertionError("no check digit")  # pragma: no cover - one always exists


def iban_complete(country: str, bban: str) -> str:
    """An IBAN for ``bban`` with its computed check digits (ISO 13616)."""
    moved = bban + country + "00"
    remainder = int("".join(str(int(c, 36)) for c in moved)) % 97
    return f"{country}{98 - remainder:02d}{bban}"


@given(st.text(DIGITS, min_size=1, max_size=30))
def test_a_completed_number_passes_luhn(payload: str) -> None:
    """Any digits followed by their Luhn check digit pass the check."""
    assert luhn_valid(luhn_complete(payload).encode())


@given(st.text(DIGITS, min_size=12, max_size=18), st.data())
def test_one_changed_digit_fails_luhn(payload: str, data: st.DataObject) -> None:
    """Luhn catches every single-digit error: a valid number with one digit changed fails."""
    number = luhn_complete(payload)
    i = data.draw(st.integers(0, len(number) - 1))
    other = data.draw(st.sampled_from([d for d in DIGITS if d != number[i]]))
    assert not luhn_valid((number[:i] + other + number[i + 1 :]).encode())


def test_card_numbers_need_a_network_prefix_and_a_real_length() -> None:
    """Test cards pass; Luhn-valid numbers of other shapes (a 1 or 9 first, 12 or 20 digits,
    one repeated digit) do not."""
    assert card_number_valid(b"4111111111111111")  # Visa test card
    assert card_number_valid(b"5500000000000004")  # Mastercard
    assert card_number_valid(b"378282246310005")  # Amex
    assert card_number_valid(b"6011111111111117")  # Discover
    assert not card_number_valid(b"4111111111111112")  # Luhn fails
    assert not card_number_valid(luhn_complete("17335657600").encode())  # a ms timestamp's shape
    assert not card_number_valid(luhn_complete("41111111111").encode())  # 12 digits
    assert not card_number_valid(luhn_complete("4111111111111111111").encode())  # 20 digits
    assert luhn_valid(b"6666666666666") and not card_number_valid(b"6666666666666")  # filler


@given(st.sampled_from(sorted(IBAN_LENGTHS)), st.data())
def test_a_completed_iban_passes_and_one_change_fails(country: bytes, data: st.DataObject) -> None:
    """An IBAN with computed check digits passes mod 97; any single digit changed to another
    digit, or letter to another letter, fails (what mod 97 guarantees: a letter becoming a
    digit changes the number's length, and may pass)."""
    length = IBAN_LENGTHS[country]
    bban = data.draw(st.text(UPPER_ALNUM, min_size=length - 4, max_size=length - 4))
    iban = iban_complete(country.decode(), bban)
    assert iban_valid(iban.encode())
    i = data.draw(st.integers(2, len(iban) - 1))
    same_class = DIGITS if iban[i].isdigit() else UPPER_ALNUM[10:]
    other = data.draw(st.sampled_from([c for c in same_class if c != iban[i]]))
    assert not iban_valid((iban[:i] + other + iban[i + 1 :]).encode())


def test_ibans_of_the_wrong_length_or_country_fail() -> None:
    """The country's length is checked before the checksum, and unknown countries fail."""
    assert iban_valid(b"DE89370400440532013000")
    assert iban_valid(b"GB82WEST12345698765432")
    assert not iban_valid(b"DE8937040044053201300")  # one short
    assert not iban_valid(b"ZZ89370400440532013000")  # no such country


def test_ssns_in_ranges_never_issued_fail() -> None:
    """Area 000, 666 and 9xx, group 00 and serial 0000 are never issued."""
    assert ssn_valid(b"123", b"45", b"6789")
    for area, group, serial in [(b"000", b"12", b"3456"), (b"666", b"12", b"3456"), (b"912", b"12", b"3456")]:
        assert not ssn_valid(area, group, serial)
    assert not ssn_valid(b"123", b"00", b"6789")
    assert not ssn_valid(b"123", b"45", b"0000")
