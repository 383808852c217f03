"""The ``headers`` stage's per-response work, compiled with mypyc (``setup.py``).

The stage class derives from the interpreted ``ResponseStage`` and stays interpreted; this
function is what it runs on every response of every route (the stage is on by default).
"""

from __future__ import annotations

from bastion.types import HeaderList


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
