"""The normaliser decodes each evasion into a view the rules can see."""

from __future__ import annotations

import base64
import html

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.stages.detection.normalize import (
    MAX_VIEW_CHARS,
    MAX_VIEWS,
    _all_views,
    _may_have_entity,
    base64_text,
    collapse_lookups,
    js_unescape,
    strip_sql_comments,
    url_decode,
    views,
    windows,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("%27%20or%201=1", "' or 1=1"),
        ("%2527", "'"),  # double URL encoding
        ("%252527", "'"),  # triple
        ("&#x3c;script&#62;", "<script>"),
        ("&lt;svg/onload&equals;alert(1)&gt;", "<svg/onload=alert(1)>"),
        ("\\u0027 or 1=1", "' or 1=1"),
        ("\\x3cscript\\x3e", "<script>"),
        ("\\u{3c}img", "<img"),
        ("%C0%AE%C0%AE%C0%AF", "../"),  # overlong UTF-8
        ("%u003cscript", "<script"),  # IIS %u form
        ("\uff33\uff25\uff2c\uff25\uff23\uff34", "select"),  # fullwidth: NFKC + case folding
        ("UN/**/ION SEL/**/ECT", "UNION SELECT"),
        ("union/**/select", "union select"),
        ("/*!50000UNION*/ /*!SELECT*/", "UNION"),
        ("<scr\x00ipt>", "<script>"),
        ("a \t\n b", "a b"),
        ("${${lower:j}ndi:ldap://x}", "${jndi:ldap://x}"),
        ("${${::-j}${::-n}di:", "${jndi:"),
        ("/et'c/pa's'swd", "/etc/passwd"),
        ("java\tscript:alert(1)", "javascript:alert(1)"),
        ("alert<x>(1)", "alert(1)"),
        ("%e5%98%8a%e5%98%8dSet-Cookie", "\n\rSet-Cookie"),
    ],
)
def test_each_evasion_is_decoded(raw: str, expected: str) -> None:
    """Every evasion has a view containing the decoded payload."""
    assert any(expected in v for v in views(raw)), views(raw)


def test_base64_of_text_is_decoded() -> None:
    """A value that is base64 (standard or URL-safe, unpadded) of text yields that text."""
    payload = "<script>alert(1)</script>"
    encoded = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    assert payload in views(encoded)
    assert base64_text(base64.b64encode(b"' or 1=1 --").decode()) == "' or 1=1 --"


def test_base64_noise_is_not_decoded() -> None:
    """Tokens that merely look like base64 (IDs, hex hashes, words) are not decoded."""
    assert base64_text("3f2a9c1e-8b7d-4e6f-a1b2-c3d4e5f6a7b8") is None
    assert base64_text("password") is None
    assert base64_text("abc") is None
    assert views("SKU12345") == ["SKU12345"]


def test_plain_values_have_one_view() -> None:
    """A value with nothing to decode is inspected once, as is."""
    assert views("hello world") == ["hello world"]


def test_raw_value_comes_first() -> None:
    """The raw value is always the first view."""
    assert views("%41")[0] == "%41"


def test_helpers() -> None:
    """The individual passes behave as documented."""
    assert url_decode("a+b%20c") == "a b c"
    assert js_unescape("\\101\\n") == "A\n"
    assert strip_sql_comments("a/*x*/b/*unterminated", "") == "ab"
    assert collapse_lookups("${upper:a}b") == "ab"


def test_views_are_bounded() -> None:
    """However nested the encodings, the number and size of views is capped."""
    nasty = "%25" * 10_000 + "&amp;" * 5000 + "\\u0025" * 3000
    out = views(nasty)
    assert len(out) <= MAX_VIEWS
    assert all(len(v) <= MAX_VIEW_CHARS for v in out)


def test_windows_overlap_and_cover() -> None:
    """Long values are split into overlapping windows covering every character."""
    value = "".join(chr(65 + i % 26) for i in range(50_000))
    parts = windows(value)
    assert all(len(p) <= MAX_VIEW_CHARS for p in parts)
    assert parts[0] == value[:MAX_VIEW_CHARS]
    assert value.endswith(parts[-1][-100:])
    assert windows("short") == ["short"]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("&#;x0123456789abcdefAMPLTQUOTampltgquotnbspcopy -.=?é")), max_size=40))
