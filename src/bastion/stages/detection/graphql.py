"""GraphQL documents as detection sees them: their string values and comments, not their syntax.

A GraphQL query is full of what reads as an attack to rules written for values: braces,
a field name alone on a line (``id``), parentheses after a word, ``#`` comments. What a
client can put there that a resolver passes on to a database, a shell or a page is in the
document's string literals (argument values, variable defaults, directive arguments) and
its variables (inspected with the rest of a JSON body); names and numbers are made of
letters, digits and ``_`` only. So an executable document is inspected as its strings,
plus its comments (which carry nothing for GraphQL, but may for whatever else reads the
text), plus the one piece of syntax that is itself a sign of reconnaissance: a meta-field
of introspection (``__schema {``, ``__type(name:``), written as the document has it.

Anything that does not parse as an executable document (operations and fragments only)
is inspected whole, as any other value: refusing malformed GraphQL is the GraphQL
route's business, not detection's.
"""

from __future__ import annotations

from graphql import GraphQLSyntaxError, parse
from graphql.language import ExecutableDefinitionNode, TokenKind

#: Parsing stops past this many tokens (the document is then inspected whole).
MAX_TOKENS = 20_000
#: The first word of an executable document that does not start with a selection set.
_KEYWORDS = ("query", "mutation", "subscription", "fragment")
_TEXT_TOKENS = (TokenKind.STRING, TokenKind.BLOCK_STRING, TokenKind.COMMENT)
#: Meta-fields that read the schema (``__typename``, which clients add everywhere, does not).
_INTROSPECTION = frozenset({"__schema", "__type"})
#: How many tokens after an introspection meta-field are kept with it (``__type(name:``).
_META_TOKENS = 3


def looks_like_graphql(text: str) -> bool:
    """Whether ``text`` starts like an executable GraphQL document (cheap: no parsing)."""
    head = text.lstrip(" \t\r\n,\ufeff")[:12]
    if head[:1] in ("{", "#"):
        return True
    return head.startswith(_KEYWORDS)


def graphql_texts(text: str) -> list[str] | None:
    """The string values and comments of an executable GraphQL document, in order;
    ``None`` when ``text`` is not one (then it is to be inspected as it is)."""
    if not looks_like_graphql(text):
        return None
    try:
        document = parse(text, max_tokens=MAX_TOKENS)
    except (GraphQLSyntaxError, RecursionError):
        return None
    if not all(isinstance(d, ExecutableDefinitionNode) for d in document.definitions):
        return None  # type definitions are a schema, not a request
    loc = document.loc
    texts: list[str] = []
    token = loc.start_token if loc is not None else None
    while token is not None:
        if token.kind in _TEXT_TOKENS and token.value:
            texts.append(token.value)
        elif token.kind == TokenKind.NAME and token.value in _INTROSPECTION:
            end = token
            for _ in range(_META_TOKENS):
                if end.next is None or end.next.kind == TokenKind.EOF:
                    break
                end = end.next
            texts.append(text[token.start : end.end])
        token = token.next
    return texts
