"""Compiled pattern databases kept on disk, so that a worker starts without compiling them.

Compiling the paranoia-1 hyperscan database takes about 2 s of CPU, once per worker and
settings; loading its serialised form takes about a millisecond. The serialised bytes are
kept under ``$XDG_CACHE_HOME/bastion/hyperscan/`` (``~/.cache/bastion/hyperscan/`` when the
variable is unset or not an absolute path), one file per database, named by a SHA-256 of
everything that decides what the database is: the patterns, their IDs, the flags, the mode,
the hyperscan binding's version and the machine's architecture. A change of rules or of
hyperscan is a new name, never a stale database.

The cache only ever saves time; it is never a reason to refuse to start or to inspect less:

- a file is written to a temporary name in the same folder and renamed into place, so a
  reader (another worker starting at the same moment) sees a whole file or none;
- a file carries a SHA-256 of its payload and is ignored when that does not match
  (truncated, corrupted), and hyperscan checks its own header (version, platform) when it
  loads the bytes: any failure means compiling, as without a cache;
- the folder is created private (0700), and a file not owned by this user, or writable by
  its group or by others, is ignored: someone else's bytes never become our rules;
- a folder that cannot be created or written (a read-only home) means compiling every
  time, silently but for a debug line.

``BASTION_HYPERSCAN_CACHE=off`` turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: What a cache file starts with (the format's version: bump it when the layout changes).
MAGIC = b"BASTION-HSDB-1\n"
_DIGEST_BYTES = 32
DISABLE_ENV = "BASTION_HYPERSCAN_CACHE"

_log = logging.getLogger("bastion.detection")


def cache_dir() -> Path | None:
    """The folder of cached databases, or ``None`` when the cache is turned off."""
    if os.environ.get(DISABLE_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return None
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG specification: a relative path is invalid and must be ignored.
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "bastion" / "hyperscan"


def database_key(expressions: Sequence[bytes], ids: Sequence[int], flags: int, mode: int, version: str) -> str:
    """The name of the database these inputs compile to (hex SHA-256)."""
    h = hashlib.sha256()
    h.update(f"{version}\0{platform.machine()}\0{flags}\0{mode}\0{len(expressions)}\0".encode())
    for rule_id, expression in zip(ids, expressions, strict=True):
        # Lengths first, so that no two different lists hash the same bytes.
        h.update(f"{rule_id}:{len(expression)}:".encode())
        h.update(expression)
    return h.hexdigest()


def read(key: str) -> bytes | None:
    """The cached payload named ``key``, if there is a sound one of ours."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / f"{key}.hsdb"
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                _log.warning("ignoring the detection database cache %s: not private to this user", path)
                return None
            data = f.read()
    except OSError:
        return None  # none yet, or unreadable: compile
    head = len(MAGIC) + _DIGEST_BYTES
    if len(data) <= head or not data.startswith(MAGIC):
        return None
    payload = data[head:]
    if hashlib.sha256(payload).digest() != data[len(MAGIC) : head]:
        _log.info("ignoring the corrupt detection database cache %s", path)
        return None
    return payload


def write(key: str, payload: bytes) -> None:
    """Keep ``payload`` under ``key``: atomically, privately, or not at all."""
    folder = cache_dir()
    if folder is None:
        return
    tmp = ""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + hashlib.sha256(payload).digest() + payload)
        os.replace(tmp, folder / f"{key}.hsdb")
        tmp = ""
    except OSError as exc:
        _log.debug("cannot keep the detection database in %s: %s", folder, exc)
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
