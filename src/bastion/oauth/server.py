"""The authorization server as a worker runs it: its store, its keys, its settings.

Built from the configuration at load (pure: nothing is opened), started by the worker
(the store opened in a thread, the keys loaded, a maintenance task started) and closed
with the runtime. Its :class:`KeyRing` is a worker-wide object (``services.shared``) that
the verifier of the gateway's own tokens reads on protected routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bastion.config.model import ClientAuthLimit, GatewayConfig
from bastion.errors import DependencyUnavailable
from bastion.oauth.keys import Algorithm, KeySet, SigningKey, UnusableKey, load_key, new_key
from bastion.oauth.store import OAuthStore

if TYPE_CHECKING:
    from bastion.services import Services

log = logging.getLogger("bastion.oauth")

#: Under this key in ``services.shared``: the worker's view of the signing keys.
KEYRING = "oauth:keyring"
#: How often the keys are read from the store again (keys made by another instance).
REFRESH_SECONDS = 10.0
#: A key that starts signing within this is made (and published) ahead of time, so every
#: instance has it in its JWKS before the first token it signs reaches them.
PUBLISH_AHEAD = timedelta(seconds=3 * REFRESH_SECONDS)
#: Retired keys are deleted from the store this long after their last token expired.
DELETE_AFTER = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """``oauth_server`` with its defaults resolved."""

    issuer: str
    audience: str
    token_ttl: int
    algorithm: Algorithm
    rotation: timedelta
    client_auth_limit: ClientAuthLimit

    def url(self, path: str) -> str:
        return self.issuer + path


def settings_of(config: GatewayConfig) -> ServerSettings:
    """The server's settings; the issuer defaults to the gateway's own address."""
    oauth = config.oauth_server
    issuer = oauth.issuer
    if issuer is None:
        listen = config.listen
        host = f"[{listen.host}]" if ":" in listen.host else listen.host
        issuer = f"{'https' if listen.tls is not None else 'http'}://{host}:{listen.port}"
    return ServerSettings(
        issuer,
        oauth.audience or issuer,
        oauth.token_ttl,
        oauth.algorithm,
        timedelta(hours=oauth.key_rotation.interval_hours),
        oauth.client_auth_limit,
    )


class KeyRing:
    """The keys this worker knows now (replaced whole on each refresh)."""

    def __init__(self) -> None:
        self.keys = KeySet([])
        #: Bumped whenever ``keys`` changes (verifiers reload theirs when it moves).
        self.generation = 0
        #: Issuer and audience of the tokens these keys sign (set by the server that fills it).
        self.issuer = ""
        self.audience = ""


#: Opens the store (in a thread: it may connect and migrate).
StoreOpener = Callable[[], OAuthStore]


class OAuthServer:
    """What the endpoints use: settings, store, keys, the worker's state and clock."""

    def __init__(self, settings: ServerSettings, open_store: StoreOpener) -> None:
        self.settings = settings
        self._open_store = open_store
        self._store: OAuthStore | None = None
        self._services: Services | None = None
        self.ring = KeyRing()
        self._task: asyncio.Task[None] | None = None
        self._refreshing = asyncio.Lock()

    @property
    def store(self) -> OAuthStore:
        if self._store is None:
            raise DependencyUnavailable("the OAuth server's store is not open")
        return self._store

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the OAuth server is not started")
        return self._services

    def now(self) -> float:
        return self.services.clock.wall()

    async def start(self, services: Services) -> None:
        """Open the store, make sure a key signs, publish the keys to the worker."""
        self._services = services
        self.ring = services.shared(KEYRING, KeyRing)
        self.ring.issuer, self.ring.audience = self.settings.issuer, self.settings.audience
        self._store = await asyncio.to_thread(self._open_store)
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._maintain())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._store is not None:
            store, self._store = self._store, None
            await asyncio.to_thread(store.close)

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception:  # the next round tries again; tokens go on with known keys
                log.exception("refreshing the OAuth signing keys failed")

    async def refresh(self) -> None:
        """Read the keys again; make the current or next one if missing; drop dead ones."""
        async with self._refreshing:
            keys = await asyncio.to_thread(self._refresh_sync, datetime.fromtimestamp(self.now(), UTC))
        # Applied here, on the worker's loop, where verifiers read the ring.
        if set(keys.by_kid) != set(self.ring.keys.by_kid):
            self.ring.keys = keys
            self.ring.generation += 1

    def _refresh_sync(self, now: datetime) -> KeySet:
        store = self.store
        keys = self._load(store)
        s = self.settings
        ttl = timedelta(seconds=s.token_ttl)
        current = keys.signing(s.algorithm, now)
        if current is None:
            store.add_signing_key(new_key(s.algorithm, now, s.rotation, ttl, store.pepper))
            keys = self._load(store)
        elif keys.signing(s.algorithm, now + PUBLISH_AHEAD) is None:
            store.add_signing_key(new_key(s.algorithm, current.retire_after, s.rotation, ttl, store.pepper))
            keys = self._load(store)
        if any(k.not_after < now - DELETE_AFTER for k in keys.keys):
            store.drop_signing_keys(now - DELETE_AFTER)  # a write only when one is due
        return keys

    @staticmethod
    def _load(store: OAuthStore) -> KeySet:
        loaded: list[SigningKey] = []
        for stored in store.signing_keys():
            try:
                loaded.append(load_key(stored, store.pepper))
            except UnusableKey as exc:
                log.error("%s", exc)
        return KeySet(loaded)

    def signing_key(self) -> SigningKey:
        """The key that signs now; 503 (``DependencyUnavailable``) if none could be made."""
        key = self.ring.keys.signing(self.settings.algorithm, datetime.fromtimestamp(self.now(), UTC))
        if key is None:
            raise DependencyUnavailable("the OAuth server has no usable signing key (see the worker's log)")
        return key
