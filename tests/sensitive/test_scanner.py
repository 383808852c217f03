"""The scanner: what each kind finds, what it must not find (real-world look-alikes), the
streaming scan equal to one scan of the whole body whatever the chunking, in bounded memory,
and the RE2 fallback finding the same as hyperscan.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.sensitive import DETECTORS, GROUPS, Finding, Scanner, StreamScanner, expand, mask, removal_mark

EVERYTHING = Scanner(list(DETECTORS))

#: One real-looking value of each kind (test values published by their issuers).
POSITIVES: dict[str, list[bytes]] = {
    "card": [b"4111111111111111", b"4111 1111 1111 1111", b"5500-0000-0000-0004", b"3782 822463 10005"],
    "ssn": [b"123-45-6789"],
    "iban": [b"DE89370400440532013000", b"GB82 WEST 1234 5698 7654 32", b"FR1420041010050500013M02606"],
    "email": [b"jane.doe+api@mail.example.com"],
    "phone": [b"+14155552671", b"(415) 555-2671", b"+44 20 7946 0958"],
    "jwt": [b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"],
    "private_key": [
        b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
        b"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAA\\n-----END OPENSSH PRIVATE KEY-----",
    ],
    "password_hash": [
        b"$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        b"$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
        b"$6$rounds=5000$saltsalt$" + b"a" * 86,
        b"$5$saltsalt$" + b"b" * 43,
    ],
    "aws_key": [b"AKIAIOSFODNN7EXAMPLE", b"ASIAY34FZKBOKMUTVV7A"],
    "github_token": [b"ghp_" + b"a1B2" * 9, b"github_pat_" + b"x" * 82],
    "gitlab_token": [b"glpat-" + b"Ab1_" * 5],
    "slack_token": [b"xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"],
    "stripe_key": [b"sk_live_" + b"4eC39HqLyjWDarjtT1zdp7dc", b"rk_test_" + b"a" * 30],
    "google_api_key": [b"AIza" + b"SyA-1234567890abcdefghijklmnopqrstu"],
    "bastion_key": [b"bst_" + b"A" * 43 + b"_abc123", b"bcs_" + b"Zz9-_" * 8 + b"abc"],
    "phantom_token": [b"bpt_" + b"q" * 43],
}

#: What real API traffic is full of and none of the kinds may flag.
NEGATIVES: list[bytes] = [
    b"4111111111111112",  # a card's shape, Luhn fails
    b"1733565760000",  # a timestamp in milliseconds
    b"17335657600001234",
    b"ORD-2024-000123",  # order IDs
    b"order 4929123456789012345678",  # a long number (no card inside a longer number)
    b"550e8400-e29b-41d4-a716-446655440000",  # UUIDs
    b"12345678-1234-1234-1234-123456789012",
    b"2026-12-07T09:42:40.123456Z",  # timestamps and dates
    b"0.4111111111111111",  # a decimal fraction
    b"4111111111111111.5",
    b"000-12-3456",  # SSNs never issued
    b"666-12-3456",
    b"912-12-3456",
    b"DE89370400440532013001",  # an IBAN's shape, mod 97 fails
    b"da39a3ee5e6b4b0d3255bfef95601890afd80709",  # SHA-1
    b"AKIAIOSFODNN7EXAMPL",  # one short
    b"XAKIAIOSFODNN7EXAMPLE",  # inside a longer word
    b"192.168.100.200",
    b"v1.2.3-rc.4",
    b"-----BEGIN PUBLIC KEY-----",
    b"-----BEGIN CERTIFICATE-----",
    b"eyJhbGciOiJIUzI1NiJ9",  # a JWT header alone
]


@pytest.mark.parametrize(("kind", "value"), [(k, v) for k, vs in POSITIVES.items() for v in vs])
def test_each_kind_finds_its_values_in_json(kind: str, value: bytes) -> None:
    """A value of each kind inside a JSON string is found, whole, as that kind."""
    body = b'{"id": 7, "value": "' + value + b'", "next": null}'
    start = body.index(value)
    assert EVERYTHING.find(body) == [Finding(kind, start, start + len(value))]


@pytest.mark.parametrize("value", NEGATIVES)
def test_look_alikes_are_not_flagged(value: bytes) -> None:
    """Numbers that fail their checks, IDs, UUIDs, timestamps, hashes: nothing is found,
    with every kind on (e-mail and phone included)."""
    assert EVERYTHING.find(b'{"v": "' + value + b'"}') == []
    assert EVERYTHING.find(value) == []


def test_groups_expand_and_unknown_names_are_refused() -> None:
    """'secrets' stands for the cloud and SaaS kinds and private keys; an unknown name is a
    ValueError that lists the known ones."""
    assert expand(["secrets", "card", "aws_key"]) == (*GROUPS["secrets"], "card")
    with pytest.raises(ValueError, match="unknown sensitive data type 'cards'; known types: card, ssn"):
        expand(["cards"])


def test_only_the_chosen_kinds_are_found() -> None:
    """A scanner built for cards does not report an AWS key, nor e-mail unless asked."""
    body = b"4111111111111111 AKIAIOSFODNN7EXAMPLE jane@example.com"
    assert [f.kind for f in Scanner(["card"]).find(body)] == ["card"]
    assert [f.kind for f in Scanner(["secrets", "email"]).find(body)] == ["aws_key", "email"]


def test_masks_and_removal_marks_are_never_found_again() -> None:
    """What redaction writes in place of a value is not itself a value of any kind (the
    chunked redaction sees its own output again)."""
    for kind, values in POSITIVES.items():
        for value in values:
            assert EVERYTHING.find(mask(value)) == [], value
            assert EVERYTHING.find(removal_mark(kind)) == []


def test_a_mask_keeps_the_last_four_and_json_escapes() -> None:
    """Letters and digits but the last four become '*'; separators and escapes stay, so a
    JSON string stays valid."""
    assert mask(b"4111-1111-1111-1234") == b"****-****-****-1234"
    assert mask(b"AB\\nCD\\u002bEFGH") == b"**\\n**\\u002bEFGH"
    assert mask(b"abc") == b"***"


def _body_parts() -> st.SearchStrategy[bytes]:
    values = [v for vs in POSITIVES.values() for v in vs] + NEGATIVES
    filler = st.binary(max_size=12) | st.sampled_from([b" ", b'", "', b"0", b"A", b"-", b"\n", b"4"])
    return st.lists(st.sampled_from(values) | filler, max_size=12).map(b"".join)


def _stream(scanner: Scanner, body: bytes, cuts: list[int]) -> tuple[list[Finding], int]:
    """The findings of a streaming scan of ``body`` cut at ``cuts``, and the most it held."""
    stream = StreamScanner(scanner)
    found: list[Finding] = []
    most = 0
    points = sorted({c for c in cuts if 0 < c < len(body)})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    for i, piece in enumerate(pieces):
        found.extend(stream.feed(piece, i == len(pieces) - 1))
        most = max(most, len(stream._carry))
    return found, most


@settings(max_examples=300, deadline=None)
@given(_body_parts(), st.lists(st.integers(0, 600), max_size=20))
def test_any_split_of_a_body_finds_what_one_scan_finds(body: bytes, cuts: list[int]) -> None:
    """However a body is cut into chunks (one byte, a value split anywhere), the streaming
    scan reports exactly the findings of one scan of the whole body, and holds no more than
    ``hold + 1`` bytes between chunks."""
    whole = EVERYTHING.find(body)
    found, most = _stream(EVERYTHING, body, cuts)
    assert found == whole
    assert most <= EVERYTHING.hold + 1 + 600  # a chunk smaller than the hold waits for more


def test_byte_by_byte_streaming_holds_bounded_memory() -> None:
    """Fed one byte at a time, a 100 KB body with values all over is scanned holding at most
    ``hold + 1`` bytes, and every value is found."""
    scanner = Scanner(["card", "secrets"])
    unit = b'{"n": "4111 1111 1111 1111", "k": "AKIAIOSFODNN7EXAMPLE", "pad": "' + b"x" * 200 + b'"}'
    body = unit * (100_000 // len(unit))
    stream = StreamScanner(scanner)
    found: list[Finding] = []
    for i in range(len(body)):
        found.extend(stream.feed(body[i : i + 1], i == len(body) - 1))
        assert len(stream._carry) <= scanner.hold + 1
    assert found == scanner.find(body)
    assert len(found) == 2 * (100_000 // len(unit))


def test_re2_finds_what_hyperscan_finds() -> None:
    """The fallback backend gives the same findings on a body with every kind and look-alike."""
    body = b" | ".join([v for vs in POSITIVES.values() for v in vs] + NEGATIVES)
    fallback = Scanner(list(DETECTORS), prefer="re2")
    assert EVERYTHING.backend == "hyperscan" and fallback.backend == "re2"
    assert fallback.find(body) == EVERYTHING.find(body)
    assert len(EVERYTHING.find(body)) == sum(len(vs) for vs in POSITIVES.values())


def test_email_start_found_without_hyperscan_tracking_it() -> None:
    """Hyperscan runs the e-mail pattern without start-of-match tracking; the start the
    detector finds from the end gives exactly the addresses RE2 (which knows the start)
    gives, at the limits too: a 64-byte local part is one, 65 is not; a 254-byte address
    is one, 255 is not; a second ``@`` starts a new local part; a long run of letters
    before the ``@`` is looked at no further than an address reaches."""
    domain_251 = b"d" * 60 + b"." + b"e" * 60 + b"." + b"f" * 60 + b"." + b"g" * 60 + b".example"
    cases = [
        (b'{"to": "' + b"a" * 64 + b'@mail.example.com"}', 1),
        (b'{"to": "' + b"a" * 65 + b'@mail.example.com"}', 0),
        (b'{"to": "ab@' + domain_251 + b'"}', 1),
        (b'{"to": "abc@' + domain_251 + b'"}', 0),
        (b'{"to": "x@y@mail.example.com"}', 1),
        (b'{"to": "' + b"q" * 10_000 + b'@mail.example.com, jo@mail.example.org"}', 1),
    ]
    fallback = Scanner(["email"], prefer="re2")
    scanner = Scanner(["email"])
    assert scanner.backend == "hyperscan"
    for body, count in cases:
        found = scanner.find(body)
        assert found == fallback.find(body)
        assert len(found) == count, body[:80]
