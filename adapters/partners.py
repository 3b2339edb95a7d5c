"""Print partners over HTTP: idempotent submits, a Redis-shared token bucket, backoff with Retry-After,
a circuit breaker, and "ask before resubmitting" after an unknown outcome (docs/PARTNER_API.md)."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import httpx
import redis

from core.errors import PressroomError

log = logging.getLogger(__name__)

# Atomic token bucket: refill by elapsed time, take one token or say how long to wait. Shared by every worker
# process through Redis, so the partner sees one client's rate however many workers we run. Each caller reads its
# clock before its call reaches Redis, so readings arrive out of order: the refill mark never moves backwards, or
# the same interval would be refilled twice (shuffled readings got ~30 % over the rate that way).
TOKEN_BUCKET = """
local key, rate, burst, now = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', key, 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', key, 'tokens', tokens, 'at', math.max(at, now))
redis.call('EXPIRE', key, 3600)
return tostring(wait)
"""


UNSETTLED_TTL_S = 7 * 24 * 3600  # how long a submit with an unknown outcome is remembered (asked about first)


class PartnerUnavailable(PressroomError):
    """The partner is down, throttling or its circuit is open; try again later (nothing was lost)."""

    code = "partner_unavailable"

    def __init__(self, message: str, *, retry_after_s: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PartnerRefused(PressroomError):
    """The partner answered with a definite refusal (4xx other than 404/409/429): retrying won't help."""

    code = "partner_refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class PartnerJob:
    id: str
    external_id: str
    status: str
    created: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PartnerEndpoint:
    partner_id: str
    base_url: str
    api_key: str


