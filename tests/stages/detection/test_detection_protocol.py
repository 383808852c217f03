"""The ``protocol`` category (rules 17001-17006): headers and encodings an upstream reads
otherwise than the gateway, refused; the ordinary forms of the same headers pass. The
requests are of our own making (issue 19: the CRS 920 family showed the classes)."""

from __future__ import annotations

import pytest
from detection_helpers import make_request

from bastion.stages.detection import DetectionConfig, DetectionEngine
from bastion.stages.detection.config import Exclusion
from bastion.stages.detection.protocol import (
    CONTENT_TYPES_REMEMBERED,
    ProtocolChecks,
    encoding_problem,
    media_type_params,
)
from bastion.types import Request


def rules_of(engine: DetectionEngine, request: Request) -> set[int]:
    """The protocol rules (17xxx) that hit ``request``."""
    return {h.rule.id for h in engine.evaluate(request).hits if h.rule.category == "protocol"}


def refused_by(engine: DetectionEngine, request: Request, rule: int) -> None:
    """``request`` is blocked, and ``rule`` is among its hits (an attack rule may hit too,
    and then names the request)."""
    verdict = engine.evaluate(request)
    assert verdict.block_category is not None, verdict.log_record()
    assert rule in {h.rule.id for h in verdict.hits}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Proxy", "http://203.0.113.5:8080"),
        ("Request-Range", "bytes=0-1023"),
        ("If", "(<urn:x>)"),
        ("Lock-Token", "<urn:uuid:1>"),
    ],
)
def test_headers_no_api_client_sends_are_refused(engine: DetectionEngine, name: str, value: str) -> None:
    """httpoxy's ``Proxy``, the pre-standard ``Request-Range`` and WebDAV's ``If`` and
    ``Lock-Token`` are refused (17001), whatever their value."""
    refused_by(engine, make_request("/v1/files/a.pdf", headers=[(name, value)]), 17001)


@pytest.mark.parametrize(
    "value",
    [
        "application-json",  # no subtype
        "multipart/; boundary=x1",  # empty subtype
        "text/plain; format",  # a parameter without a value
        'text/plain; charset="utf-8"; flowed',  # the same after a quoted one
        "application/json; charset=utf-8; CHARSET=utf-7",  # a parameter twice
        'multipart/form-data; boundary="a;b"',  # a quoted ';' that splitting parsers cut
        "multipart/form-data",  # multipart with no boundary
        "%{(#cmd='id').(#x=@java.lang.Runtime)}",  # not a media type at all
        'application/json; charset="utf-8',  # unclosed quote
    ],
)
def test_a_content_type_that_is_not_one_media_type_is_refused(engine: DetectionEngine, value: str) -> None:
    """A ``Content-Type`` outside RFC 9110's grammar, naming a parameter twice or a
    multipart type without a boundary is refused (17002): parsers disagree on its body."""
    request = make_request("/v1/notes", method="POST", body="a=1", content_type=value)
    refused_by(engine, request, 17002)


@pytest.mark.parametrize(
    "value",
    [
        "application/json",
        "application/json; charset=UTF-8",
        "application/json;charset=utf-8;",
        "application/x-www-form-urlencoded; charset='utf-8'",
        'application/soap+xml; charset=utf-8; action="urn:example:Lookup#find"',
        "multipart/form-data; boundary=----WebKitFormBoundaryq8Zc1",
        'multipart/related; type="application/xop+xml"; boundary="----=_Part_7_1901.17"; start="<root>"',
        "multipart/mixed; boundary= gc0p4Jq0M2Yt,08/jU534c0p?==:test",
        "text/vcard;version=4.0",
        "application/*+json",
        'application/vnd.api+json; ext="https://example.com/ext"',
    ],
)
def test_ordinary_content_types_pass(engine: DetectionEngine, value: str) -> None:
    """Media types APIs and browsers send, with quoted and unquoted parameters, boundaries
    holding ``=``, ``,`` and ``:``, and an empty trailing parameter, pass."""
    body = "a=1" if not value.startswith("multipart") else "--x--"
    assert rules_of(engine, make_request("/v1/notes", method="POST", body=body, content_type=value)) == set()


@pytest.mark.parametrize("charset", ["utf-7", "ibm037", "UTF-16", '"utf-88"', "x-garbage"])
def test_a_charset_outside_the_allowed_ones_is_refused(engine: DetectionEngine, charset: str) -> None:
    """A body declared in a charset filters do not read as UTF-8 (17003) is refused, in
    Content-Type as in an Accept element."""
    form = make_request(
        "/v1/notes", method="POST", body="a=1", content_type=f"application/x-www-form-urlencoded; charset={charset}"
    )
    refused_by(engine, form, 17003)
    accept = make_request("/v1/notes", headers=[("Accept", f"text/html;q=0.9;charset={charset},*/*;q=0.8")])
    refused_by(engine, accept, 17003)


