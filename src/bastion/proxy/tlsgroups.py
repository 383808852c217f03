"""Restricting the key-exchange groups (curves) of an ``ssl.SSLContext``.

Python's ``ssl`` module could only set one group (``set_ecdh_curve``) before
``SSLContext.set_groups``; OpenSSL's default list for a server adds X448, P-521 and
finite-field groups to the three every client supports. Where the stdlib has no
``set_groups``, the list is set with OpenSSL's own ``SSL_CTX_set1_groups_list`` through
ctypes, on the context's ``SSL_CTX`` — but only after proving that the library found is the
one ``ssl`` uses and that the pointer is that context's (its options read back equal), so a
mismatch means "not restricted", never a call on the wrong object.
"""

from __future__ import annotations

import ctypes
import os
import ssl
from collections.abc import Sequence

#: ``SSL_CTRL_SET_GROUPS_LIST`` from OpenSSL's ssl.h (``SSL_CTX_set1_groups_list`` is this
#: control, a macro rather than an exported function).
_SSL_CTRL_SET_GROUPS_LIST = 92


def set_groups(ctx: ssl.SSLContext, groups: Sequence[str]) -> bool:
    """Offer and accept only ``groups`` (OpenSSL names, e.g. ``X25519``, ``prime256v1``)
    for key exchange on ``ctx``. Returns whether that could be done on this Python and
    OpenSSL; ``ValueError`` if OpenSSL refuses the list itself (an unknown group name)."""
    if hasattr(ctx, "set_groups"):  # Python 3.15 and later
        ctx.set_groups(":".join(groups))
        return True
    return _set_groups_list(ctx, ":".join(groups).encode("ascii"))


def _libssl() -> ctypes.CDLL | None:
    """The libssl the ``ssl`` module is linked with, or ``None`` when it cannot be told.

    It is looked up by its soname without loading anything (``RTLD_NOLOAD``): that is the
    copy the dynamic linker gave ``_ssl``. Other copies in the process (extension wheels
    bundle their own, under mangled names) are never picked."""
    major, minor = ssl.OPENSSL_VERSION_INFO[:2]
    release = str(major) if major >= 3 else f"{major}.{minor}"
    lib: ctypes.CDLL | None = None
    for name in (f"libssl.so.{release}", f"libssl.{release}.dylib"):
        try:
            lib = ctypes.CDLL(name, mode=os.RTLD_NOLOAD)
            break
        except OSError:
            continue
    if lib is None:
        return None
    try:
        version = lib.OpenSSL_version_num
    except AttributeError:
        return None
    version.restype = ctypes.c_ulong
    version.argtypes = []
    if version() != ssl.OPENSSL_VERSION_NUMBER:
        return None  # another OpenSSL than the ssl module's: its SSL_CTX is not ours to touch
    return lib


def _set_groups_list(ctx: ssl.SSLContext, groups: bytes) -> bool:
    lib = _libssl()
    if lib is None:
        return False
    try:
        get_options = lib.SSL_CTX_get_options
        ctrl = lib.SSL_CTX_ctrl
    except AttributeError:
        return False
    get_options.restype = ctypes.c_uint64
    get_options.argtypes = [ctypes.c_void_p]
    ctrl.restype = ctypes.c_long
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    # CPython's context object is PyObject_HEAD followed by its SSL_CTX pointer.
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not pointer or get_options(pointer) != int(ctx.options):
        return False
    if ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups) != 1:
        raise ValueError(f"OpenSSL refused the TLS group list {groups.decode()!r}")
    return True