def test_entity_precheck_never_skips_a_decoding(value: str) -> None:
    """``_may_have_entity`` is only a shortcut: whenever it says no, ``html.unescape``
    would indeed leave the value unchanged."""
    if not _may_have_entity(value):
        assert html.unescape(value) == value


def test_entity_precheck_on_query_strings() -> None:
    """Parameter separators are not entities; real references (named, numeric, legacy
    without ';') are."""
    assert not _may_have_entity("https://example.org/?ref=news&utm_source=mail")
    assert _may_have_entity("a&lt;b")
    assert _may_have_entity("&#60;script")
    assert _may_have_entity("x&ampy")  # legacy: a browser decodes "&amp" without ';'


def test_lone_surrogates_from_js_escapes_are_decoded_not_raised() -> None:
    """A ``\\ud800`` escape decodes to a lone surrogate, which has no UTF-8 form: a later URL
    pass reads it as U+FFFD instead of raising (found by tests/fuzz/fuzz_normalize.py)."""
    from bastion.stages.detection.normalize import without_surrogates

    assert url_decode("\ud800%41") == "\ufffdA"
    assert "\ufffdA" in views("\\ud800%2541")
    # Pairs are joined, as a UTF-16 runtime converting the text to UTF-8 would.
    assert without_surrogates("\ud83d\ude00\udc00x") == "\U0001f600\ufffdx"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64).map(lambda b: bytes(c if c < 0x80 else (0xC0, 0xC1, 0xE0, 0x80, 0xAE, 0xC3)[c % 6]
                                                     for c in b)), st.integers(0, 300))
def test_overlong_repair_jumping_matches_the_byte_loop(data: bytes, padding: int) -> None:
    """The repair that jumps between C0/C1/E0 lead bytes (sparse leads in long non-ASCII text,
    which the fuzzer found slow byte by byte) gives exactly what the byte-by-byte loop gives."""
    from bastion.stages.detection.normalize import _repair_each_byte, _repair_overlong

    padded = data + "é".encode() * padding + data
    assert _repair_overlong(padded) == _repair_each_byte(padded)
    assert _repair_overlong(data) == _repair_each_byte(data)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"]) | st.sampled_from(list("\u200b\ufeff\u00ad\u560d\x00\ufffd")),
               max_size=12))
def test_wide_and_format_fast_paths_change_nothing(value: str) -> None:
    """truncate_wide and the NFKC view skip their per-character loops when a set test shows
    nothing would change (long non-ASCII XML text cost about 12 µs a byte, found by
    tests/fuzz/fuzz_detection.py): the result is what the loops give."""
    import unicodedata

    from bastion.stages.detection.normalize import _WIDE_SYNTAX, _nfkc, truncate_wide

    wide = "".join(chr(ord(c) & 0xFF) if ord(c) > 0xFF and (ord(c) & 0xFF) in _WIDE_SYNTAX else c for c in value)
    assert truncate_wide(value) == wide
    text = unicodedata.normalize("NFKC", value)
    assert _nfkc(value) == "".join(c for c in text if unicodedata.category(c) != "Cf").casefold()


#: Printable ASCII weighted towards the characters that decide which views exist.
_VIEW_ALPHABET = st.sampled_from(list("abcXYZ019 '\"%+&\\<>/*${}();|`#-=.!?~") + [chr(c) for c in range(32, 127)])
#: Prose in other languages, weighted towards what could make case matter: SQL words and
#: operators, quotes, letters whose case differs ("à"/"À": libinjection reads 0xA0 as
#: whitespace), letters that fold to ASCII (long s, the Kelvin sign) or to two letters ("ß").
_PROSE_WORDS = [
    " ", " ", "'", "(", ")", "-", "--", "#", "=", ";", "!", ".", ",", "1", "0x1", "@@", "Dónal", "DÓNAL",
    "é", "Ø", "ñ", "OR", "or", "UNION", "union", "SELECT", "select", "AND", "and", "Sleep", "N", "E", "Q", "X",
    "U&", "char", "CHAR", "user", "USER", "like", "LIKE", "in", "IN", "from", "FROM", "x", "Ab", "/etc/passwd",
    "http://LOCALHOST/", "HTTP://0X7F000001", "//Metadata.Google.Internal", "${", "<", "%27",
]
#: What makes case folding change more than ASCII case, or libinjection see case.
_CASE_TRAPS = ["$", "$a$", "à", "À", "ß", "\u017felect", "\u212a", "Ǆ", "ﬁ", "sp_password", "SP_PASSWORD", "  "]
_PROSE = (
    st.lists(st.sampled_from(_PROSE_WORDS), max_size=14).map(lambda words: "é" + "".join(words))
    | st.lists(st.sampled_from(_PROSE_WORDS + _CASE_TRAPS), max_size=14).map("".join)
)


