"""libinjection's SQL injection and XSS tests, called as cheaply as the machine allows.

The ``libinjection-python`` binding answers each call with a dictionary holding the whole
token vector (eight small dictionaries), which costs more than the test itself: about 4.5 µs
per call, where the same library's C entry point takes 2 µs through ctypes. The binding's
extension module exports those entry points (``libinjection_sqli``, ``libinjection_xss``), so
they are called directly when present; otherwise the binding is used. Both give the same
answers (tests/stages/detection/test_detection_libinj.py checks it over both corpora).
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Callable
from typing import Any

from bastion.stages.detection.normalize import without_surrogates


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - depends on the machine
        return None


_binding = _optional("libinjection")

#: Whether libinjection can be used at all.
AVAILABLE = _binding is not None


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a decoded "\ud800" escape) has no UTF-8 form.
        return without_surrogates(text).encode("utf-8")


def _binding_sqli(text: str) -> bool:
    result: dict[str, Any] = _binding.is_sql_injection(_utf8(text).decode("utf-8"))
    return bool(result.get("is_sqli"))


def _binding_xss(text: str) -> bool:
    result: dict[str, Any] = _binding.is_xss(_utf8(text).decode("utf-8"))
    return bool(result.get("is_xss"))


def _direct() -> tuple[Callable[[str], bool], Callable[[str], bool]] | None:
    """The C entry points of the binding's own shared library, or None if not exported."""
    path = getattr(_binding, "__file__", None)
    if not path:
        return None
    try:
        # PyDLL: the calls keep the GIL (libinjection never calls back into Python, and
        # releasing and taking the GIL again would cost more than the test).
        lib = ctypes.PyDLL(path)
        c_sqli = lib.libinjection_sqli
        c_xss = lib.libinjection_xss
    except (OSError, AttributeError):  # pragma: no cover - another build of the binding
        return None
    c_sqli.argtypes = (ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p)
    c_sqli.restype = ctypes.c_int
    c_xss.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
    c_xss.restype = ctypes.c_int
    fingerprint = ctypes.create_string_buffer(8)  # libinjection writes up to 5 + NUL

    def sqli(text: str) -> bool:
        data = _utf8(text)
        return bool(c_sqli(data, len(data), fingerprint))

    def xss(text: str) -> bool:
        data = _utf8(text)
        return bool(c_xss(data, len(data)))

    return sqli, xss


def _choose() -> tuple[Callable[[str], bool], Callable[[str], bool], str]:
    if _binding is None:  # pragma: no cover - depends on the machine
        return (lambda text: False), (lambda text: False), "none"
    direct = _direct()
    if direct is not None:
        return direct[0], direct[1], "ctypes"
    return _binding_sqli, _binding_xss, "binding"  # pragma: no cover - another build


#: ``is_sqli(text)``: whether libinjection fingerprints ``text`` as SQL injection;
#: ``is_xss(text)``: whether it finds ``text`` to be XSS; ``BACKEND``: how they are called.
is_sqli, is_xss, BACKEND = _choose()

__all__ = ["AVAILABLE", "BACKEND", "is_sqli", "is_xss"]
