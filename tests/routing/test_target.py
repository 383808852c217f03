"""Request-target normalisation: the ambiguous is refused, the rest normalised (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.routing import BadTarget, normalize_target, split_target


@pytest.mark.parametrize(
    ("raw", "path", "query"),
    [
        (b"/books", "/books", ""),
        (b"/books?limit=2&q=%27x%27", "/books", "limit=2&q=%27x%27"),
        (b"/a//b///c", "/a/b/c", ""),
        (b"/a/./b/../c", "/a/c", ""),
        (b"/%61dmin", "/admin", ""),
        (b"/a/%7euser", "/a/~user", ""),
        (b"/a/%c3%a9", "/a/%C3%A9", ""),
        (b"/admin;jsessionid=1/x", "/admin/x", ""),
        (b"/books/", "/books/", ""),
        (b"/a/b/..", "/a/", ""),
    ],
)
def test_normalised(raw: bytes, path: str, query: str) -> None:
    """Unreserved escapes are decoded, dot segments resolved, empty segments and ;params dropped."""
    assert normalize_target(raw) == (path, query)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"/admin/..%2fpublic", 400),
        (b"/a/%2F", 400),
        (b"/a/%5c..", 400),
        (b"/%2e%2e/admin", 400),
        (b"/a/%2E/b", 400),
        (b"/a/%00", 400),
        (b"/../etc/passwd", 400),
        (b"/a\\..\\b", 400),
        (b"/a b", 400),
        (b"/a%zz", 400),
        (b"/a%2", 400),
        (b"http://evil.test/a", 400),
        (b"*", 400),
        (b"/a#frag", 400),
        (b"/" + b"a" * 9000, 414),
    ],
)
def test_refused(raw: bytes, status: int) -> None:
    """Targets that could route differently upstream are refused, with a message that echoes nothing."""
    with pytest.raises(BadTarget) as info:
        normalize_target(raw)
    assert info.value.status == status
    assert raw.decode("latin-1") not in info.value.detail


#: The bytes RFC 3986 allows literally in a path (pchar, "/", and "%" for escapes).
PATH_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%")


@pytest.mark.parametrize("byte", range(256))
def test_each_byte_is_taken_or_refused_as_the_rfc_says(byte: int) -> None:
    """Every one of the 256 byte values, alone in a path segment and in a query: taken exactly
    when the RFC's set allows it literally (the query: printable ASCII but space and '#';
    '?' only starts the query), refused with 400 otherwise, nothing in between."""
    char = bytes([byte])
    cases = [(b"/a?x=" + char, 0x21 <= byte <= 0x7E and byte != ord("#"))]
    if byte not in b"%;":  # an escape, or params: judged by their own rules (test_refused)
        cases.append((b"/a" + char + b"b", byte in PATH_BYTES or byte == ord("?")))  # '?' starts the query
    for raw, allowed in cases:
        if allowed:
            split_target(raw)
            continue
        with pytest.raises(BadTarget) as info:
            split_target(raw)
        assert info.value.status == 400


@given(st.binary(max_size=300))
def test_fuzz_never_crashes_and_output_is_canonical(raw: bytes) -> None:
    """Any bytes either fail with BadTarget or give a path with no dot segments, empty segments or '%2F'."""
    try:
        path, _ = normalize_target(b"/" + raw)
    except BadTarget:
        return
    segments = path.split("/")[1:]
    assert path.startswith("/")
    assert "//" not in path
    assert all(s not in (".", "..") for s in segments)
    assert "%2F" not in path.upper() and "\\" not in path
    # Normalising twice changes nothing.
    assert normalize_target(path.encode())[0] == path


@pytest.mark.parametrize(
    ("raw", "path", "matrix"),
    [
        (b"/items/;color=blue,green", "/items", "/items/;color=blue,green"),
        (b"/items/;color=blue;color=green?q=1", "/items", "/items/;color=blue;color=green"),
        (b"/items/;id=5/details", "/items/details", "/items/;id=5/details"),
        (b"/a;x=1/b;y=2/", "/a/b/", "/a;x=1/b;y=2/"),
        (b"/a//;c=x//b", "/a/b", "/a/;c=x/b"),
        (b"/items/;c=%41%3b%2c", "/items", "/items/;c=A%3B%2C"),  # escapes as in the path
        (b"/%61/;c=x/b/..", "/a/", "/a/;c=x/"),
        # A '..' takes the segment before it and the ;params-only segments after that one.
        (b"/items/;color=x/../admin", "/admin", None),
        (b"/items/x;color=1/../admin", "/items/admin", None),
        (b"/public/..;/admin", "/admin", None),
        # ;params the path itself would be refused for give no matrix form (and no error).
        (b"/items/;c=a%2Fb", "/items", None),
        (b"/items/;c=a%5c", "/items", None),
        (b"/items/;c=%00", "/items", None),
        (b"/items/;c=%zz", "/items", None),
        (b"/items/x", "/items/x", None),
        (b"/items/%3Bc=x", "/items/%3Bc=x", None),  # an encoded ';' is not a parameter
    ],
)
def test_matrix_form(raw: bytes, path: str, matrix: str | None) -> None:
    """Beside the normalised path (;params dropped), a path with ;params has a matrix form
    that keeps them, normalised and with dot segments resolved alike; none when the
    ;params hold an escape that is refused in a path, or when there are none to keep."""
    got_path, _, got_matrix = split_target(raw)
    assert (got_path, got_matrix) == (path, matrix)


def _without_params(matrix: str) -> str:
    """A matrix form with its ;params dropped: the normalised path it was built beside."""
    trailing = matrix.endswith("/") and matrix != "/"
    segments = [s.partition(";")[0] for s in matrix.split("/")[1:]]
    kept = [s for s in segments if s]
    return "/" + "/".join(kept) + ("/" if trailing and kept else "")


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", ";x=1", "a;y", ";", "%41", ";c=%2f", "..;z", "b;c=,"]),
                max_size=12), st.booleans())
def test_matrix_form_is_the_normalised_path_with_params(segments: list[str], trailing: bool) -> None:
    """Dropping the ;params (and the segments made only of them) from the matrix form gives
    the normalised path back: the two never disagree on the segments routed on."""
    raw = ("/" + "/".join(segments) + ("/" if trailing else "")).encode()
    try:
        path, _, matrix = split_target(raw)
    except BadTarget:
        return
    assert normalize_target(raw)[0] == path
    if matrix is not None:
        assert ";" in matrix and ".." not in matrix.split("/")
        assert "%2F" not in matrix.upper()
        assert _without_params(matrix) == path