def _ascii_case_blind(found: list[str]) -> set[bytes]:
    return {v.encode("utf-8", "surrogatepass").lower() for v in found}


@settings(max_examples=3000)
@given(value=st.text(alphabet=_VIEW_ALPHABET, max_size=40) | st.text(max_size=20) | _PROSE)
def test_shortcuts_give_the_full_views(value: str) -> None:
    """The shortcuts in ``views`` return what the full set of passes returns: exactly, for
    ASCII values (plain values, prose with only an apostrophe); for other prose, the same
    views up to the case of ASCII letters (the folded copies are left out, see
    ``test_non_ascii_prose_shortcut_matches_what_the_full_views_match``)."""
    for decode_base64 in (True, False):
        short = views(value, decode_base64=decode_base64)
        full = _all_views(value, decode_base64=decode_base64)
        assert short[0] == full[0]
        if value.isascii() or len(value) > MAX_VIEW_CHARS:
            assert short == full
        else:
            assert _ascii_case_blind(short) == _ascii_case_blind(full)


def test_apostrophe_prose_gets_the_shell_unquoted_view_only_with_shell_syntax() -> None:
    assert views("We're away in June") == ["We're away in June"]
    assert views("O'Brien (card 7)") == ["O'Brien (card 7)", "OBrien (card 7)"]
    assert views("c'a't /etc/passwd") == ["c'a't /etc/passwd", "cat /etc/passwd"]


@settings(max_examples=2000, deadline=None)
@given(value=_PROSE)
def test_non_ascii_prose_shortcut_matches_what_the_full_views_match(value: str) -> None:
    """Non-ASCII prose skips the views that differ from it only in the case of ASCII
    letters: over those views, every signature and every code detector (libinjection
    included) gives exactly what it gives over the full views, so no decision changes."""
    from bastion.stages.detection.inspect import Input
    from bastion.stages.detection.matcher import Matcher

    matcher = _matcher()
    inp = Input("json", value)

    def found(view_list: list[str]) -> set[int]:
        scan = matcher._backend.scan
        ids = {rule_id for view in view_list for rule_id, _ in scan(view.encode("utf-8", "surrogatepass"))}
        seen: dict[int, object] = {}
        for view in view_list:
            matcher._detect(view, inp, seen)  # type: ignore[arg-type]
        return ids | set(seen)

    assert isinstance(matcher, Matcher)
    assert found(views(value)) == found(_all_views(value))


_MATCHERS: list[object] = []


def _matcher() -> object:
    """A paranoia-4 matcher (every rule), compiled once for the module."""
    from bastion.stages.detection.matcher import Matcher

    if not _MATCHERS:
        _MATCHERS.append(Matcher(4))
    return _MATCHERS[0]


