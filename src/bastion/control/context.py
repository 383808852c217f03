"""What every control-plane endpoint is given: the supervisor, the store, the settings.

The store is synchronous (SQLAlchemy): endpoints call it through :meth:`AdminContext.call`,
in a thread, never on the event loop that also serves the admin API's other requests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol, TypeVar

from bastion.config import LoadedConfig
from bastion.config.model import Admin
from bastion.control.accounts.login import LoginPolicy
from bastion.control.metrics import SnapshotCollector
from bastion.store.websessions import SessionPolicy

if TYPE_CHECKING:
    from bastion.store import Store

T = TypeVar("T")


class Supervised(Protocol):
    """What the control plane needs from the supervisor."""

    loaded: LoadedConfig

    def workers_alive(self) -> tuple[int, int]: ...
    def ready(self) -> bool: ...
    def reload(self) -> list[str]: ...


@dataclass
class AdminContext:
    sup: Supervised
    collector: SnapshotCollector
    _store: Store | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def config(self) -> LoadedConfig:
        """The configuration serving now (replaced by every accepted reload)."""
        return self.sup.loaded

    @property
    def settings(self) -> Admin:
        return self.sup.loaded.config.admin

    @property
    def tls(self) -> bool:
        return self.settings.tls is not None

    @property
    def login_policy(self) -> LoginPolicy:
        s = self.settings.login
        return LoginPolicy(max_failures=s.max_failures, lockout=timedelta(seconds=s.lockout))

    @property
    def session_policy(self) -> SessionPolicy:
        s = self.settings.sessions
        return SessionPolicy(ttl=timedelta(seconds=s.ttl), idle=timedelta(seconds=s.idle))

    def store(self) -> Store:
        """The configured store, opened (and migrated) on first use. Blocking: call it in a thread."""
        with self._lock:
            if self._store is None:
                from bastion.store import open_store

                self._store = open_store(self.config.config.store, self.config.config.consumers)
            return self._store

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a thread (store work)."""
        return await asyncio.to_thread(fn, *args)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
