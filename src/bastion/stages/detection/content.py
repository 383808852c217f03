"""What a free-text field of a JSON body holds, as the API's OpenAPI document says.

A snippet API's ``code`` field carries shell lines and SQL; a blog's ``body`` carries
markdown with code blocks; a CMS stores HTML. The rules that refuse ``; rm -rf /tmp/x``
in a search box refuse them too. A schema property may say what it holds, and its value
is then inspected with the rules that make sense for it::

    properties:
      code: {type: string, x-bastion-content: code}
      body: {type: string, format: commonmark}        # the OpenAPI format registry's name
      page: {type: string, contentMediaType: text/html}

Each kind turns off, for that field's value only, the categories whose interpreter such a
value never reaches (:data:`OFF`); its key, every other field and every other input keep
all the rules. The map is built once per route at load (:func:`content_map`).
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

from bastion.errors import PolicyError
from bastion.stages.detection.rules import Category

ContentKind = Literal["prose", "markdown", "code", "html", "graphql"]
CONTENT_KINDS: tuple[ContentKind, ...] = get_args(ContentKind)
#: The schema keyword naming a property's content kind.
KEYWORD = "x-bastion-content"

#: What each kind turns off, and why:
#:
#: - every kind: ``cmdi``, ``path_traversal``, ``rfi``, ``ldapi``, ``mail_header``, ``crlf``.
#:   A paragraph, an article, a snippet or a page is stored and shown; no API passes one
#:   as a shell command, a file name, an include, an LDAP filter or a header.
#: - ``markdown``, ``code``, ``html``: also ``sqli`` and ``nosqli``. Such a field's own
#:   users send quotes, semicolons, ``--`` and ``SELECT``; an API that built a query by
#:   pasting it in would fail on their ordinary values, so it binds it as a parameter. SQL
#:   injection into the API's own queries stays inspected everywhere else (other fields,
#:   query parameters, keys). ``markdown`` and ``code`` also turn off ``ssrf``: a tutorial
#:   links ``http://localhost:8080``, and neither is fetched (prose is: link previews).
#: - ``code``: also ``xss``, ``ssti``, ``xxe``, ``ssi`` and ``recon`` (the code's own
#:   language: a React component, a Jinja template, an XML file, a scanner's script), so
#:   only ``jndi`` is left: a Log4j lookup fires in whatever logs the value, whatever it is.
#:   A code field must be shown escaped (as code), which is what makes markup in it inert.
#: - ``html``: markup is what is stored, and shown as HTML: ``xss`` stays on (that is where
#:   a script runs), as do ``ssti``, ``ssi`` and ``ssrf`` (a page rendered to PDF fetches
#:   its images).
#: - ``graphql``: the field is a GraphQL document; its syntax is not inspected, its string
#:   values and comments are, with every rule (see :mod:`.graphql`). Nothing is turned off.
_NOT_A_COMMAND: frozenset[Category] = frozenset({"cmdi", "path_traversal", "rfi", "ldapi", "mail_header", "crlf"})
OFF: dict[str, frozenset[Category]] = {
    "prose": _NOT_A_COMMAND,
    "markdown": _NOT_A_COMMAND | {"sqli", "nosqli", "ssrf"},
    "code": _NOT_A_COMMAND | {"sqli", "nosqli", "ssrf", "xss", "ssti", "xxe", "ssi", "recon"},
    "html": _NOT_A_COMMAND | {"sqli", "nosqli"},
    "graphql": frozenset(),
    # Not a schema's kind: the inspector marks an upload's file name so (see FILE_NAME).
    "file-name": frozenset(),
    # Nor this one: the browser's own page address (see PAGE_ADDRESS).
    "page-address": frozenset({"ssrf"}),
    # Nor this one: a path of name characters only (see PATH_NAMES).
    "path-names": frozenset({"xss"}),
}
#: The content of an upload's file name (a multipart part's ``filename``, an ``X-Filename``
#: header), set by the inspector: every rule applies, and the upload-name rule too.
FILE_NAME: Final = "file-name"
#: The content of the ``Referer`` and ``Origin`` headers, set by the inspector: the address
#: of the page that sent the request, which the browser writes and no server fetches. A page
#: served from ``http://localhost:3000`` (every front-end in development) is not a request
#: to reach the gateway's loopback, so ``ssrf`` is off there; every other rule applies.
PAGE_ADDRESS: Final = "page-address"
#: The content of a path made of name characters only (letters, digits, ``-._~`` and ``/``),
#: set by the inspector: such a path cannot open a tag, call, assign or quote, so what it
#: names is not script, whatever it names (a manual's ``/docs/dom/document.cookie``, a
#: wiki's ``/wiki/Window.location``); ``xss`` is off there. A path with anything else (``%``,
#: ``(``, ``=``, ``<``, ``:``...) keeps every rule.
PATH_NAMES: Final = "path-names"
#: The headers whose value is the sending page's address.
PAGE_ADDRESS_HEADERS: Final = frozenset({"referer", "origin"})
#: Standard hints: the OpenAPI format registry's ``commonmark`` and ``html`` formats, and
#: JSON Schema's ``contentMediaType``.
_FORMATS: dict[str, ContentKind] = {"commonmark": "markdown", "html": "html"}
_MEDIA_TYPES: dict[str, ContentKind] = {
    "text/markdown": "markdown",
    "text/html": "html",
    "application/graphql": "graphql",
}
#: Schemas nest at most this deep (deeper properties keep every rule).
_MAX_DEPTH = 32


class ContentMap:
    """One level of a JSON body's shape: the kind of a string here (``""``: none), and the
    maps of its properties and of its array items."""

    __slots__ = ("items", "kind", "properties")

    def __init__(self) -> None:
        self.kind = ""
        self.properties: dict[str, ContentMap] = {}
        self.items: ContentMap | None = None

    def __repr__(self) -> str:
        return f"ContentMap(kind={self.kind!r}, properties={self.properties!r}, items={self.items!r})"

    def child(self, key: str) -> ContentMap | None:
        """The map of property ``key`` (``None``: nothing declared below)."""
        return self.properties.get(key)

    @property
    def empty(self) -> bool:
        return not self.kind and not self.properties and self.items is None


def content_map(operation: dict[str, Any] | None, document: dict[str, Any] | None) -> ContentMap | None:
    """The content kinds declared in the JSON request bodies of ``operation``; ``None``
    when it declares none. :class:`PolicyError` naming the media type and the property for
    an unknown kind (the loader adds the file and the operation)."""
    if operation is None:
        return None
    doc = document or {}
    body = _resolve(doc, operation.get("requestBody"))
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, dict):
        return None
    root = ContentMap()
    for media, spec in content.items():
        if "json" in str(media).lower() and isinstance(spec, dict):
            _walk(doc, spec.get("schema"), root, f"request body {media}", 0, ())
    return None if root.empty else root


def _resolve(doc: dict[str, Any], node: Any, seen: tuple[str, ...] = ()) -> Any:
    """Follow local ``$ref`` chains (others, and cycles, resolve to nothing)."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref: str = node["$ref"]
        if not ref.startswith("#/") or ref in seen:
            return None
        seen = (*seen, ref)
        target: Any = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        node = target
    return node


