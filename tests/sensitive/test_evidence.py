"""The record never carries credentials, cookies, secret-named values, configured fields or
detected secrets: unit tests of the evidence redactor, then a real gateway's access log
grepped for a key, a cookie and a token that detection quoted.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.sensitive.evidence import REDACTED, EvidenceRedactor, PairFinder, TrustedText
from bastion.testing import GatewayProcess

AWS = "AKIAIOSFODNN7EXAMPLE"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
COOKIE = "s3ss10n-cookie-value-7f3a"


@pytest.mark.parametrize(
    ("location", "secret"),
    [
        ("header:authorization", True),
        ("header:proxy-authorization", True),
        ("header:x-api-key", True),
        ("header 'authorization'", True),  # validation's form
        ("cookie:theme", True),  # every cookie's value
        ("query:access_token", True),
        ("form:client_secret", True),
        ("json:user.password", True),
        ("json:user.ssn", True),  # configured path
        ("json:pin", True),  # configured name
        ("json:ssn", False),  # the path is user.ssn, not any ssn
        ("json:user.name", False),
        ("query:q", False),
        ("header:user-agent", False),
        ("path:2", False),
    ],
)
def test_secret_locations(location: str, secret: bool) -> None:
    """Credential headers, cookies, secret-named parameters and the configured names and
    paths are secret locations; ordinary ones are not."""
    assert EvidenceRedactor(["user.ssn", "pin"]).secret_location(location) is secret


def test_evidence_at_secret_locations_is_replaced_and_secrets_elsewhere_masked() -> None:
    """A hit's snippet at a secret location becomes [REDACTED] (its rule, category and
    location stay); a quoted query's secret-named value is replaced; a key in ordinary text
    is masked; numbers and other facts pass unchanged; the input is not changed."""
    hit = {"category": "sqli", "severity": 5}
    facts = {
        "detection": {
            "score": 10,
            "hits": [
                {"rule": 1001, **hit, "location": "header:authorization", "snippet": "x"},
                {"rule": 1002, **hit, "location": "query", "snippet": "a=1&token=t0k' or 1=1"},
                {"rule": 1003, **hit, "location": "query:q", "snippet": f"{AWS}' or 1=1"},
            ],
        },
        "ratelimit": {"remaining": 3},
    }
    out = EvidenceRedactor().facts(facts)
    hits = out["detection"]["hits"]  # type: ignore[index]
    assert hits[0] == {"rule": 1001, "category": "sqli", "severity": 5, "location": "header:authorization",
                       "snippet": REDACTED}
    assert hits[1]["snippet"] == f"a=1&token={REDACTED}' or 1=1"
    assert hits[2]["snippet"] == "****************MPLE' or 1=1"
    assert out["ratelimit"] == {"remaining": 3}
    assert facts["detection"]["hits"][0]["snippet"] == "x"  # type: ignore[index]


class Api(BaseHTTPRequestHandler):
    """Answers 200 with a small JSON body to anything."""

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _ok(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _ok
    do_POST = _ok


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = {
        "access_log": {"path": "access.log", "redact_fields": ["account.pin"]},
        "services": [{
            "name": "api",
            "upstream": f"http://127.0.0.1:{server.server_address[1]}",
            "routes": [{"path": "/", "prefix": True, "public": True,
                        "policies": {"detection": {"paranoia": 1, "enforce": False}}}],
        }],
    }
    try:
        with GatewayProcess(config) as gw:
            yield gw
    finally:
        server.shutdown()
        server.server_close()


def _send(gw: GatewayProcess, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> str:
    conn = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    conn.request(method, target, body=body or None, headers=headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 200
    request_id = resp.getheader("x-request-id")
    assert request_id
    return request_id


#: The pair pattern as it was before its look-behind (quadratic in a run of name characters):
#: the reference its matches must equal.
_PAIR_BEFORE = re.compile(r"([A-Za-z0-9_\-.\[\]]+)=([^&;\s\"']*)")


_FINDERS = {prefer: PairFinder(prefer) for prefer in ("hyperscan", "re2")}


def _char_offset(raw: bytes, offset: int) -> int:
    return len(raw[:offset].decode("utf-8"))


@given(st.text(alphabet="ab1_-.[]=&; \"'xQ\u00e9\u00a0\u3000\x1c\t", max_size=40))
def test_the_pair_search_finds_what_the_earlier_pattern_found(text: str) -> None:
    """The ``name=value`` search (hyperscan, or RE2 where hyperscan cannot load; no Python ``re``) finds exactly
    the pairs, with the same names and values, that the earlier pattern found: over texts made of name characters,
    separators, quotes, ``=``, a non-ASCII letter and whitespace inside and outside ASCII (offsets compared as
    characters, the search being over the UTF-8 bytes)."""
    raw = text.encode("utf-8")
    expected = [(m.start(1), m.end(1), m.end(2)) for m in _PAIR_BEFORE.finditer(text)]
    for finder in _FINDERS.values():
        found = [tuple(_char_offset(raw, at) for at in pair) for pair in finder.pairs(raw)]
        assert found == expected


def test_a_secret_pair_after_a_long_run_of_name_characters_is_still_replaced() -> None:
    """A quoted query whose secret pair follows 100,000 name characters (the case the earlier pattern took seconds
    on) still has the secret's value replaced and the rest kept; a rate limit's fact, which has ``=`` but no
    secret name, comes out unchanged."""
    redactor = EvidenceRedactor()
    text = "q=" + "a" * 100_000 + "&token=s3cr3t-value&page=2"
    assert redactor.text(text) == "q=" + "a" * 100_000 + f"&token={REDACTED}&page=2"
    fact = '"per-ip";r=99;t=3600, "global";r=999;t=86400'
    assert redactor.facts({"ratelimit": fact}) == {"ratelimit": fact}


def test_a_trusted_fact_is_kept_as_it_is_and_only_a_trusted_one() -> None:
    """A fact a stage marked as its own (:class:`TrustedText`, a rate limit's names and numbers)
    is handed to the record as it is, unsearched: even text that would otherwise be replaced
    or masked. The same text as a plain string, as any stage quoting a request leaves it,
    still has its secret pair replaced and its AWS key masked."""
    redactor = EvidenceRedactor()
    text = "token=s3cr3t-value AKIAIOSFODNN7EXAMPLE"
    trusted = TrustedText(text)
    assert redactor.facts({"ratelimit": trusted})["ratelimit"] is trusted
    cleaned = redactor.facts({"detection": text})["detection"]
    assert isinstance(cleaned, str) and "s3cr3t-value" not in cleaned and "AKIAIOSFODNN7EXAMPLE" not in cleaned
    assert cleaned.startswith(f"token={REDACTED} ")


def test_the_access_log_never_carries_a_key_a_cookie_or_a_token(gateway: GatewayProcess) -> None:
    """Requests whose credentials, cookie, query token, configured JSON field and an AWS key
    in a query parameter all carry SQL injection (so detection, in shadow mode, quotes them
    in the record): the raw access log file contains none of those values, the hits are
    there (rule, location), and their snippets are redacted or masked."""
    attack = "' OR '1'='1' --"
    ids = [
        _send(gateway, "GET", "/a?page=1", {"Authorization": f"Bearer {BEARER}{attack}"}),
        _send(gateway, "GET", "/b", {"Cookie": f"session={COOKIE}{attack}"}),
        _send(gateway, "GET", "/c?access_token=t0k3n-value" + "%27%20OR%20%271%27%3D%271", {}),
        _send(gateway, "POST", "/d", {"Content-Type": "application/json"},
              json.dumps({"account": {"pin": "9876" + attack}}).encode()),
        _send(gateway, "GET", f"/e?q={AWS}%27%20OR%20%271%27%3D%271", {}),
    ]
    records = [gateway.wait_for_access_record(lambda r, i=i: r["request_id"] == i) for i in ids]
    for record in records:
        assert record["detection"]["hits"], record  # detection quoted something each time
    text = (gateway.folder / "access.log").read_text()
    for secret in (BEARER, COOKIE, "t0k3n-value", "9876", AWS):
        assert secret not in text, secret
    assert "****************MPLE" in text


def test_pairs_are_still_found_whatever_the_case_and_for_configured_fields() -> None:
    """The pair search is skipped only for a text that holds no word a secret name is made of: a secret name in
    capitals, a configured field's name (``pin``) and a name inside a dotted path are still replaced."""
    redactor = EvidenceRedactor(["pin", "user.ssn"])
    assert redactor.text("a=1&ACCESS_TOKEN=abc") == f"a=1&ACCESS_TOKEN={REDACTED}"
    assert redactor.text("pin=1234&x=1") == f"pin={REDACTED}&x=1"
    assert redactor.text("user.ssn=1234 rest") == f"user.ssn={REDACTED} rest"
    assert redactor.text("page=2&sort=name") == "page=2&sort=name"