def test_allowed_charsets_are_a_setting() -> None:
    """``allowed_charsets`` replaces the list (case-insensitive); what it leaves out is refused."""
    engine = DetectionEngine(DetectionConfig(allowed_charsets=["UTF-8", "Shift_JIS"]))
    sjis = make_request("/v1/notes", method="POST", body="a=1", content_type="text/plain; charset=shift_jis")
    assert rules_of(engine, sjis) == set()
    latin = make_request("/v1/notes", method="POST", body="a=1", content_type="text/plain; charset=iso-8859-1")
    assert 17003 in rules_of(engine, latin)
    with pytest.raises(ValueError, match="is not a charset name"):
        DetectionConfig(allowed_charsets=[" utf-8"])


@pytest.mark.parametrize(
    "disposition",
    [
        'form-data; name="doc;type"; filename="a.txt"',
        'form-data; name="avatar"; filename="shell.p\\h\\p"',
        'form-data; name="avatar"; filename="x.php=.png"',
        'form-data; name="a&amp;b;c"; filename="a.txt"',
        'form-data; name="avatar; filename="x.txt"',
    ],
)
def test_multipart_names_that_parsers_split_differently_are_refused(engine: DetectionEngine, disposition: str) -> None:
    """A part name or file name holding a ``;`` (outside an HTML character reference), a
    backslash, an ``=`` or an unbalanced quote is refused (17004)."""
    body = f"--b1\r\nContent-Disposition: {disposition}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1--\r\n"
    request = make_request("/v1/uploads", method="POST", body=body, content_type="multipart/form-data; boundary=b1")
    refused_by(engine, request, 17004)


@pytest.mark.parametrize(
    "disposition",
    [
        'form-data; name="avatar"; filename="Zoë\'s CV (final).pdf"',
        'form-data; name="caf&eacute;&#233;"; filename="r&eacute;sum&eacute;.txt"',
        'form-data; name=""; filename=""',
        'form-data; name="note"',
    ],
)
def test_ordinary_multipart_names_pass(engine: DetectionEngine, disposition: str) -> None:
    """Names with apostrophes, parentheses, accents and the character references browsers
    send for characters outside the form's charset pass."""
    body = f"--b1\r\nContent-Disposition: {disposition}\r\n\r\nhello\r\n--b1--\r\n"
    request = make_request("/v1/uploads", method="POST", body=body, content_type="multipart/form-data; boundary=b1")
    assert rules_of(engine, request) == set()


@pytest.mark.parametrize(
    "target",
    [
        "/v1/files?name=report%00.pdf",
        "/v1/files?name=%u002e%u002e",
        "/v1/files?p=%c0%ae%c0%ae",
        "/v1/files?p=%e0%80%af",
        "/v1/files?p=%f0%80%80%af",
        "/v1/files/%F5%80%BF%BF",
    ],
)
def test_encodings_no_client_produces_are_refused_in_the_target(engine: DetectionEngine, target: str) -> None:
    """A NUL, IIS's ``%u`` and overlong or impossible UTF-8 in the raw target are refused
    (17005): they are how ``../`` and quotes get past filters."""
    refused_by(engine, make_request(target), 17005)


def test_encodings_no_client_produces_are_refused_in_a_form() -> None:
    """The same in a urlencoded form body; a JSON body's ``%`` is text, not an encoding."""
    engine = DetectionEngine(DetectionConfig())
    form = make_request(
        "/v1/notes", method="POST", body="title=a%00b", content_type="application/x-www-form-urlencoded"
    )
    refused_by(engine, form, 17005)
    as_json = make_request("/v1/notes", method="POST", body='{"title": "50%00 off"}', content_type="application/json")
    assert 17005 not in rules_of(engine, as_json)


@pytest.mark.parametrize(
    "raw",
    [
        "/v1/search?q=caf%C3%A9",
        "/v1/search?q=caf%E9",
        "/v1/search?q=%FD%FE",
        "/v1/search?q=100%25",
        "/v1/search?q=%u0F",
        "/v1/search?q=%C3%80%C2%A9",
        "/v1/search?q=50%",
    ],
)
def test_utf8_latin1_and_stray_percent_signs_pass(raw: str) -> None:
    """UTF-8, latin-1 letters (a lone byte above 0x7f), an escaped ``%`` and a ``%`` that
    starts no escape are not encoding problems."""
    assert not encoding_problem(raw)


def test_media_type_parameters_are_read_as_rfc_9110_says() -> None:
    """The parser gives names in lower case and quoted values unquoted."""
    assert media_type_params('Text/Plain; Charset="UTF-8" ; format=flowed') == [
        ("charset", "UTF-8"),
        ("format", "flowed"),
    ]
    assert media_type_params("text/plain") == []
    assert media_type_params("text/plain; a=1; A=2") is None