def _walk(doc: dict[str, Any], schema: Any, into: ContentMap, where: str, depth: int, refs: tuple[int, ...]) -> None:
    node = _resolve(doc, schema)
    if not isinstance(node, dict) or depth > _MAX_DEPTH or id(node) in refs:
        return
    refs = (*refs, id(node))
    kind = _kind(node, where)
    if kind:
        into.kind = kind
    for combinator in ("allOf", "anyOf", "oneOf"):
        branches = node.get(combinator)
        if isinstance(branches, list):
            for branch in branches:
                _walk(doc, branch, into, where, depth + 1, refs)
    properties = node.get("properties")
    if isinstance(properties, dict):
        for name, sub in properties.items():
            child = into.properties.get(str(name)) or ContentMap()
            _walk(doc, sub, child, f"{where}, property {name!r}", depth + 1, refs)
            if not child.empty:
                into.properties[str(name)] = child
    items = node.get("items")
    if isinstance(items, dict):
        child = into.items or ContentMap()
        _walk(doc, items, child, f"{where}, array items", depth + 1, refs)
        if not child.empty:
            into.items = child


def _kind(node: dict[str, Any], where: str) -> ContentKind | None:
    declared = node.get(KEYWORD)
    if declared is not None:
        if declared not in CONTENT_KINDS:
            kinds = ", ".join(CONTENT_KINDS)
            raise PolicyError(f"{where}: {KEYWORD} must be one of {kinds}, not {declared!r}")
        kind: ContentKind = declared
        return kind
    media = node.get("contentMediaType")
    if isinstance(media, str):
        found = _MEDIA_TYPES.get(media.split(";", 1)[0].strip().lower())
        if found is not None:
            return found
    fmt = node.get("format")
    return _FORMATS.get(fmt) if isinstance(fmt, str) else None
