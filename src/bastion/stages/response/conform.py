"""A proof, from the body's bytes, that the walk (:func:`~bastion.stages.response.prune.prune`)
would remove nothing: one msgspec decode, in C, against types built once per schema at load.

The response stage's usual case is a body that conforms: parsing it with orjson, walking
every member and freeing the tree cost ~100 instructions a byte for no change. msgspec
decodes JSON into typed structs and refuses a member a struct does not declare
(``forbid_unknown_fields``), so a :class:`~bastion.stages.response.prune.Keep` tree becomes a
type that accepts exactly the documents the walk leaves alone:

- an object node (declared members, ``closed``) is a struct of its members, each by its own
  type; a member the walk would remove (undeclared, ``writeOnly``, a ``never_return`` name in
  any case, an escaped spelling of one) is unknown to it;
- an array node is a list of its items' type;
- a node that constrains nothing (``type: string``, ``{}``) takes scalars and lists of
  scalars: an object there may hold a ``never_return`` name, which only the walk finds;
- every node also takes scalars (the walk leaves them as they are).

A body the type refuses, for whatever reason (undeclared member, duplicate spelling, an
object where the proof expected none, not JSON), goes through the walk as before: the proof
only ever skips work whose outcome it knows. A tree that cannot be written so (an object
that allows undeclared members, which the walk still inspects; a recursive schema; one
nested deeper than the walk goes) gets no proof, decided here, at load.

msgspec is at least as strict as orjson on the JSON it accepts (invalid UTF-8, lone
surrogates, ``NaN``, trailing commas, control characters: both refuse; tested), so a body it
accepts is one orjson would have parsed.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import msgspec

from bastion.stages.response.prune import MAX_DEPTH, Keep

#: What a node that constrains nothing takes without the walk: no object can hide there.
_SCALAR: Any = str | int | float | bool | None
_FREE: Any = _SCALAR | list[_SCALAR]


class _Inexpressible(Exception):
    """The tree has a node no msgspec type describes exactly."""


class _Types:
    """The msgspec types of one tree's nodes (shared nodes share their type)."""

    def __init__(self) -> None:
        self.done: dict[int, Any] = {}
        self.open: set[int] = set()
        self.structs = 0

    def of(self, keep: Keep, depth: int) -> Any:
        if depth >= MAX_DEPTH:
            raise _Inexpressible  # the walk refuses deeper documents: it alone must see them
        if _free(keep):
            return _FREE
        known = self.done.get(id(keep))
        if known is not None:
            return known
        if id(keep) in self.open:
            raise _Inexpressible  # recursive: a struct type cannot name itself here
        self.open.add(id(keep))
        parts: list[Any] = []
        if keep.members or keep.closed or keep.hidden or keep.other is not None:
            if not keep.closed:
                raise _Inexpressible  # undeclared members allowed, yet still inspected
            parts.append(self._struct(keep, depth))
        items = keep.items
        parts.append(list[_FREE if items is None else self.of(items, depth + 1)])  # type: ignore[misc]
        parts.append(_SCALAR)
        made: Any = functools.reduce(operator.or_, parts)
        self.open.discard(id(keep))
        self.done[id(keep)] = made
        return made

    def _struct(self, keep: Keep, depth: int) -> Any:
        # Attribute names are made up (a JSON name need not be an identifier); ``rename``
        # maps each to the member's name as the body spells it.
        fields: list[tuple[str, Any, Any]] = []
        rename: dict[str, str] = {}
        for i, (name, child) in enumerate(keep.members.items()):
            attribute = f"m{i}"
            rename[attribute] = name
            fields.append((attribute, self.of(child, depth + 1), None))
        self.structs += 1
        return msgspec.defstruct(f"Conforming{self.structs}", fields, rename=rename,
                                 forbid_unknown_fields=True, gc=False)


def _free(keep: Keep) -> bool:
    """Whether the walk only looks for names in what this node holds."""
    return (not keep.members and not keep.closed and not keep.hidden
            and keep.other is None and keep.items is None)


class Proof:
    """Tells, from a JSON body's bytes, that the walk by one tree would remove nothing."""

    __slots__ = ("_decode",)

    def __init__(self, decoder: msgspec.json.Decoder[Any]) -> None:
        self._decode = decoder.decode

    def conforms(self, body: bytes) -> bool:
        """True only when the walk would remove nothing from ``body``; False says nothing
        (the walk decides)."""
        try:
            self._decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return False
        return True


def proof_for(keep: Keep) -> Proof | None:
    """The proof for ``keep``'s tree, or ``None`` when no msgspec type describes it exactly."""
    try:
        return Proof(msgspec.json.Decoder(_Types().of(keep, 0)))
    except _Inexpressible:
        return None
