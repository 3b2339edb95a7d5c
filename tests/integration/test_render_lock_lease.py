"""The render stage's per-design lock lives on a short lease renewed while the render runs, so a worker killed
while holding it blocks the design for the lease, not the actor's 10-minute time limit (found by the soak)."""

from __future__ import annotations

import time

import pytest
import redis

from workers.render import leased_lock

pytestmark = pytest.mark.integration
NAME = "pressroom:render-lock:test-design"


def test_a_held_render_lock_never_outlives_its_lease_yet_stays_held_while_the_render_runs(redis_url):
    client = redis.Redis.from_url(redis_url)
    # given a worker holding the design's lock on a 1 s lease
    with leased_lock(client, NAME, wait_s=5, lease_s=1.0):
        for _ in range(3):  # when the render runs for three leases
            # then at every moment the lock would expire within the lease if its holder died now
            assert 0 < client.pttl(NAME) <= 1000
            time.sleep(1.0)
        # and it is still the holder's: another worker cannot take it
        assert not client.lock(NAME, timeout=1).acquire(blocking=False)
    # and it is released as the render ends
    assert not client.exists(NAME)


def test_a_worker_waits_for_a_design_lock_its_holder_left_behind_only_until_the_lease_runs_out(redis_url):
    client = redis.Redis.from_url(redis_url)
    # given a holder that took the lock on a 1 s lease and died (never renewed, never released)
    assert client.lock(NAME, timeout=1.0).acquire(blocking=False)
    # when another worker asks for it, willing to wait the time limit
    with leased_lock(client, NAME, wait_s=60, lease_s=1.0):
        # then it gets it (the wait ended with the lease; a wait to the limit would have raised LockError)
        assert client.exists(NAME)
