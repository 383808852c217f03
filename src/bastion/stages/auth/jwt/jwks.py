"""A JWKS endpoint's keys, kept fresh for every route of a worker (one cache per URL).

The cache is a worker-wide object (``services.shared("jwks:" + url, ...)``): routes and
reloads share it, and the verifiers that use it hold it with :meth:`JwksCache.acquire` /
:meth:`JwksCache.release`, so its background refresh runs while at least one of them is
started (a reload starts the new verifiers before it closes the old ones: no gap).

Freshness: the endpoint's ``Cache-Control: max-age`` sets the next refresh, bounded by
``jwks_min_refresh`` and ``jwks_max_refresh``. When a refresh fails, the keys fetched before
keep verifying for ``jwks_max_stale`` seconds after their last successful fetch, and
retries back off; past that, tokens of this issuer are refused with 503 (fail closed). A
token with an unknown ``kid`` triggers a refetch at most once per
``jwks_unknown_kid_interval``: random kids cannot make Bastion flood the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from bastion.stages.auth.jwt.keys import KeySet, UnusableKey, VerifyingKey, fingerprint, load_jwk

if TYPE_CHECKING:
    from bastion.services import Services

log = logging.getLogger("bastion.auth.jwks")

#: A JWKS larger than this is refused (a real one is a few kilobytes).
MAX_JWKS_BYTES = 1024 * 1024
#: Keys read from one JWKS at most.
MAX_KEYS = 100
#: Longest pause between retries of a failing endpoint.
MAX_RETRY = 60.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


class JwksError(Exception):
    """The endpoint did not give a usable key set (the message says why, for the log)."""


@dataclass(frozen=True, slots=True)
class JwksTiming:
    """How often a JWKS is refreshed (from the settings of the verifier started last)."""

    min_refresh: float = 60
    max_refresh: float = 3600
    default_refresh: float = 300
    max_stale: float = 21600
    unknown_kid_interval: float = 10
    timeout: float = 5.0


def max_age(cache_control: str | None) -> float | None:
    """The ``max-age`` of a Cache-Control header; ``None`` without one (``no-store`` and
    ``no-cache`` count as 0: refresh as often as allowed)."""
    if cache_control is None:
        return None
    found = _MAX_AGE.search(cache_control)
    if found is not None:
        return float(found.group(1))
    lowered = cache_control.lower()
    return 0.0 if "no-store" in lowered or "no-cache" in lowered else None


def parse_jwks(body: bytes, url: str) -> tuple[KeySet, str]:
    """The usable keys of a JWKS document and its fingerprint. Keys Bastion cannot use (an
    unsupported curve, an encryption key) are skipped with a log line; a set with none left
    is an error, so an endpoint that turned bad does not replace good keys."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise JwksError("the response is not JSON") from None
    raw = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(raw, list):
        raise JwksError("the response has no `keys` list")
    jwks = [k for k in raw[:MAX_KEYS] if isinstance(k, dict)]
    keys: list[VerifyingKey] = []
    for i, jwk in enumerate(jwks):
        try:
            keys.append(load_jwk(jwk, f"key {i}"))
        except UnusableKey as exc:
            log.info("JWKS %s: skipping %s", url, exc)
    if not keys:
        raise JwksError("no usable signing key in the set")
    return KeySet(keys), fingerprint(jwks)


