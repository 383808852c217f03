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


@pytest.fixture
def matrix_router() -> Router[str]:
    """``{color}`` and ``{id}`` are matrix-style; ``/items`` and ``/items/{name}`` are not."""
    r: Router[str] = Router()
    r.add("/items", ["GET"], "items")
    r.add("/items/{name}", ["GET"], "item")
    r.add("/items/{color}", ["GET"], "by-color", matrix={"color"})
    r.add("/things/{id}/details", ["GET", "HEAD"], "details", matrix={"id"})
    r.add("/files/f{id}.json", ["GET"], "file", matrix={"id"})
    return r


def test_matrix_parameter_takes_the_raw_segment(matrix_router: Router[str]) -> None:
    """A matrix-style parameter matches a ``;name=value`` segment of the matrix form, raw
    (validation splits it before decoding), and the match carries the path to forward."""
    m = matrix_router.match("h", "/items", "GET", "/items/;color=blue,gr%C3%BCn")
    assert m == Match("by-color", {"color": ";color=blue,gr%C3%BCn"}, "/items/;color=blue,gr%C3%BCn")
    m = matrix_router.match("h", "/things/details", "GET", "/things/;id=5/details")
    assert m == Match("details", {"id": ";id=5"}, "/things/;id=5/details")
    m = matrix_router.match("h", "/files/f.json", "GET", "/files/f;id=5.json")
    assert m == Match("file", {"id": ";id=5"}, "/files/f;id=5.json")


def test_other_segments_of_a_matrix_route_drop_their_params(matrix_router: Router[str]) -> None:
    """On a matrix route, ``;params`` of the other segments are dropped from the path to
    forward, as everywhere else: only the matrix segment goes upstream as sent."""
    m = matrix_router.match("h", "/things/details", "GET", "/things;jsessionid=1/;id=5/details;x=2")
    assert m == Match("details", {"id": ";id=5"}, "/things/;id=5/details")


def test_matrix_templates_need_params(matrix_router: Router[str]) -> None:
    """Without ;params (no matrix form), or with a segment that is not ``;...``, a matrix
    template does not match: the normalised path is routed as before."""
    m = matrix_router.match("h", "/items/blue", "GET")
    assert m == Match("item", {"name": "blue"})
    assert matrix_router.match("h", "/things/5/details", "GET") is None
    assert matrix_router.match("h", "/items", "GET") == Match("items", {})
    # An encoded ';' is data of a plain segment, never a matrix parameter.
    assert matrix_router.match("h", "/items/%3Bcolor=x", "GET") == Match("item", {"name": ";color=x"})


def test_leftover_params_only_segment_falls_back_to_the_normalised_path(matrix_router: Router[str]) -> None:
    """A ``;params``-only segment no matrix parameter takes is not skipped in the matrix
    search: the request is routed on the normalised path, where it is dropped (as without
    matrix routes), and forwarded without it."""
    m = matrix_router.match("h", "/items", "GET", "/items/;color=x/;y=1")
    assert m == Match("items", {})
    m = matrix_router.match("h", "/items/a", "GET", "/items/;x=1/a")
    assert m == Match("item", {"name": "a"})


def test_matrix_route_method_not_allowed(matrix_router: Router[str]) -> None:
    """A matrix template without the method gives 405 with its methods, unless the
    normalised path has a route with the method."""
    assert matrix_router.match("h", "/things/details", "DELETE", "/things/;id=5/details") == ["GET", "HEAD"]
    assert matrix_router.match("h", "/items", "DELETE", "/items/;color=x") == ["GET"]


def test_matrix_and_plain_templates_stay_apart() -> None:
    """One template, matrix for one method and simple for another: each method finds its own."""
    r: Router[str] = Router()
    r.add("/items/{id}", ["GET"], "get", matrix={"id"})
    r.add("/items/{id}", ["DELETE"], "delete")
    assert r.match("h", "/items", "GET", "/items/;id=1") == Match("get", {"id": ";id=1"}, "/items/;id=1")
    assert r.match("h", "/items/1", "DELETE") == Match("delete", {"id": "1"})
    assert r.match("h", "/items/1", "GET") == ["DELETE"]
