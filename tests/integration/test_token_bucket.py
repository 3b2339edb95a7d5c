"""The Redis-shared token bucket every outbound client takes from, and the carrier's pause on Retry-After: whatever
order the workers' calls reach Redis in, they never get more than the rate, and one 429 pauses them all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from adapters.carrier import PAUSE_KEY, EasyPostCarrier
from adapters.partners import TOKEN_BUCKET
from core.commands import Address
from sims.carrier import BackgroundServer, CarrierSimConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ADDRESS = Address(name="Ada Lovelace", line1="417 Montgomery St", line2="Fl 5", city="San Francisco", region="CA",
                  postal_code="94104", country="US")


@pytest.fixture
def client(redis_url) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def take(bucket, *, now: float, rate: float = 1.0, burst: int = 2) -> float:
    """One worker's call: the seconds it must wait (0: it had a token)."""
    return float(bucket(keys=["pressroom:bucket:test"], args=[rate, burst, now]))


def test_a_call_whose_clock_reading_arrives_late_does_not_make_the_bucket_refill_twice(client):
    # given a bucket of 1 token/s with a burst of 2, and two workers whose clock readings reach Redis out of order
    bucket = client.register_script(TOKEN_BUCKET)
    assert take(bucket, now=100.0) == 0  # 2 → 1
    assert take(bucket, now=100.5) == 0  # 1.5 → 0.5
    # when a call read its clock at 100.2 but reached Redis after the one at 100.5
    assert take(bucket, now=100.2) == pytest.approx(0.5)
    # then at 101.0 exactly 0.5 s has passed since 100.5: one token, and the next caller waits a whole second
    assert take(bucket, now=101.0) == 0
    assert take(bucket, now=101.0) == pytest.approx(1.0)


def test_over_any_window_the_bucket_grants_no_more_than_its_burst_plus_its_rate(client):
    # given 5 tokens/s, a burst of 3, and callers asking every 10 ms for 2 s, their readings shuffled a little
    bucket = client.register_script(TOKEN_BUCKET)
    times = [1000 + n * 0.01 for n in range(200)]
    for n in range(0, len(times) - 1, 2):  # neighbours swapped: the later reading lands first
        times[n], times[n + 1] = times[n + 1], times[n]
    # when each takes a token if there is one
    granted = sum(1 for t in times if take(bucket, now=t, rate=5.0, burst=3) == 0)
    # then no more than burst + rate × elapsed went through
    assert granted <= 3 + 5.0 * (max(times) - min(times)) + 1e-9


@pytest.fixture
def carrier_sim() -> Iterator[BackgroundServer]:
    with BackgroundServer(CarrierSimConfig(webhook_url=None, seed=3)) as server:
        yield server


def test_one_429_pauses_every_client_sharing_redis_for_its_retry_after(carrier_sim, client):
    # given two carrier clients (two worker processes) on one Redis, and a carrier about to refuse one request
    slept_a: list[float] = []
    slept_b: list[float] = []
    a = EasyPostCarrier("EZTK_test", carrier_sim.api_base, redis_client=client, rate_per_s=100, burst=10,
                        sleep=slept_a.append)
    b = EasyPostCarrier("EZTK_test", carrier_sim.api_base, redis_client=client, rate_per_s=100, burst=10,
                        sleep=slept_b.append)
    carrier_sim.sim.control({"rate_limit_next": 1, "retry_after_seconds": 5})
    # when the first client is refused with Retry-After: 5, waits it out (its sleep returns at once here) and
    # gets through
    assert a.verify_address(ADDRESS).ok
    # then it waited about the 5 s asked, and the pause is shared: the second client waits before it calls
    assert slept_a and 5 <= slept_a[0] <= 5.5
    assert client.pttl(PAUSE_KEY) > 0
    assert b.verify_address(ADDRESS).ok
    assert slept_b and 0 < slept_b[0] <= 5
    assert carrier_sim.sim.ledger()["requests"] == {"total": 3, "rate_limited": 1, "rate_limited_by_rate": 0,
                                                    "server_errors": 0, "unauthorized": 0}
