"""Fuzz the normaliser's decoders and the SSRF host parsers: any text, no exception, bounded output.

Run: ``python -m tests.fuzz.fuzz_normalize [libFuzzer flags] CORPUS_DIR`` (an empty or missing
directory is filled with seeds first).
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["bastion"]):
    from bastion.stages.detection import ssrf
    from bastion.stages.detection.normalize import (
        MAX_VIEW_CHARS,
        MAX_VIEWS,
        WINDOW_OVERLAP,
        base64_text,
        collapse_lookups,
        collapse_whitespace,
        js_unescape,
        strip_short_tags,
        strip_sql_comments,
        truncate_wide,
        url_decode,
        views,
        windows,
    )

from tests.fuzz.codec import Reader
from tests.fuzz.harness import main
from tests.fuzz.seeds import normalize_seeds

#: Longest value built by amplification (a few windows' worth).
MAX_AMPLIFIED = 4 * MAX_VIEW_CHARS


class Broken(AssertionError):
    """An invariant of the normaliser does not hold."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise Broken(what)


def read_value(data: bytes) -> str:
    r = Reader(atheris.FuzzedDataProvider(data))
    value = r.text()
    times = r.choice(256)
    if times > 200 and value:
        # Amplification: a short input stands for a long value (windows, caps, time).
        value = (value * (MAX_AMPLIFIED // len(value) + 1))[: (times - 200) * MAX_AMPLIFIED // 55]
    return value


def check_views(value: str) -> None:
    for decode_base64 in (True, False):
        out = views(value, decode_base64=decode_base64)
        _check(1 <= len(out) <= MAX_VIEWS, f"views() gave {len(out)} views")
        _check(all(isinstance(v, str) and len(v) <= MAX_VIEW_CHARS for v in out), "a view is too long")
        _check(out[0] == value[:MAX_VIEW_CHARS], "the raw value is not the first view")
        _check(len(set(out)) == len(out), "views() gave a view twice")


def check_windows(value: str) -> None:
    out = windows(value)
    _check(all(len(w) <= MAX_VIEW_CHARS for w in out), "a window is too long")
    if len(value) <= MAX_VIEW_CHARS:
        _check(out == [value], "a short value is not its own window")
        return
    step = MAX_VIEW_CHARS - WINDOW_OVERLAP
    _check(all(w == value[i * step : i * step + MAX_VIEW_CHARS] for i, w in enumerate(out)), "misplaced window")
    _check((len(out) - 1) * step + len(out[-1]) == len(value), "the windows do not reach the end of the value")


def check_decoders(value: str) -> None:
    for name, decoded in (
        ("url_decode", url_decode(value)),
        ("js_unescape", js_unescape(value)),
        ("strip_sql_comments", strip_sql_comments(value, " ")),
        ("strip_sql_comments", strip_sql_comments(value, "")),
        ("strip_short_tags", strip_short_tags(value)),
        ("collapse_whitespace", collapse_whitespace(value)),
        ("collapse_lookups", collapse_lookups(value)),
        ("truncate_wide", truncate_wide(value)),
    ):
        # Every pass decodes or removes: none may grow its input.
        _check(isinstance(decoded, str) and len(decoded) <= len(value), f"{name}() grew its input")
    text = base64_text(value)
    _check(text is None or (isinstance(text, str) and len(text) <= len(value)), "base64_text() grew its input")


def check_ssrf(value: str) -> None:
    hosts = ssrf.urls_in(value)
    _check(len(hosts) <= 8 and all(isinstance(h, str) for h in hosts), "urls_in() gave too many hosts")
    _check(isinstance(ssrf.check_ssrf(value), bool), "check_ssrf() is not a bool")
    _check(isinstance(ssrf.check_bare_encoded_host(value), bool), "check_bare_encoded_host() is not a bool")
    for host in (value[:300], *hosts):
        ssrf.parse_ipv4_loose(host)
        ssrf.internal_address(host)
        _check(isinstance(ssrf.host_is_internal(host), bool), "host_is_internal() is not a bool")


def check(data: bytes) -> None:
    value = read_value(data)
    check_views(value)
    check_windows(value)
    # The matcher runs the decoders and the SSRF parser on views, which are at most a
    # window long: so do we (a longer value only multiplies linear work).
    window = value[:MAX_VIEW_CHARS]
    check_decoders(window)
    check_ssrf(window)


if __name__ == "__main__":
    main(check, normalize_seeds)
