"""What the ``response`` stage does to each JSON response: remove what may not leave.

Compiled with mypyc (``setup.py``): it walks every member of every filtered response. The
trees it walks by (:class:`Keep`) are built once per route at load
(:mod:`~bastion.stages.response.schema`).
"""

from __future__ import annotations

from typing import Any

#: Deeper than this a response is refused rather than walked (a stage failure, fail closed):
#: what is hidden that deep would otherwise leave unseen.
MAX_DEPTH = 256
#: Paths of removed properties kept for the record (names only, never values).
MAX_PATHS = 10


class Keep:
    """What of a JSON value may leave, as one schema declares it.

    An object keeps the members :attr:`members` declares (each by its own :class:`Keep`;
    never one named in ``writeOnly`` or the route's ``never_return``: :func:`prune` looks
    those names up only for the members not declared here);
    its other members are removed when :attr:`closed`, else kept by :attr:`other`. An
    array's items are kept by :attr:`items`. Members named in :attr:`hidden` (``writeOnly``)
    never leave.
    """

    __slots__ = ("closed", "hidden", "items", "members", "other")

    def __init__(self) -> None:
        self.members: dict[str, Keep] = {}
        self.closed = False
        self.other: Keep | None = None
        self.items: Keep | None = None
        self.hidden: frozenset[str] = frozenset()


#: Keeps everything (but the names that never leave).
ANYTHING = Keep()


class Removal:
    """What one walk removed (or, in monitor mode, would have removed)."""

    __slots__ = ("apply", "hidden", "paths", "trail", "undeclared")

    def __init__(self, apply: bool) -> None:
        #: Whether undeclared members are removed, or only counted (monitor, block).
        self.apply = apply
        self.undeclared = 0
        #: writeOnly members and ``never_return`` names: always removed.
        self.hidden = 0
        self.paths: list[str] = []
        #: The keys and indexes from the root to the value being walked. The walk keeps this
        #: one list instead of a path string per value: the string is only needed for a
        #: removed member, and building it for each of them cost more than the walk itself.
        self.trail: list[str | int] = []

    def note(self, key: str) -> None:
        if len(self.paths) < MAX_PATHS:
            parent = "".join(["/" + str(part) for part in self.trail])
            self.paths.append(parent + "/" + key.replace("~", "~0").replace("/", "~1"))


#: Member names remembered per route by :class:`NeverReturn` (then forgotten all at once),
#: and the longest one remembered: bounded memory whatever the upstream sends.
MAX_REMEMBERED = 4096
MAX_REMEMBERED_LENGTH = 64


class NeverReturn:
    """Property names that never leave (lower-case), matched case-insensitively, built once
    per route. The answer for each member name is remembered: a JSON API repeats its few
    names in every response (orjson even hands back the same string objects), and
    lower-casing each member of each response to look it up cost ~500 instructions a member
    (callgrind), more than the rest of the walk."""

    __slots__ = ("_known", "names")

    def __init__(self, names: frozenset[str]) -> None:
        self.names = frozenset(n.lower() for n in names)
        self._known: dict[str, bool] = {}

    def has(self, key: str) -> bool:
        known = self._known.get(key)
        if known is not None:
            return known
        found = key.lower() in self.names
        if len(key) <= MAX_REMEMBERED_LENGTH:
            if len(self._known) >= MAX_REMEMBERED:
                self._known.clear()
            self._known[key] = found
        return found


def prune(value: Any, keep: Keep, names: NeverReturn, out: Removal, depth: int = 0) -> None:
    """Remove from ``value`` (in place) what ``keep`` does not declare, and every member
    named in ``names`` or in a ``hidden`` set, counting into ``out``."""
    if depth > MAX_DEPTH:
        raise ValueError(f"a JSON response nested deeper than {MAX_DEPTH} levels is not inspected")
    if isinstance(value, dict):
        _prune_object(value, keep, names, out, depth)
    elif isinstance(value, list):
        items = keep.items
        child = items if items is not None else ANYTHING
        trail = out.trail
        for i, item in enumerate(value):
            if isinstance(item, (dict, list)):
                trail.append(i)
                prune(item, child, names, out, depth + 1)
                trail.pop()


def _prune_object(value: dict[str, Any], keep: Keep, names: NeverReturn, out: Removal, depth: int) -> None:
    members = keep.members
    hidden = keep.hidden
    # Most objects lose nothing: the list of members to delete is made for the first one.
    doomed: list[str] | None = None
    for key, member in value.items():
        child = members.get(key)
        if child is None:
            # A declared member is neither hidden nor a name that never leaves (the tree
            # was built without those): only the other names need these two lookups.
            if names.has(key) or (hidden and key in hidden):
                if doomed is None:
                    doomed = []
                doomed.append(key)
                out.hidden += 1
                continue
            if keep.closed:
                out.undeclared += 1
                out.note(key)
                if out.apply:
                    if doomed is None:
                        doomed = []
                    doomed.append(key)
                    continue
            child = keep.other if keep.other is not None else ANYTHING
        if isinstance(member, (dict, list)):
            out.trail.append(key)
            prune(member, child, names, out, depth + 1)
            out.trail.pop()
    if doomed is not None:
        for key in doomed:
            del value[key]


def remove_pointer(value: Any, parts: tuple[str, ...], out: Removal) -> None:
    """Remove what the JSON pointer ``parts`` (``*``: any member or item) names."""
    if not parts:
        return
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        keys = list(value) if head == "*" else ([head] if head in value else [])
        for key in keys:
            if rest:
                remove_pointer(value[key], rest, out)
            else:
                del value[key]
                out.hidden += 1
    elif isinstance(value, list):
        if head == "*":
            indexes = list(range(len(value)))
        elif head.isdigit() and int(head) < len(value):
            indexes = [int(head)]
        else:
            indexes = []
        for i in reversed(indexes):
            if rest:
                remove_pointer(value[i], rest, out)
            else:
                del value[i]
                out.hidden += 1
