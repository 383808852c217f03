"""Seed corpora, built at run time from requests the repository already has.

- the benign benchmark corpus (``bench/detection/benign.jsonl``, committed);
- the attack payloads of the detection tests, placed in every kind of input;
- the shared GoTestWAF corpus (``/work/shared/corpora``), read when it is on the machine
  (never copied into the repository).
"""

from __future__ import annotations

import ast
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from tests.fuzz.codec import Part, RequestSpec, Writer

ROOT = Path(__file__).resolve().parents[2]
BENIGN = ROOT / "bench" / "detection" / "benign.jsonl"
SHARED = ROOT.parent / "shared" / "corpora" / "gotestwaf-requests.jsonl"
ENGINE_TESTS = ROOT / "tests" / "stages" / "detection" / "test_detection_engine.py"

#: Encodings and evasions the normaliser decodes, beside the tests' payloads.
EXTRA_ATTACKS = (
    "%2527%2520OR%25201%253D1--",
    "%u0027%u003cscript%u003e",
    "&#x3c;svg/onload=alert(1)&#x3e;",
    "&lt;img src=x onerror=alert(1)&gt",
    "\\u0027\\x3cscript\\x3e\\u{27}\\047",
    "UN/**/ION/*!50000SELECT*/ 1,2",
    "${${::-j}${lower:n}di:ldap://x.test/a}",
    "嘍嘊Set-Cookie: a=1",
    "%c0%ae%c0%ae/%e0%80%afetc/passwd",
    "http://0x7f.1/ http://[::ffff:127.0.0.1]:80/ http://2130706433/ //0177.0.0.1",
    "http://169.254.169.254.nip.io/latest",
    "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "J09SIDE9MS0t",
    "<x>java<b>script:alert(1)",
    "ca't' /e\"t\"c/pa\\sswd;id",
    "a\x00b\x1f\x7fc\t\n\r\x0b\x0c\xa0\u2028\u3000 d",
    "\ufb01\ufeff\u200b\uff33\uff25\uff2c\uff25\uff23\uff34",
    "[::1]:8080",
    "0x7f000001",
    "\\ud83d\\ude00\\ud800%ud800",
)


def attack_strings() -> list[str]:
    """The detection tests' payloads (read from their source) and :data:`EXTRA_ATTACKS`."""
    found: list[str] = []
    tree = ast.parse(ENGINE_TESTS.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id in ("PAYLOADS", "BENIGN") for t in targets):
                value = ast.literal_eval(node.value)
                items = value.values() if isinstance(value, dict) else value
                found.extend(v for v in items if isinstance(v, str))
    return [*found, *EXTRA_ATTACKS]


def _rows(path: Path, limit: int) -> Iterator[dict[str, object]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as lines:
        for i, line in enumerate(lines):
            if i >= limit:
                return
            yield json.loads(line)


def corpus_requests(limit: int = 6000) -> Iterator[RequestSpec]:
    """The benign corpus and (when present) the shared attack corpus, as request specs."""
    for path in (BENIGN, SHARED):
        for row in _rows(path, limit):
            target = str(row["path"])
            raw_path, _, query = target.partition("?")
            headers = [(str(k).lower(), str(v)) for k, v in row["headers"]]  # type: ignore[attr-defined]
            body = row.get("body")
            yield RequestSpec(
                method=str(row["method"]),
                path=raw_path,
                query=query,
                headers=[h for h in headers if h[0] != "host"][:15],
                body_kind="raw" if body else "none",
                body=str(body).encode("utf-8") if body else b"",
            )


def attack_requests() -> Iterator[RequestSpec]:
    """Each attack string in each kind of input."""
    for payload in attack_strings():
        enc = quote(payload, safe="")
        data = payload.encode("utf-8", "surrogateescape")
        yield RequestSpec(path="/search", query=f"q={enc}&page=2")
        yield RequestSpec(path=f"/files/{enc}/raw")
        yield RequestSpec(headers=[("x-forwarded-host", payload), ("cookie", f"pref={enc}; theme=dark")])
        yield RequestSpec(method="POST", body_kind="form", body=f"a=1&field={enc}".encode())
        yield RequestSpec(method="POST", body_kind="json", body=json.dumps({"user": {"bio": payload}}).encode())
        yield RequestSpec(method="POST", body_kind="json", body=json.dumps({payload: [1, payload]}).encode(),
                          encoding="gzip")
        yield RequestSpec(method="POST", body_kind="xml", body=b"<r><a>" + data + b"</a><![CDATA[" + data + b"]]></r>")
        yield RequestSpec(method="POST", body_kind="raw", body=data, headers=[("content-type", "text/plain")])
        yield RequestSpec(method="PUT", body_kind="multipart", parts=[
            Part("field", data), Part("file", data, filename="a.txt", content_type="text/plain"),
            Part("meta", json.dumps({"k": payload}).encode(), content_type="application/json")])
        yield RequestSpec(query="data=" + base64.urlsafe_b64encode(data).decode().rstrip("="))


def encode(spec: RequestSpec, paranoia_choice: int) -> bytes:
    """A detection input: the request, then which engine (0: paranoia 1, 1: paranoia 4)."""
    w = Writer()
    spec.write(w)
    w.choice(2, paranoia_choice)
    return w.data()


def detection_seeds() -> Iterator[bytes]:
    for i, spec in enumerate(attack_requests()):
        yield encode(spec, i % 2)
    for i, spec in enumerate(corpus_requests()):
        if i % 8 == 0 or i >= 5500:  # a sample of the benign corpus, all of the shared one
            yield encode(spec, i % 2)


def text_values() -> Iterator[str]:
    """Single values: attack strings and the values of benign requests."""
    yield from attack_strings()
    for i, spec in enumerate(corpus_requests()):
        if i % 4:
            continue
        yield spec.path
        yield from spec.query.split("&")
        yield from (v for _, v in spec.headers)
        if spec.body:
            yield spec.body.decode("utf-8", "replace")[:2000]


def normalize_seeds() -> Iterator[bytes]:
    for value in text_values():
        w = Writer()
        w.text(value)
        w.choice(256, 0)
        yield w.data()
