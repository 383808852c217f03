"""Object-level authorization: the value a request names an object by, and whose it is.

An ownership rule names where a request carries the owner (or the object's id): a path
parameter (decoded by the router), a query parameter (percent-decoded; given twice with
different values it is refused, since backends disagree on which one wins), or a field of
the JSON body. The principal's side is one of its identifiers or claims, chosen at load.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from bastion.types import Principal, Request

#: Which of the principal's identifiers an ``equals`` names.
CONSUMER_NAME = 0
CONSUMER_ID = 1
CLAIM = 2


class PrincipalValue:
    """``principal.consumer``, ``principal.consumer_id``, ``principal.sub`` or ``claim:NAME``,
    compiled once."""

    __slots__ = ("claim", "kind", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.claim = ""
        if text == "principal.consumer":
            self.kind = CONSUMER_NAME
        elif text == "principal.consumer_id":
            self.kind = CONSUMER_ID
        else:
            self.kind = CLAIM
            self.claim = "sub" if text == "principal.sub" else text.removeprefix("claim:")

    def of(self, principal: Principal) -> str | None:
        """The principal's value; ``None`` when it has none (it then owns nothing)."""
        if self.kind == CONSUMER_NAME:
            return principal.consumer_name or None
        if self.kind == CONSUMER_ID:
            return principal.consumer_id or None
        value = principal.claims.get(self.claim)
        if isinstance(value, str):
            return value or None
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # numeric ids in claims ("user_id": 42) compare as the path's text
        return None


def query_value(query: str, name: str) -> str | None:
    """The value of the query parameter ``name``; ``None`` when absent, or when it is given
    more than once with different values (parameter pollution: refused, never guessed).
    Names are compared case-insensitively, as some frameworks bind them."""
    wanted = name.lower()
    if wanted not in query.lower() and "%" not in query:
        return None  # cheap exit: the name cannot be there, even encoded
    found: str | None = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() == wanted:
            if found is not None and found != value:
                return None
            found = value
    return found


def request_value(request: Request, param: str, where: str) -> str | None:
    """The value of ``param`` in the request's path or query (the body is read elsewhere)."""
    if where == "path":
        return request.path_params.get(param)
    return query_value(request.query, param)


def body_value(value: object, path: str) -> str | None:
    """The text of the JSON body's field at the dotted ``path``; ``None`` when absent or not
    a string or integer (an object or a list names no owner)."""
    node = value
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    if isinstance(node, str):
        return node
    if isinstance(node, int) and not isinstance(node, bool):
        return str(node)
    return None
