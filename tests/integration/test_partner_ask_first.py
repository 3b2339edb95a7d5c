"""A partner submit whose outcome is unknown is asked about before anything is posted again — also when the lookup
itself could not get through and the submit comes back later (the message's redelivery, another worker)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from adapters.partners import PartnerClient, PartnerUnavailable
from tests.integration.production_helpers import DEAD_URL, RecordingTransport, endpoint, serve_sim, sim_ledger

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PARTNER = "spree-berlin"
BODY = {"external_id": "job_ask_first_001", "batch_id": None, "sku": "TEE-DTG-BLK-M", "product_type": "tshirt",
        "print_method": "dtg", "print_file_url": f"{DEAD_URL}/print.png", "print_file_sha256": None,
        "width": 4500, "height": 5400, "dpi": 300, "priority": 1.0, "ship_to_region": "eu",
        "callback_url": f"{DEAD_URL}/webhooks/partners/{PARTNER}"}


@pytest.fixture
def sim(redis_url) -> Iterator[str]:
    with serve_sim() as url:
        yield url


def test_an_unsettled_submit_is_looked_up_first_on_the_next_call_even_after_its_lookup_failed(sim, redis_url):
    # given a network that loses the answer to the first POST (the partner committed it), then fails every
    # lookup until it is healed
    state = {"posts": 0, "healed": False}

    def fault(request: httpx.Request, response: httpx.Response | None) -> Exception | None:
        if request.method == "POST" and response is not None and state["posts"] == 0:
            state["posts"] += 1
            return httpx.ReadError("connection reset by peer", request=request)
        if request.method == "GET" and response is None and not state["healed"]:
            return httpx.ConnectTimeout("no route to the partner", request=request)
        return None

    transport = RecordingTransport(fault)
    client = PartnerClient(redis.Redis.from_url(redis_url), rate_per_s=1000.0, burst=1000, timeout_s=5.0,
                           max_attempts=3, breaker_failures=100, transport=transport, sleep=lambda _: None)

    # when the submit cannot settle its outcome, it gives up for now
    with pytest.raises(PartnerUnavailable):
        client.submit_job(endpoint(sim, PARTNER), BODY)
    # and when it is tried again once the network is healed (the actor's retry)
    state["healed"] = True
    job = client.submit_job(endpoint(sim, PARTNER), BODY)

    # then the retry asked before it posted: one POST in all, one job at the partner, found by asking
    story = [(x.method, x.status, x.error) for x in transport.log]
    assert story == [("POST", 201, "ReadError")] + [("GET", None, "ConnectTimeout")] * 3 + [("GET", 200, None)]
    ledger = sim_ledger(sim)
    assert (ledger["jobs_created"], ledger["duplicate_creates"], ledger.get("repeat_submits", 0)) == (1, 0, 0)
    assert job.external_id == BODY["external_id"]


def test_a_settled_submit_leaves_nothing_to_ask_about(sim, redis_url):
    # given a submit that got its answer
    transport = RecordingTransport()
    client = PartnerClient(redis.Redis.from_url(redis_url), rate_per_s=1000.0, burst=1000, transport=transport)
    client.submit_job(endpoint(sim, PARTNER), BODY)
    # when the same job is submitted again (a redelivered message)
    client.submit_job(endpoint(sim, PARTNER), BODY)
    # then it simply posts again (the partner dedupes on the external id); no lookup was needed
    assert [(x.method, x.external_id) for x in transport.log] == [
        ("POST", BODY["external_id"]), ("POST", BODY["external_id"])]
    assert sim_ledger(sim)["jobs_created"] == 1
