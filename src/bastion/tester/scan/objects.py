"""Finding objects in answers: the ID a create returned, the items of a list, a unique key to send.

Pure functions over parsed JSON and request plans, shared by discovery (``context``) and the checks.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from bastion.tester.scan.interface import Identity, RequestPlan

__all__ = ["LIST_KEYS", "extract_id", "list_items", "norm", "path_params", "remove_dot_segments", "unique_key"]

LIST_KEYS = ("items", "data", "results", "records", "content", "values", "list")


def norm(name: str) -> str:
    """``name`` lower-cased with everything but letters and digits removed (``Book_Title`` -> ``booktitle``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def path_params(template: str) -> list[str]:
    """The parameter names of a path template, in order."""
    return re.findall(r"\{([^}]+)\}", template)


def extract_id(body: Any, param: str) -> str | None:
    """The new object's ID in a create response: the property named like the path parameter, else ``id``."""
    if isinstance(body, dict):
        wanted = norm(param)
        for key, value in body.items():
            if norm(str(key)) == wanted and isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
        if isinstance(body.get("id"), str | int) and not isinstance(body.get("id"), bool):
            return str(body["id"])
        for key in ("data", "item", "result", "object"):
            if isinstance(body.get(key), dict):
                return extract_id(body[key], param)
    return None


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute path: ``/v2/../debug/vars`` -> ``/debug/vars``."""
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments[1:], 1):
        last = i == len(segments) - 1
        if seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def list_items(body: Any) -> list[Any]:
    """The objects of a list answer: the body itself, the array under a usual key (``items``, ``data``...), else
    the only array of objects in the body whatever its key (``{"Books": [...]}``)."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in LIST_KEYS:
            if isinstance(body.get(key), list):
                return list(body[key])
        arrays = [v for v in body.values() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)]
        if len(arrays) == 1:
            return list(arrays[0])
        # One level down: HAL's ``{"_embedded": {"orders": [...]}, "page": {...}}`` and the like.
        nested = [items for v in body.values() if isinstance(v, dict) and (items := _only_array(v))]
        if len(nested) == 1:
            return nested[0]
    return []


def _only_array(body: dict[str, Any]) -> list[Any]:
    """The only non-empty array of objects among ``body``'s values, else an empty list."""
    arrays = [v for v in body.values() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)]
    return list(arrays[0]) if len(arrays) == 1 else []


def unique_key(plan: RequestPlan, param: str, identity: Identity) -> str | None:
    """Set the JSON body's string field named like ``param`` to a value unique to this scan and identity;
    return it (None when the body has no such field)."""
    if not param or not isinstance(plan.json, dict):
        return None
    wanted = norm(param)
    for key, value in plan.json.items():
        if norm(str(key)) == wanted and isinstance(value, str):
            unique = f"bscan-{norm(identity.name)[:12]}-{secrets.token_hex(3)}"
            plan.json = {**plan.json, key: unique}  # a copy: the body may be the document's own example
            return unique
    return None

