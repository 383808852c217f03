"""Request-target normalisation: the ambiguous is refused, the rest normalised (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.routing import BadTarget, normalize_target


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