def test_non_ascii_prose_takes_the_shortcut() -> None:
    """The gift message of the benchmark mix gets its own view and its unquoted copy, not
    its case-folded copies; what case folding could change keeps the full passes."""
    gift = "Happy birthday, Dónal! Don't wear them all at once. (card 12345)"
    assert views(gift) == [gift, gift.replace("'", "")]
    assert views("Zürich") == ["Zürich"]
    assert views("\u017felect") == _all_views("\u017felect")  # long s folds to "s"
    assert "select" in views("\u017felect")
    assert views("Straße") == _all_views("Straße")  # "ß" folds to "ss"
    assert views("À la carte") == _all_views("À la carte")  # "À" lowers to "à"
    assert views(" Dónal") == _all_views(" Dónal")  # whitespace collapsing trims it
    assert views("Dónal $x$") == _all_views("Dónal $x$")  # libinjection's $tag$ quoting
    assert views("Dónal SP_PASSWORD") == _all_views("Dónal SP_PASSWORD")
    # Why those two: there libinjection sees the case of ASCII letters.
    from bastion.stages.detection import libinj

    assert libinj.is_sqli("É1 -- sp_password") and not libinj.is_sqli("É1 -- SP_PASSWORD")
    assert libinj.is_sqli("$a$ or 1=1 $a$ --") != libinj.is_sqli("$a$ or 1=1 $A$ --")
    assert views("É1 -- SP_PASSWORD") == _all_views("É1 -- SP_PASSWORD")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("%c0%2e%c0%2e%c0%2f", "../"),  # overlong with lax continuation bytes (IIS)
        ("%e0%80%ae%e0%80%ae%e0%80%af", "../"),  # three-byte overlong
        ("%f0%80%80%ae%f0%80%80%ae%f0%80%80%af", "../"),  # four-byte overlong
        ("%f8%80%80%80%ae.%fc%80%80%80%80%af", "../"),  # five- and six-byte forms
        ("%c1%9c%c1%1c", "\\\\"),  # overlong backslash, the second with a lax continuation
        ("%bg%qf", "/"),  # IIS's lax hex: 'g' is 16, 'q' 26: C0 AF
        ("..%c0%9v..", "../.."),  # 9v = 0xAF
        ("%u002e%u002e%u2215", "../"),  # %u of a dot and a division slash
        ("%uff0e%uff0e%u2216", "..\\"),  # fullwidth dots, set minus
        ("..\u2215..\u2044x", "../../x"),  # look-alike slashes as text
        ("%25c0%25ae%25c0%25ae%25c0%25af", "../"),  # double-encoded overlong
        ("%2525bg%2525qf", "/"),  # double-encoded lax escape
    ],
)
def test_hidden_path_separators_are_decoded(raw: str, expected: str) -> None:
    """Every spelling of a dot, slash or backslash that some decoder on the way accepts
    (overlong UTF-8 of any length, lax hex digits, %u, look-alike characters, each also
    double-encoded) has a view with the ASCII character."""
    assert any(expected in v for v in views(raw)), views(raw)


@pytest.mark.parametrize(
    "value",
    ["50%off today, 100%good", "caf%C3%A9 cr%C3%A8me", "%E2%82%AC20", "a%2Bb%3Dc", "%ZZ%", "%u00e9t%u00e9", "%"],
)
def test_path_view_changes_only_separators(value: str) -> None:
    """The path view of a value without a hidden separator is the value itself: it decodes
    nothing else (accented letters, a euro sign, a stray '%'), so it adds no text for the
    other rules to see."""
    from bastion.stages.detection.normalize import path_view

    assert path_view(value) == value


@settings(max_examples=500)
@given(st.lists(st.sampled_from([*"%uUcC0189aefgqvz.2/\\", "%c0", "%af", "%u2215"]), max_size=30).map("".join))
def test_path_view_only_writes_separators(value: str) -> None:
    """Whatever the input, the path view is never longer and brings no character but '.',
    '/' and '\\' that the input did not have: it writes separators, nothing else."""
    from bastion.stages.detection.normalize import path_view

    out = path_view(value)
    assert len(out) <= len(value)
    assert set(out) <= set(value) | {".", "/", "\\"}


def _folds_to_itself_in_full(value: str) -> bool:
    """``_folds_to_itself`` as it was before its Latin-1 shortcut: every test on every value."""
    import unicodedata

    from bastion.stages.detection.normalize import PATH_LOOKALIKE_CHARS, truncate_wide

    if value[:1] == " " or value[-1:] == " " or "$" in value:
        return False
    if not PATH_LOOKALIKE_CHARS.isdisjoint(value) or not unicodedata.is_normalized("NFKC", value):
        return False
    folded = value.casefold()
    if value.encode("utf-8").lower() != folded.encode("utf-8"):
        return False
    return "sp_password" not in folded and truncate_wide(value) == value


@settings(max_examples=1000, deadline=None)
@given(value=st.one_of(_PROSE, st.text(alphabet=st.characters(max_codepoint=0xFF)), st.text()))
def test_latin1_shortcut_of_the_folding_test_changes_nothing(value: str) -> None:
    """Latin-1 text skips the look-alike and wide-character tests of ``_folds_to_itself``:
    no look-alike separator is Latin-1 and ``truncate_wide`` changes no Latin-1 character,
    so the answer is the full test's, for Latin-1 and any other text."""
    from bastion.stages.detection.normalize import PATH_LOOKALIKE_CHARS, _folds_to_itself, truncate_wide

    assert min(PATH_LOOKALIKE_CHARS) > "\xff"
    assert all(truncate_wide(chr(code)) == chr(code) for code in range(256))
    assert _folds_to_itself(value) == _folds_to_itself_in_full(value)
