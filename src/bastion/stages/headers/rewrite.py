"""The ``headers`` stage's per-response work, compiled with mypyc (``setup.py``).

The stage class derives from the interpreted ``ResponseStage`` and stays interpreted; its
:class:`HeaderRewrite` is what the chain calls on every response of every route (the stage
is on by default), with no interpreted frame in between.
"""

from __future__ import annotations

from bastion.types import Block, Exchange, HeaderList


class HeaderRewrite:
    """The stage's lists, worked out once at load, and its response hook."""

    __slots__ = ("drop", "drop_prefixes", "drop_signed_in", "missing", "missing_signed_in", "replace",
                 "replace_signed_in")

    def __init__(
        self,
        drop: frozenset[str],
        replace: list[tuple[str, str]],
        missing: list[tuple[str, str]],
        drop_prefixes: tuple[str, ...],
        signed_in: tuple[frozenset[str], list[tuple[str, str]], list[tuple[str, str]]],
    ) -> None:
        self.drop = drop
        self.replace = replace
        self.missing = missing
        self.drop_prefixes = drop_prefixes
        #: The same lists for authenticated responses (the route's Cache-Control in place).
        self.drop_signed_in, self.replace_signed_in, self.missing_signed_in = signed_in

    def on_response(self, exchange: Exchange) -> Block | None:
        """Rewrite ``exchange.response``'s headers; never blocks."""
        response = exchange.response
        if response is None:
            return None
        if exchange.principal is None:
            response.headers = rewrite_headers(response.headers, self.drop, self.replace, self.missing,
                                               self.drop_prefixes)
        else:
            response.headers = rewrite_headers(response.headers, self.drop_signed_in, self.replace_signed_in,
                                               self.missing_signed_in, self.drop_prefixes)
        return None


def rewrite_headers(
    headers: HeaderList,
    drop: frozenset[str],
    replace: list[tuple[str, str]],
    add_if_missing: list[tuple[str, str]],
    drop_prefixes: tuple[str, ...] = (),
) -> HeaderList:
    """``headers`` without the names in ``drop`` or starting with one of ``drop_prefixes``,
    then ``add_if_missing`` for names absent, then ``replace`` (whose names are in ``drop``,
    so they appear once)."""
    out: HeaderList = []
    for header in headers:
        name = header[0]
        if name in drop or (drop_prefixes and name.startswith(drop_prefixes)):
            continue
        out.append(header)
    if add_if_missing:
        present = {k for k, _ in out}
        for header in add_if_missing:
            if header[0] not in present:
                out.append(header)
    out.extend(replace)
    return out