class JwksCache:
    """The current keys of one JWKS URL, with their refresh."""

    def __init__(self, url: str, services: Services) -> None:
        self.url = url
        self._services = services
        self.timing = JwksTiming()
        #: The current keys, ``None`` until a first fetch succeeds.
        self.keys: KeySet | None = None
        #: Bumped whenever the key set changes: cached tokens verified by an older set no
        #: longer count.
        self.generation = 0
        self._fingerprint = ""
        self._fetched_at = float("-inf")  # monotonic time of the last successful fetch
        self._next_refresh = 0.0
        self._failures = 0
        self._attempted_at = float("-inf")  # monotonic time the last fetch (of any cause) began
        self._inflight: asyncio.Future[None] | None = None
        self._users = 0
        self._task: asyncio.Task[None] | None = None

    # -- life -------------------------------------------------------------------------------

    async def acquire(self, timing: JwksTiming) -> None:
        """Use the cache (from a verifier's start): fetch now if nothing is loaded yet and keep
        the background refresh running. A failing endpoint does not fail the start: tokens
        are refused (503) until the keys load."""
        self.timing = timing
        self._users += 1
        if self.keys is None:
            await self._fetch_shared()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._refresh_loop(), name=f"jwks {self.url}")

    async def release(self) -> None:
        """Stop using it (from a verifier's close); the refresh stops with the last user."""
        self._users -= 1
        if self._users <= 0:
            self._users = 0
            await self._stop()

    async def aclose(self) -> None:
        """Called with the worker's services."""
        self._users = 0
        await self._stop()

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- what verification asks -------------------------------------------------------------

    def current(self) -> KeySet | None:
        """The keys to verify with now, or ``None`` when none were ever loaded or the last
        successful fetch is older than ``max_stale``."""
        if self.keys is None:
            return None
        if self._services.clock.monotonic() - self._fetched_at > self.timing.max_stale:
            return None
        return self.keys

    def refetch(self) -> asyncio.Future[None] | None:
        """A fetch for a token the current keys cannot verify (unknown kid, nothing loaded):
        the fetch in flight if there is one, a new one if the last fetch (of any cause) began
        at least ``unknown_kid_interval`` ago, else ``None`` (the caller refuses the token)."""
        if self._inflight is not None:
            return self._inflight
        if self._services.clock.monotonic() - self._attempted_at < self.timing.unknown_kid_interval:
            return None
        return self._fetch_shared()

    # -- fetching ---------------------------------------------------------------------------

    def _fetch_shared(self) -> asyncio.Future[None]:
        """One fetch at a time: concurrent callers wait on the same one. It never raises (a
        failure is logged and leaves the previous keys in place)."""
        if self._inflight is None:
            self._attempted_at = self._services.clock.monotonic()
            self._inflight = asyncio.ensure_future(self._fetch_once())
            self._inflight.add_done_callback(self._fetched)
        return self._inflight

    def _fetched(self, _: asyncio.Future[None]) -> None:
        self._inflight = None

    async def _fetch_once(self) -> None:
        now = self._services.clock.monotonic()
        try:
            keys, print_, age = await self._download()
        except (JwksError, OSError) as exc:
            self._failures += 1
            # Retry soon, backing off: 1, 2, 4 ... seconds, at most MAX_RETRY.
            self._next_refresh = now + min(MAX_RETRY, 2.0 ** (self._failures - 1))
            stale = "keeping the keys fetched before"
            if self.keys is None:
                stale = "no keys loaded: its tokens are refused (503)"
            log.warning("JWKS %s: fetch failed (%s); %s", self.url, exc, stale)
            return
        except Exception as exc:  # httpx errors and the like: never let the refresh die
            self._failures += 1
            self._next_refresh = now + min(MAX_RETRY, 2.0 ** (self._failures - 1))
            log.warning("JWKS %s: fetch failed (%s: %s)", self.url, type(exc).__name__, exc)
            return
        self._failures = 0
        self._fetched_at = now
        t = self.timing
        self._next_refresh = now + min(t.max_refresh, max(t.min_refresh, t.default_refresh if age is None else age))
        if print_ != self._fingerprint:
            self._fingerprint = print_
            self.keys = keys
            self.generation += 1
            log.info("JWKS %s: %d keys loaded (%s)", self.url, len(keys.keys), ", ".join(
                str(k.kid) for k in keys.keys))

    async def _download(self) -> tuple[KeySet, str, float | None]:
        http = self._services.http
        async with http.stream(
            "GET", self.url, headers={"accept": "application/json"}, timeout=self.timing.timeout
        ) as response:
            if response.status_code != 200:
                raise JwksError(f"status {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksError(f"the response is larger than {MAX_JWKS_BYTES} bytes")
            headers: Mapping[str, str] = response.headers
            age = max_age(headers.get("cache-control"))
        keys, print_ = parse_jwks(bytes(body), self.url)
        return keys, print_, age

    async def _refresh_loop(self) -> None:
        clock = self._services.clock
        while True:
            await asyncio.sleep(max(0.05, self._next_refresh - clock.monotonic()))
            if clock.monotonic() >= self._next_refresh:
                await self._fetch_shared()
