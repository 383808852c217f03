"""Route matching: precedence, parameters, 405 versus 404, hosts (no sockets)."""

from __future__ import annotations

import pytest

from bastion.routing import Match, Router


@pytest.fixture
def router() -> Router[str]:
    r: Router[str] = Router()
    r.add("/books", ["GET", "HEAD", "POST"], "books")
    r.add("/books/{id}", ["GET", "HEAD", "DELETE"], "book")
    r.add("/books/featured", ["GET"], "featured")
    r.add("/files/{name}.json", ["GET"], "file-json")
    r.add("/files/{name}", ["GET"], "file")
    r.add("/static", ["GET"], "static", prefix=True)
    r.add("/admin", ["GET"], "admin-on-host", host="admin.test")
    return r


def test_concrete_path_beats_template(router: Router[str]) -> None:
    """/books/featured is its own route, not /books/{id} with id=featured."""
    m = router.match("api.test", "/books/featured", "GET")
    assert isinstance(m, Match) and m.route == "featured" and m.params == {}


def test_template_parameters_are_decoded(router: Router[str]) -> None:
    """Path parameters are extracted and percent-decoded."""
    m = router.match("api.test", "/books/a%20b", "GET")
    assert isinstance(m, Match) and m.route == "book" and m.params == {"id": "a b"}


def test_segment_with_suffix_is_more_specific(router: Router[str]) -> None:
    """{name}.json matches before {name}, and without the suffix only the plain template matches."""
    m = router.match("h", "/files/report.json", "GET")
    assert isinstance(m, Match) and (m.route, m.params) == ("file-json", {"name": "report"})
    m = router.match("h", "/files/report.txt", "GET")
    assert isinstance(m, Match) and (m.route, m.params) == ("file", {"name": "report.txt"})


def test_method_not_allowed_lists_allowed(router: Router[str]) -> None:
    """A known path with an undeclared method gives the allowed methods (for 405 + Allow)."""
    assert router.match("h", "/books", "DELETE") == ["GET", "HEAD", "POST"]


def test_unknown_path_is_none(router: Router[str]) -> None:
    """No route: None (404). Empty parameters never match."""
    assert router.match("h", "/nope", "GET") is None
    assert router.match("h", "/books/x/y", "GET") is None


def test_prefix_route_matches_subtree_only(router: Router[str]) -> None:
    """A prefix route covers the path and everything under it, not siblings sharing a prefix string."""
    assert isinstance(router.match("h", "/static/css/a.css", "GET"), Match)
    assert isinstance(router.match("h", "/static", "GET"), Match)
    assert router.match("h", "/staticky", "GET") is None


def test_host_specific_routes(router: Router[str]) -> None:
    """A route bound to a host matches only that host (any port, any case)."""
    m = router.match("Admin.Test:8443", "/admin", "GET")
    assert isinstance(m, Match) and m.route == "admin-on-host"
    assert router.match("api.test", "/admin", "GET") is None


def test_duplicate_declaration_is_refused() -> None:
    """Declaring the same method and path twice is an error, not a silent override."""
    r: Router[str] = Router()
    r.add("/a/{x}", ["GET"], "one")
    with pytest.raises(ValueError, match="declared twice"):
        r.add("/a/{y}", ["GET"], "two")
