"""The ``access`` stage's guard against method and path overrides, compiled with mypyc
(``setup.py``): it runs on every request of every route (the guard is on by default), and
the stage class itself stays interpreted.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl

from bastion.types import Request

#: Headers that make some backends run another method than the request line's.
_METHOD_OVERRIDES: Final = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})
#: Headers that make some backends (IIS, Symfony, Zend) serve another path than the request line's.
_URL_OVERRIDES: Final = frozenset({"x-original-url", "x-rewrite-url"})


def overridden(request: Request) -> bool:
    """Whether the request asks the backend for another method or path than the gateway checked."""
    method = request.method
    for name, value in request.headers:
        if name in _METHOD_OVERRIDES:
            if value.strip().upper() != method:
                return True
        elif name in _URL_OVERRIDES:
            return True
    query = request.query
    lowered = query.lower()
    if "_method" in lowered or "%5f" in lowered:
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key.lower() == "_method" and value.strip().upper() != method:
                return True
    return False


__all__ = ["overridden"]
