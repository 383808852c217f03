"""Reading request corpora (JSONL) shared by the detection bench tools.

Each line is one request: ``method``, ``path`` (the raw request target), ``headers``
(``[[name, value], ...]``), ``body`` (text or null), ``category`` and ``expect_block``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bastion.types import Request

GOTESTWAF = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "gotestwaf-requests.jsonl"
BENIGN = Path(__file__).resolve().parent / "benign.jsonl"


@dataclass(frozen=True, slots=True)
class Sample:
    """One corpus request."""

    id: str
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    category: str
    expect_block: bool
    #: The request's bytes as the corpus's own client sends them (``b""``: build them with
    #: :meth:`to_wire`).
    raw: bytes = b""

    def to_request(self) -> Request:
        """The request as the gateway's stages would see it."""
        path, _, query = self.target.partition("?")
        headers = [(k.lower(), v) for k, v in self.headers]
        host = next((v for k, v in headers if k == "host"), "")
        request = Request(self.method, self.target, path, query, headers, host=host)
        request.body = self.body or None
        return request

    def to_wire(self) -> bytes:
        """The raw HTTP/1.1 bytes of the request: the corpus's own bytes when it has them,
        otherwise with a correct Content-Length."""
        if self.raw:
            return self.raw
        lines = [f"{self.method} {self.target} HTTP/1.1"]
        names = set()
        for name, value in self.headers:
            if name.lower() in ("content-length", "connection", "transfer-encoding"):
                continue
            names.add(name.lower())
            lines.append(f"{name}: {value}")
        if "host" not in names:
            lines.append("Host: localhost")
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("Connection: close")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("latin-1", "replace") + self.body


def load(path: Path, keep: Callable[[dict[str, object]], bool] | None = None) -> Iterator[Sample]:
    """The samples of a JSONL corpus, in file order (only the rows ``keep`` accepts)."""
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if not line.strip():
                continue
            row = json.loads(line)
            if keep is not None and not keep(row):
                continue
            body = row.get("body") or ""
            yield Sample(
                id=str(row.get("id", n)),
                method=row.get("method", "GET"),
                target=row.get("path", "/"),
                headers=[(str(k), str(v)) for k, v in row.get("headers", [])],
                body=body.encode("utf-8") if isinstance(body, str) else bytes(body),
                category=str(row.get("category") or ("benign" if not row.get("expect_block") else "attack")),
                expect_block=bool(row.get("expect_block")),
                raw=_raw(row),
            )


def _raw(row: dict[str, object]) -> bytes:
    """The bytes a CRS corpus row stands for, as go-ftw sends them: its raw request, or its
    request line, headers and body as given (``Content-Length`` and ``Connection: close``
    added only when the test lets go-ftw complete the headers). ``b""`` for other corpora.
    Body bytes above 0x7f are stored as latin-1 code points."""
    encoded = row.get("raw_request_b64")
    if isinstance(encoded, str) and encoded:
        return base64.b64decode(encoded)
    if "autocomplete_headers" not in row:
        return b""
    headers = [(str(k), str(v)) for k, v in row.get("headers") or []]  # type: ignore[attr-defined]
    text = str(row.get("body") or "")
    try:
        body = text.encode("latin-1")
    except UnicodeEncodeError:
        body = text.encode("utf-8")
    if row.get("autocomplete_headers"):
        names = {k.lower() for k, _ in headers}
        if body and "content-length" not in names:
            headers.append(("Content-Length", str(len(body))))
        if "connection" not in names:
            headers.append(("Connection", "close"))
    version = row.get("version")
    line = f"{row.get('method') or 'GET'} {row.get('path') or '/'} {'HTTP/1.1' if version is None else version}"
    head = "\r\n".join([line, *(f"{k}: {v}" for k, v in headers)]) + "\r\n\r\n"
    try:
        return head.encode("latin-1") + body
    except UnicodeEncodeError:
        return head.encode("utf-8") + body


def rate_table(results: dict[str, list[bool]], expect: dict[str, bool]) -> str:
    """A per-category table of block rates, attacks and benign summarised at the end."""
    rows = ["category                         requests  blocked   rate  expect"]
    tot = {True: [0, 0], False: [0, 0]}
    for category in sorted(results):
        blocked = results[category]
        n, b = len(blocked), sum(blocked)
        exp = expect[category]
        tot[exp][0] += n
        tot[exp][1] += b
        rows.append(f"{category[:32]:<32} {n:>8} {b:>8} {100 * b / n:>6.1f}%  {'block' if exp else 'pass'}")
    for exp, label in ((True, "ATTACKS (should block)"), (False, "BENIGN (should pass)")):
        n, b = tot[exp]
        if n:
            rows.append(f"{label:<32} {n:>8} {b:>8} {100 * b / n:>6.1f}%")
    return "\n".join(rows)
