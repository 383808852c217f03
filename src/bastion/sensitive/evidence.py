"""What an exchange's record may say about the request: stages leave evidence in it (a
detection hit's snippet of the input, a validation message), and the record goes to every
sink (the access log, the audit log). :class:`EvidenceRedactor` cleans that evidence once,
as the record is built, so that no sink ever sees:

* the value of a credential header (``Authorization``, ``Proxy-Authorization``, ``Cookie``,
  ``Set-Cookie``, ``X-API-Key``), of any cookie, or of a parameter or field whose name says
  it is a secret (``password``, ``token``, ``client_secret``, ...: :data:`SECRET_NAMES`), in
  the query string, a form, a JSON body or anywhere else;
* the value of a field the configuration names (``access_log.redact_fields``: names or JSON
  paths such as ``user.ssn``);
* a secret, key, token, card number or other sensitive value (:mod:`bastion.sensitive`) in
  any text the evidence carries, wherever it came from: masked to its last four characters.

The record never carries request headers or the query string themselves (only the path);
this covers what the stages quote from them. Work is done only for records with evidence
(most have none), off no hot path but the record's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from bastion.sensitive.replace import mask
from bastion.sensitive.scanner import Scanner, _candidates

#: What a value at a secret location becomes in the record.
REDACTED: Final = "[REDACTED]"
_REDACTED_BYTES: Final = REDACTED.encode()
#: Request and response headers whose values are credentials.
CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})
#: Names of parameters and fields whose values are secrets wherever they appear.
SECRET_NAMES: Final = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "api-key",
        "x-api-key",
        "code",
        "code_verifier",
        "otp",
        "session",
        "sessionid",
        "private_key",
        "credentials",
        *CREDENTIAL_HEADERS,
    }
)
#: Keys of an evidence entry that describe where or what, never the value itself.
_DESCRIPTIVE: Final = frozenset({"location", "category", "severity"})
#: The kinds masked in any evidence text.
EVIDENCE_TYPES: Final = ("secrets", "phantom_token", "jwt", "password_hash", "card", "ssn", "iban")
#: Splits a location (``json:user.password``, ``header 'authorization'``) into its names.
_NAMES: Final = re.compile(r"[^a-z0-9_\-]+")
#: The name and ``=`` of a ``name=value`` pair in a query string or form quoted whole, for
#: hyperscan (RE2 where it cannot load): never Python's ``re`` over text quoted from a
#: request. Reported from the start of the run of name characters before the ``=`` (leftmost
#: start), so a name starts only where a run starts, and the search is linear.
_PAIR_NAME: Final = r"[A-Za-z0-9_\-.\[\]]+="
#: The ASCII bytes a pair's value stops at: ``&``, ``;``, quotes and whitespace (as ``str.isspace``
#: says, as the earlier ``re`` pattern's ``\s`` did; other whitespace is looked up by character).
_VALUE_ENDS: Final = frozenset(b"&;\"'") | frozenset(b for b in range(128) if chr(b).isspace())
_EQUALS: Final = ord("=")


class TrustedText(str):
    """Evidence text a stage built from its own values alone (a rate limit's names and
    numbers: ``"per-ip";r=99;t=60``), with no request text in it: :meth:`EvidenceRedactor.facts`
    keeps it as it is, without searching it. Only a stage's code makes one, at the fact's
    construction; nothing read from a request ever is one."""

    __slots__ = ()


class PairFinder:
    r"""``name=value`` pairs in UTF-8 text, as the pattern
    ``(?<![A-Za-z0-9_\-.\[\]])([A-Za-z0-9_\-.\[\]]+)=([^&;\s"']*)`` finds them (leftmost first,
    none overlapping): hyperscan finds each name and its ``=``, a walk finds the value's end."""

    def __init__(self, prefer: str = "hyperscan") -> None:
        self._candidates = _candidates([_PAIR_NAME], [True], prefer)

    def pairs(self, raw: bytes) -> list[tuple[int, int, int]]:
        """``(name start, position of the =, value end)`` of each pair in ``raw``."""
        out: list[tuple[int, int, int]] = []
        pos = 0
        for _, start, end in self._candidates.scan(raw):
            # RE2 also reports every shorter end of a match: only an end at the = is one.
            if start < pos or raw[end - 1] != _EQUALS:
                continue
            stop = _value_end(raw, end)
            out.append((start, end - 1, stop))
            pos = stop
        return out


def _value_end(raw: bytes, i: int) -> int:
    """Where the value starting at ``raw[i]`` stops: at ``&``, ``;``, a quote or whitespace."""
    n = len(raw)
    while i < n:
        byte = raw[i]
        if byte < 0x80:
            if byte in _VALUE_ENDS:
                return i
            i += 1
            continue
        width = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        if raw[i : i + width].decode("utf-8", "surrogatepass").isspace():
            return i
        i += width
    return i


def _names(text: str) -> list[str]:
    return [n for n in _NAMES.split(text.lower()) if n]


class EvidenceRedactor:
    """Built once from the configured field names and paths; :meth:`facts` per record."""

    def __init__(self, fields: list[str] | tuple[str, ...] = ()) -> None:
        self._paths: tuple[tuple[str, ...], ...] = tuple(tuple(_names(f)) for f in fields if _names(f))
        self._single: frozenset[str] = SECRET_NAMES | frozenset(p[0] for p in self._paths if len(p) == 1)
        self._scanner = Scanner(list(EVIDENCE_TYPES))
        self._pairs = PairFinder()
        #: Every word a secret location can be made of: a text holding none of them (lowercased)
        #: has no secret-named pair, and skips the pair search (a rate limit's fact, on every request).
        self._words: tuple[str, ...] = tuple(sorted(self._single | {"cookie"} | {n for p in self._paths for n in p}))
        #: Whether a location is secret, by location (names repeat: a bounded memo).
        self._memo: dict[str, bool] = {}

    def facts(self, facts: Mapping[str, object]) -> dict[str, object]:
        """The stages' facts with every secret value replaced (a new dict; ``facts`` is not changed)."""
        return {name: self._value(value, False) for name, value in facts.items()}

    def secret_location(self, location: str) -> bool:
        """Whether a value found at ``location`` (as the stages name it) is a secret."""
        known = self._memo.get(location)
        if known is not None:
            return known
        names = _names(location)
        secret = bool(names) and (
            names[0] == "cookie"  # a cookie's value ('cookie-name' is its name)
            or any(n in self._single for n in names[1:] or names)
            or any(_contains(names, path) for path in self._paths if len(path) > 1)
        )
        if len(self._memo) < 4096:
            self._memo[location] = secret
        return secret

    def _value(self, value: object, secret: bool) -> object:
        if isinstance(value, TrustedText):
            return value
        if isinstance(value, str):
            return REDACTED if secret else self.text(value)
        if isinstance(value, dict):
            location = value.get("location")
            inner = secret or (isinstance(location, str) and self.secret_location(location))
            return {k: (v if k in _DESCRIPTIVE else self._value(v, inner)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._value(v, secret) for v in value]
        return value

    def text(self, text: str) -> str:
        """``text`` with sensitive values masked and the values of secret-named pairs
        (``token=...`` in a quoted query string) replaced."""
        raw = text.encode("utf-8", "surrogatepass")
        if "=" in text and self._may_name_secret(text):
            paired = self._replace_pairs(raw)
            if paired is not raw:
                raw = paired
                text = raw.decode("utf-8", "surrogatepass")
        found = self._scanner.find(raw)
        if not found:
            return text
        out: list[bytes] = []
        pos = 0
        for f in found:
            out.append(raw[pos : f.start])
            out.append(mask(raw[f.start : f.end]))
            pos = f.end
        out.append(raw[pos:])
        return b"".join(out).decode("utf-8", "surrogatepass")

    def _may_name_secret(self, text: str) -> bool:
        low = text.lower()
        return any(word in low for word in self._words)

    def _replace_pairs(self, raw: bytes) -> bytes:
        """``raw`` with the value of every secret-named pair replaced."""
        out: list[bytes] = []
        pos = 0
        for start, equals, stop in self._pairs.pairs(raw):
            if stop > equals + 1 and self.secret_location(raw[start:equals].decode("ascii")):
                out.append(raw[pos : equals + 1])
                out.append(_REDACTED_BYTES)
                pos = stop
        if not out:
            return raw
        out.append(raw[pos:])
        return b"".join(out)


def _contains(names: list[str], path: tuple[str, ...]) -> bool:
    """Whether ``path`` occurs in ``names`` as consecutive names."""
    n = len(path)
    return any(tuple(names[i : i + n]) == path for i in range(len(names) - n + 1))
