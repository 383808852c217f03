"""The scan's only network access: scope, rate limit, request caps, 429 handling, recording.

Every request goes to the base URL's origin (scheme, host and port) and nowhere else, is never
redirected, waits for a token of the rate limiter (``--max-rps``), counts against the sending
check's cap, and comes back as an :class:`Exchange` (a transport error is status 0 with
``error`` set, never an exception).

The one exception to the rate limiter is a *burst*: a check measuring a rate limit may ask for
``unthrottled=True``. Such a request skips the token bucket only while the check has sent fewer
than :data:`MAX_UNTHROTTLED_PER_CHECK` unthrottled requests in the whole scan (later ones wait for
the bucket like any other); it is still in scope, still counted against the check's cap, and
counted in :attr:`ScanClient.bursts` so the report says "burst of N requests at full speed".
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urlencode, urlsplit

import httpx

from bastion import __version__
from bastion.tester.scan.interface import Exchange, ScanOptions

USER_AGENT = f"bastion-scan/{__version__}"
#: Response bodies kept per exchange (checks compare bodies; reports show excerpts).
MAX_BODY = 1 << 20
#: Hard ceiling on requests one check may send outside the rate limiter (``unthrottled=True``), per scan.
MAX_UNTHROTTLED_PER_CHECK = 100


class RateLimiter:
    """A token bucket: ``rate`` requests per second on average, bursts of at most ``max(1, rate)``."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("the rate limit must be positive")
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def retry_after_seconds(value: str | None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); 1 when absent or odd."""
    if not value:
        return 1.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, when.timestamp() - time.time())


class ScanClient:
    """Sends requests for the scan (see the module docstring)."""

    def __init__(self, options: ScanOptions) -> None:
        self.options = options
        self.origin = origin_of(options.base_url)
        self.limiter = RateLimiter(options.max_rps)
        self.sent = 0
        self.per_check: Counter[str] = Counter()
        #: Requests each check sent at full speed (``unthrottled=True``, within the ceiling).
        self.bursts: Counter[str] = Counter()
        #: 5xx answers each check received (the report shows them; a health baseline turning 5xx stops the scan).
        self.server_errors: Counter[str] = Counter()
        verify: ssl.SSLContext | bool = True
        if options.insecure:
            verify = False
        elif options.ca_file:
            verify = ssl.create_default_context(cafile=options.ca_file)
        self._http = httpx.AsyncClient(
            verify=verify,
            follow_redirects=False,
            timeout=httpx.Timeout(options.timeout),
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
            # No cookie jar: a cookie one identity's login set must never ride along on another identity's (or
            # the anonymous) requests; each identity sends exactly the cookies it holds.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def in_scope(self, url: str) -> bool:
        return origin_of(url) == self.origin

    async def request(
        self,
        method: str,
        url: str,
        *,
        identity: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        query: Sequence[tuple[str, str]] = (),
        check_id: str = "engine",
        timeout: float | None = None,  # noqa: ASYNC109 (per request, passed to httpx)
        retry_429: bool = True,
        unthrottled: bool = False,
    ) -> Exchange:
        if query:
            url = url + ("&" if "?" in url else "?") + urlencode(list(query))
        sent_headers = tuple((k, v) for k, v in {"User-Agent": USER_AGENT, **headers}.items())

        def failed(error: str) -> Exchange:
            return Exchange(method, url, sent_headers, body, 0, (), b"", 0.0, identity, error)

        if not self.in_scope(url):
            return failed(f"out of scope: only {self.origin} may be requested")
        if self.per_check[check_id] >= self.options.max_requests_per_check:
            return failed(f"request cap reached ({self.options.max_requests_per_check} requests for {check_id})")
        attempts = 0
        while True:
            self.per_check[check_id] += 1
            self.sent += 1
            if unthrottled and check_id != "engine" and self.bursts[check_id] < MAX_UNTHROTTLED_PER_CHECK:
                self.bursts[check_id] += 1
            else:
                await self.limiter.acquire()
            started = time.monotonic()
            try:
                response = await self._http.request(
                    method,
                    url,
                    headers=dict(headers),
                    content=body or None,
                    timeout=httpx.Timeout(timeout if timeout is not None else self.options.timeout),
                )
                content = await _read_bounded(response)
            except httpx.HTTPError as exc:
                elapsed = time.monotonic() - started
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                return Exchange(method, url, sent_headers, body, 0, (), b"", elapsed, identity, error)
            elapsed = time.monotonic() - started
            exchange = Exchange(
                method,
                url,
                sent_headers,
                body,
                response.status_code,
                tuple(response.headers.multi_items()),
                content,
                elapsed,
                identity,
            )
            if response.status_code >= 500:
                self.server_errors[check_id] += 1
            if response.status_code != 429 or not retry_429 or attempts >= 2:
                return exchange
            wait = retry_after_seconds(exchange.header("retry-after"))
            if wait > self.options.max_retry_wait:
                return exchange
            attempts += 1
            await asyncio.sleep(wait)


async def _read_bounded(response: httpx.Response) -> bytes:
    """The response body, at most :data:`MAX_BODY` bytes (the rest is discarded)."""
    try:
        return response.content[:MAX_BODY]
    except httpx.ResponseNotRead:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY:
                break
        return b"".join(chunks)[:MAX_BODY]