class PartnerClient:
    """One client for every partner; state that must be shared (rate, breaker) lives in Redis."""

    def __init__(self, redis_client: redis.Redis, *, rate_per_s: float = 20.0, burst: int = 40,
                 timeout_s: float = 10.0, max_attempts: int = 5, breaker_failures: int = 5,
                 breaker_open_s: float = 30.0, max_inline_wait_s: float = 10.0,
                 transport: httpx.BaseTransport | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.redis = redis_client
        self.rate_per_s, self.burst = rate_per_s, burst
        self.max_attempts = max_attempts
        self.breaker_failures, self.breaker_open_s = breaker_failures, breaker_open_s
        self.max_inline_wait_s = max_inline_wait_s
        self.sleep = sleep
        self.http = httpx.Client(timeout=timeout_s, transport=transport)
        self._bucket = self.redis.register_script(TOKEN_BUCKET)

    # ---- the calls ---------------------------------------------------------------------------------

    def submit_job(self, endpoint: PartnerEndpoint, body: Mapping[str, Any]) -> PartnerJob:
        """Submit one job, idempotent on `external_id`; after an unknown outcome, ask before resubmitting.

        The unknown outcome is remembered in Redis until a lookup settles it, so when the lookup itself cannot get
        through (the partner down, the circuit open) the next call — this message's redelivery or another
        worker's — asks first too instead of posting blind.
        """
        external_id = str(body["external_id"])
        unsettled = f"pressroom:partner:{endpoint.partner_id}:unknown:{external_id}"
        if self.redis.exists(unsettled):
            log.info("partner %s: an earlier submit of %s is unsettled; asking first", endpoint.partner_id,
                     external_id)
            existing = self.find_job(endpoint, external_id)
            self.redis.delete(unsettled)
            if existing is not None:
                return existing
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._request(endpoint, "POST", "/v1/jobs", json=dict(body))
            except _Unknown as unknown:
                log.warning("partner %s: submit of %s had an unknown outcome (%s); asking first",
                            endpoint.partner_id, external_id, unknown)
                self.redis.set(unsettled, 1, ex=UNSETTLED_TTL_S)
                existing = self.find_job(endpoint, external_id)
                self.redis.delete(unsettled)
                if existing is not None:
                    return existing
                self._backoff(attempt)
                continue
            return _job(response.json())
        raise PartnerUnavailable(f"partner {endpoint.partner_id}: submit did not get through")

    def find_job(self, endpoint: PartnerEndpoint, external_id: str) -> PartnerJob | None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._request(endpoint, "GET", "/v1/jobs", params={"external_id": external_id},
                                         not_found_ok=True)
            except _Unknown:
                self._backoff(attempt)
                continue
            return None if response.status_code == 404 else _job(response.json())
        raise PartnerUnavailable(f"partner {endpoint.partner_id}: lookup did not get through")

    def photo(self, endpoint: PartnerEndpoint, url: str) -> bytes | None:
        """The partner's photo of a printed item (an absolute URL from its webhook); None when the partner says it
        has none (404: expired from its store, or the camera never took one)."""
        base = endpoint.base_url.rstrip("/")
        path = url[len(base):] if url.startswith(base) else None
        if path is None:
            raise PartnerRefused(f"partner {endpoint.partner_id}: photo URL {url[:80]!r} is not on its API")
        try:
            response = self._request(endpoint, "GET", path, not_found_ok=True)
        except _Unknown as unknown:
            raise PartnerUnavailable(f"partner {endpoint.partner_id}: photo not reachable ({unknown})") from None
        return None if response.status_code == 404 else response.content

    def stock(self, endpoint: PartnerEndpoint) -> dict[str, int]:
        try:
            response = self._request(endpoint, "GET", "/v1/stock")
        except _Unknown as unknown:
            raise PartnerUnavailable(f"partner {endpoint.partner_id}: stock not reachable ({unknown})") from None
        return {row["sku"]: int(row["on_hand"]) for row in response.json()["stock"]}

    def cancel(self, endpoint: PartnerEndpoint, partner_job_id: str) -> bool:
        """True when cancelled; False when the partner says it is too late (already printing)."""
        try:
            response = self._request(endpoint, "POST", f"/v1/jobs/{partner_job_id}/cancel", conflict_ok=True)
        except _Unknown as unknown:
            raise PartnerUnavailable(f"partner {endpoint.partner_id}: cancel not confirmed ({unknown})") from None
        return response.status_code == 200

    # ---- plumbing ----------------------------------------------------------------------------------

    def _request(self, endpoint: PartnerEndpoint, method: str, path: str, *, not_found_ok: bool = False,
                 conflict_ok: bool = False, **kwargs) -> httpx.Response:
        self._check_breaker(endpoint.partner_id)
        self._take_token(endpoint.partner_id)
        try:
            response = self.http.request(method, endpoint.base_url.rstrip("/") + path,
                                         headers={"Authorization": f"Bearer {endpoint.api_key}"}, **kwargs)
        except (httpx.TimeoutException, httpx.TransportError) as error:
            self._failure(endpoint.partner_id)
            raise _Unknown(type(error).__name__) from error
        if response.status_code == 429 or response.status_code >= 500:
            if response.status_code != 429:  # throttling is the partner working as agreed, not failing
                self._failure(endpoint.partner_id)
            wait = _retry_after(response) or 2.0
            if response.status_code == 429 and wait <= self.max_inline_wait_s:
                self.sleep(wait + random.uniform(0, 0.25 * wait))
                return self._request(endpoint, method, path, not_found_ok=not_found_ok, conflict_ok=conflict_ok,
                                     **kwargs)
            raise PartnerUnavailable(f"partner {endpoint.partner_id} answered {response.status_code}",
                                     retry_after_s=wait)
        self._success(endpoint.partner_id)
        if response.status_code == 404 and not_found_ok or response.status_code == 409 and conflict_ok:
            return response
        if response.status_code >= 400:
            raise PartnerRefused(f"partner {endpoint.partner_id} refused {method} {path}: "
                                 f"{response.status_code} {response.text[:200]}")
        return response

    def _take_token(self, partner_id: str) -> None:
        while True:
            wait = float(self._bucket(keys=[f"pressroom:bucket:{partner_id}"],
                                      args=[self.rate_per_s, self.burst, time.time()]))
            if wait <= 0:
                return
            self.sleep(wait)

    def _check_breaker(self, partner_id: str) -> None:
        ttl = self.redis.pttl(f"pressroom:breaker:{partner_id}:open")
        if ttl and ttl > 0:
            raise PartnerUnavailable(f"partner {partner_id}: circuit open after repeated failures",
                                     retry_after_s=ttl / 1000)

    def _failure(self, partner_id: str) -> None:
        key = f"pressroom:breaker:{partner_id}:failures"
        failures = self.redis.incr(key)
        self.redis.expire(key, max(1, int(self.breaker_open_s * 2)))
        if failures >= self.breaker_failures:
            self.redis.set(f"pressroom:breaker:{partner_id}:open", 1, px=int(self.breaker_open_s * 1000))
            self.redis.delete(key)
            log.warning("partner %s: circuit opened for %.0fs", partner_id, self.breaker_open_s)

    def _success(self, partner_id: str) -> None:
        self.redis.delete(f"pressroom:breaker:{partner_id}:failures")

    def _backoff(self, attempt: int) -> None:
        self.sleep(min(10.0, 0.25 * 2 ** attempt) * random.uniform(0.5, 1.0))


class _Unknown(Exception):
    """The request may or may not have reached the partner (timeout, reset)."""


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _job(data: Mapping[str, Any]) -> PartnerJob:
    return PartnerJob(id=str(data["id"]), external_id=str(data["external_id"]), status=str(data["status"]),
                      created=bool(data.get("created", False)))
