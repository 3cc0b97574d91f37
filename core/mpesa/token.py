"""The one OAuth token of a Daraja client: cached, refreshed early, fetched single-flight."""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import math
import time
from collections.abc import Callable

import httpx

from core.mpesa.errors import DarajaAuthFailed, DarajaOAuthError, daraja_error_fields

log = logging.getLogger(__name__)

OAUTH_PATH = "/oauth/v1/generate"
DEFAULT_REFRESH_MARGIN = 300.0  # refresh ~5 minutes before Daraja's expiry
# Daraja answers 400 (sometimes 401) for a bad key/secret: retrying cannot help.
_CREDENTIAL_STATUSES = frozenset({400, 401, 403})


class TokenManager:
    """Hands out a valid bearer token; concurrent callers share one refresh (asyncio.Lock)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        consumer_key: str,
        consumer_secret: str,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        max_attempts: int = 3,
        retry_base_delay: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        basic = base64.b64encode(f"{consumer_key}:{consumer_secret}".encode()).decode("ascii")
        self._auth_header = f"Basic {basic}"
        self._refresh_margin = refresh_margin
        self._max_attempts = max(1, max_attempts)
        self._retry_base_delay = retry_base_delay
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refreshes = 0  # completed get_token refreshes, successful or not
        self._last_error: DarajaOAuthError | None = None
        self._refresh_at = 0.0
        self.fetch_count = 0  # OAuth calls made (diagnostics and tests)

    async def get_token(self) -> str:
        """Return a cached token, or fetch one; only one fetch runs at a time."""
        token = self._valid_token()
        if token is not None:
            return token
        refreshes_seen = self._refreshes
        async with self._lock:
            # Another caller may have refreshed while we waited for the lock...
            token = self._valid_token()
            if token is not None:
                return token
            # ...or tried and failed: share that failure instead of hammering OAuth again.
            if self._refreshes != refreshes_seen and self._last_error is not None:
                raise copy.copy(self._last_error)
            try:
                token = await self._fetch_with_retries()
            except DarajaOAuthError as exc:
                self._last_error = exc
                raise
            finally:
                self._refreshes += 1
            self._last_error = None
            return token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after Daraja called it invalid (no-op if already replaced)."""
        if self._token == token:
            self._token = None

    async def fetch_fresh(self, *, retry: bool = False) -> str:
        """Fetch a new token now, whatever the cache holds (connectivity checks)."""
        async with self._lock:
            if retry:
                return await self._fetch_with_retries()
            return await self._fetch_once()

    def _valid_token(self) -> str | None:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        return None

    async def _fetch_with_retries(self) -> str:
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await self._fetch_once()
            except DarajaAuthFailed:
                raise
            except DarajaOAuthError:
                if attempt == self._max_attempts:
                    raise
                delay = self._retry_base_delay * 2 ** (attempt - 1)
                log.warning("daraja oauth attempt %d failed; retrying in %.2fs", attempt, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch_once(self) -> str:
        self.fetch_count += 1
        try:
            response = await self._http.get(
                OAUTH_PATH,
                params={"grant_type": "client_credentials"},
                headers={"Authorization": self._auth_header},
            )
        except httpx.HTTPError as exc:
            # Whatever went wrong, no push was attempted: safe to retry later.
            raise DarajaOAuthError(f"OAuth request failed: {type(exc).__name__}") from None
        if response.status_code in _CREDENTIAL_STATUSES:
            raise DarajaAuthFailed(
                f"OAuth refused the consumer key/secret (HTTP {response.status_code})",
                http_status=response.status_code,
                **_error_fields(response),
            )
        if response.status_code != 200:
            raise DarajaOAuthError(
                f"OAuth answered HTTP {response.status_code}",
                http_status=response.status_code,
                **_error_fields(response),
            )
        token, ttl = _parse_token(response)
        now = self._clock()
        # Refresh early, but never so early that a short-lived token is never reused.
        margin = min(self._refresh_margin, ttl * 0.1)
        self._token = token
        self._refresh_at = now + ttl - margin
        log.info("daraja oauth token obtained (expires_in=%ss)", ttl)
        return token


def _parse_token(response: httpx.Response) -> tuple[str, float]:
    try:
        body = response.json()
        token = body["access_token"]
        ttl = float(body.get("expires_in", 3599))  # Daraja sends it as a string: "3599"
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DarajaOAuthError("OAuth answer had no usable access_token") from None
    if not isinstance(token, str) or not token or not math.isfinite(ttl) or ttl <= 0:
        raise DarajaOAuthError("OAuth answer had no usable access_token")
    return token, ttl


def _error_fields(response: httpx.Response) -> dict[str, str | None]:
    try:
        body = response.json()
    except ValueError:
        body = None
    return daraja_error_fields(body)