def test_the_category_and_each_rule_can_be_turned_off() -> None:
    """``categories: {protocol: off}`` stops every check; an exclusion by rule ID stops one
    (an API whose clients do send ``Request-Range``), the others still refuse; in monitor
    mode the hit is logged and the request passes."""
    ranged = make_request("/v1/files/a.bin", headers=[("Request-Range", "bytes=0-99")])
    off = DetectionEngine(DetectionConfig(categories={"protocol": "off"}))
    assert off.evaluate(ranged).hits == []
    excluded = DetectionEngine(DetectionConfig(exclusions=[Exclusion(rule_id=17001)]))
    assert excluded.evaluate(ranged).block_category is None
    utf7 = make_request("/v1/files/a.bin", method="POST", body="a=1", content_type="text/plain; charset=utf-7")
    assert excluded.evaluate(utf7).block_category == "protocol"
    assert [h.rule.id for h in excluded.evaluate(utf7).hits] == [17003]
    monitored = DetectionEngine(DetectionConfig(categories={"protocol": "monitor"}))
    verdict = monitored.evaluate(ranged)
    assert verdict.block_category is None and verdict.monitor_category == "protocol"


@pytest.mark.parametrize(
    "path",
    ["/v1/export/users.db", "/static/app.js.bak", "/backup/site.sql", "/data/dump.rdb", "/index.php~",
     "/index.php~/x/y", "/files/orders.sqlite3", "/v1/conf.orig", "/v1/.main.py.swp"],
)
def test_a_path_naming_a_backup_a_database_or_a_dump_is_refused(engine: DetectionEngine, path: str) -> None:
    """A path segment naming a file a server holds by accident (a backup copy, a database, a
    dump) is refused (17006): no API serves one on purpose, a web server behind a catch-all
    hands it out."""
    refused_by(engine, make_request(path), 17006)


@pytest.mark.parametrize(
    "path",
    ["/~alice/profile", "/v1/fonts/Inter.ttf", "/v1/reports/2026-12.pdf", "/v1/db/tables", "/v1/sql/queries/7",
     "/v1/items/old", "/v1/backup/latest", "/v1/version/1.0.0", "/v1/files/archive.tar.gz"],
)
def test_paths_with_the_same_words_pass(engine: DetectionEngine, path: str) -> None:
    """Home folders (``~alice``), ordinary files and routes named ``db``, ``sql``, ``old`` or
    ``backup`` pass: only an extension or a trailing ``~`` counts."""
    assert rules_of(engine, make_request(path)) == set()


def test_remembered_content_types_keep_their_verdict() -> None:
    """Verdicts on Content-Type values are remembered (bounded): past the bound, and for a
    value seen before, a bad type is still refused and a good one still passes."""
    checks = ProtocolChecks(frozenset({"utf-8"}))
    for n in range(CONTENT_TYPES_REMEMBERED + 50):
        good = make_request("/v1/x", method="POST", body="a=1", content_type=f"application/vnd.t{n}+json")
        assert checks.findings(good) == []
    for _ in range(2):
        bad = make_request("/v1/x", method="POST", body="a=1", content_type="application/json; charset=utf-7")
        assert [rule for rule, _, _ in checks.findings(bad)] == [17003]


@pytest.mark.parametrize("value", ["", " ", "\t"])
def test_an_empty_content_type_passes_without_a_body_and_is_refused_with_one(
    engine: DetectionEngine, value: str
) -> None:
    """Some client libraries send an empty ``Content-Type`` on every request: without a body
    it declares nothing and passes (no hit at all); on a request with a body, an empty one is
    still not a media type (17002)."""
    for method in ("GET", "DELETE", "POST"):
        request = make_request("/v1/notes/7", method=method, headers=[("Content-Type", value)])
        assert engine.evaluate(request).hits == [], method
    with_body = make_request("/v1/notes", method="POST", body="a=1", headers=[("Content-Type", value)])
    refused_by(engine, with_body, 17002)


@pytest.mark.parametrize(
    "value",
    [
        'multipart/related; type="application/xop+xml"; boundary="----=_Part_0_1380112531.1733591018765";'
        ' start="<root.message@cxf.apache.org>"; start-info="text/xml"',
        'multipart/related; type="application/xop+xml"; start="<rootpart@soapui.org>";'
        ' start-info="application/soap+xml"; action="urn:example:Upload"; boundary="----=_Part_5_1.2"',
        'application/soap+xml; charset="utf-8"; action="http://example.com/Orders#Create"',
        "text/xml; charset='utf-8'",
    ],
)
def test_soap_and_mtom_content_types_pass_whole(engine: DetectionEngine, value: str) -> None:
    """SOAP and MTOM clients quote their ``Content-Type`` parameters: the quote closing one
    and the ``;`` before the next are the header's syntax, not a string break and a
    statement end; no rule of any category hits."""
    request = make_request("/v1/soap", method="POST", body="--x--", content_type=value)
    assert engine.evaluate(request).hits == []


@pytest.mark.parametrize(
    "value",
    [
        'multipart/related; type="application/xop+xml"; start="x\' UNION SELECT password FROM users--"; boundary=b',
        'text/xml; action="<script>alert(1)</script>"',
        "text/xml; action=\"'; exec xp_cmdshell 'dir'--\"",
    ],
)
def test_an_injection_in_a_quoted_content_type_parameter_is_refused(engine: DetectionEngine, value: str) -> None:
    """What a quoted parameter holds is inspected whole: an injection in one is refused."""
    request = make_request("/v1/soap", method="POST", body="--x--", content_type=value)
    assert engine.evaluate(request).block_category not in (None, "protocol")
