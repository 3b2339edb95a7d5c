"""The partner client against the partner sim over real HTTP, with Redis for the shared token bucket and the
circuit breaker: a 429 storm, an outage and unknown outcomes delay work but never lose or duplicate a job."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
import redis
from sqlalchemy import select

from adapters.partners import PartnerClient, PartnerJob, PartnerUnavailable
from core.services.reconcile import reconcile
from core.states import JobStatus, OrderStatus
from db import tables as t
from tests.integration.production_helpers import (
    DEAD_URL,
    Exchange,
    RecordingTransport,
    endpoint,
    place_orders,
    release_to_partners,
    serve_sim,
    sim_control,
    sim_ledger,
    submit_all,
)
from tests.integration.test_intake_on_postgres import RedisHarness

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PARTNER = "spree-berlin"
OTHER = "acme-columbus"


@pytest.fixture
def sim(redis_url) -> str:
    """The partner sim over real HTTP on loopback (and an emptied Redis for buckets and breakers)."""
    with serve_sim() as url:
        yield url


def client_for(redis_url: str, transport: RecordingTransport, **options) -> PartnerClient:
    settings = {"rate_per_s": 1000.0, "burst": 1000, "timeout_s": 5.0, "breaker_failures": 5,
                "breaker_open_s": 1.0} | options
    return PartnerClient(redis.Redis.from_url(redis_url), transport=transport, **settings)


def job_body(n: int, partner_id: str = PARTNER) -> dict:
    return {"external_id": f"job_fault_{n:03d}", "batch_id": None, "sku": "TEE-DTG-BLK-M", "product_type": "tshirt",
            "print_method": "dtg", "print_file_url": f"{DEAD_URL}/print.png", "print_file_sha256": None,
            "width": 4500, "height": 5400, "dpi": 300, "priority": 1.0, "ship_to_region": "eu",
            "callback_url": f"{DEAD_URL}/webhooks/partners/{partner_id}"}


def as_the_actor_would(attempt: Callable[[], object], *, deadline: float, cap_s: float = 2.0,
                       failures: list | None = None, transport: RecordingTransport | None = None):
    """Call until it gets through; after PartnerUnavailable wait as told (capped), like a retried message.

    Each failure is recorded as (message, retry_after_s, seconds taken, HTTP requests made)."""
    while True:
        requests_before = len(transport.log) if transport else 0
        started = time.monotonic()
        try:
            return attempt()
        except PartnerUnavailable as error:
            if failures is not None:
                made = len(transport.log) - requests_before if transport else -1
                failures.append((str(error), error.retry_after_s, time.monotonic() - started, made))
            assert time.monotonic() < deadline, f"still unavailable at the deadline: {error}"
            time.sleep(min(max(error.retry_after_s, 0.05), cap_s))


def partner_job(sim_url: str, external_id: str, partner_id: str = PARTNER) -> dict:
    response = httpx.get(f"{sim_url}/partners/{partner_id}/v1/jobs", params={"external_id": external_id},
                         headers={"Authorization": f"Bearer pk_dev_{partner_id}"}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


# ---- 429 storm and the shared token bucket ---------------------------------------------------------------


def test_a_429_storm_delays_submissions_but_every_job_is_created_exactly_once(sim, redis_url):
    # given a partner throttling at 4 requests/s, and 8 workers that each submit 4 jobs without coordinating
    sim_control(sim, partner_id=PARTNER, rate_limit_per_s=4)
    transports = [RecordingTransport() for _ in range(8)]
    deadline = time.monotonic() + 45

    def worker(w: int) -> list[PartnerJob]:
        client = client_for(redis_url, transports[w])
        return [as_the_actor_would(lambda n=n: client.submit_job(endpoint(sim, PARTNER), job_body(n)),
                                   deadline=deadline) for n in range(w * 4, w * 4 + 4)]

    # when they all submit at once
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        accepted = [job for jobs in pool.map(worker, range(8)) for job in jobs]
    elapsed = time.monotonic() - started

    # then the storm happened, and still every job was created exactly once, under the id we were given
    ledger = sim_ledger(sim)
    assert ledger["rate_limited"] >= 10, ledger
    assert (ledger["jobs_created"], ledger["duplicate_creates"], ledger.get("repeat_submits", 0)) == (32, 0, 0)
    assert set(ledger["by_external_id"].values()) == {1} and len(ledger["by_external_id"]) == 32
    sim_control(sim, partner_id=PARTNER, rate_limit_per_s=1000)  # the storm is over: let the test look
    assert {job.external_id: job.id for job in accepted} == {
        job_body(n)["external_id"]: partner_job(sim, job_body(n)["external_id"])["id"] for n in range(32)}
    # and after every 429 a worker waited at least the Retry-After it was given before its next request
    throttled = 0
    for transport in transports:
        for answer, following in zip(transport.log, transport.log[1:], strict=False):
            if answer.status == 429:
                throttled += 1
                assert answer.retry_after is not None and answer.retry_after >= 1
                assert following.started - answer.ended >= answer.retry_after - 0.01, (answer, following)
    assert throttled == ledger["rate_limited"]
    assert Counter(x.status for tr in transports for x in tr.log)[201] == 32
    print(f"\n429 storm: 32 jobs by 8 workers at 4 req/s: {throttled} × 429 (Retry-After honoured), "
          f"32 created, 0 duplicates, {elapsed:.1f} s")


def test_workers_sharing_the_redis_token_bucket_stay_under_the_partners_rate_limit(sim, redis_url):
    # given a partner allowing 10 requests/s, and three workers whose shared bucket allows 5/s (burst 5)
    sim_control(sim, partner_id=PARTNER, rate_limit_per_s=10)
    transports = [RecordingTransport() for _ in range(3)]
    clients = [client_for(redis_url, tr, rate_per_s=5.0, burst=5) for tr in transports]

    # when they submit 24 jobs between them as fast as they can
    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda n: clients[n % 3].submit_job(endpoint(sim, PARTNER), job_body(n)), range(24)))
    elapsed = time.monotonic() - started

    # then the partner never had to say 429: the bucket in Redis paced all three together
    ledger = sim_ledger(sim)
    assert ledger.get("rate_limited", 0) == 0 and ledger["jobs_created"] == 24 and ledger["duplicate_creates"] == 0
    assert elapsed >= (24 - 5) / 5 - 0.3, elapsed
    assert sum(len(tr.log) for tr in transports) == 24


# ---- outages and the circuit breaker ---------------------------------------------------------------------


def test_during_an_outage_the_circuit_opens_fails_fast_and_submission_resumes_when_it_ends(sim, redis_url):
    # given a partner that is down for maintenance (503 with Retry-After), and another that is up
    sim_control(sim, partner_id=PARTNER, outage_s=30)
    transport = RecordingTransport()
    client = client_for(redis_url, transport, breaker_failures=3, breaker_open_s=1.0)
    down = endpoint(sim, PARTNER)

    # when a worker tries three times, each try is a 503 the actor will retry, with the partner's Retry-After
    for _ in range(3):
        with pytest.raises(PartnerUnavailable, match="answered 503") as failure:
            client.submit_job(down, job_body(1))
        assert 1 <= failure.value.retry_after_s <= 30
    assert [x.status for x in transport.log] == [503, 503, 503]

    # then the circuit is open: the next try fails at once without calling the partner
    started = time.monotonic()
    with pytest.raises(PartnerUnavailable, match="circuit open") as failure:
        client.submit_job(down, job_body(1))
    assert time.monotonic() - started < 0.2 and len(transport.log) == 3
    assert 0 < failure.value.retry_after_s <= 1.0
    # and only that partner's circuit: the other partner still takes jobs
    assert client.submit_job(endpoint(sim, OTHER), job_body(2, OTHER)).status == "queued"

    # when the outage ends and the circuit's time is up
    sim_control(sim, partner_id=PARTNER, outage_s=0)
    time.sleep(failure.value.retry_after_s + 0.05)
    job = client.submit_job(down, job_body(1))

    # then the job is created once, and nothing was created while the partner was down
    ledger = sim_ledger(sim)
    assert job.id == partner_job(sim, job_body(1)["external_id"])["id"]
    assert ledger["by_external_id"] == {job_body(1)["external_id"]: 1, job_body(2, OTHER)["external_id"]: 1}
    assert ledger["outage_rejections"] == 3 and ledger["duplicate_creates"] == 0


def test_an_outage_midway_through_a_batch_delays_the_rest_without_losing_or_duplicating_a_job(
        pg_url, redis_url, tmp_path):
    # given 12 jobs (4 orders × 3 units) in released batches, on PostgreSQL
    harness = RedisHarness(pg_url, tmp_path)
    batches = release_to_partners(harness.services, place_orders(harness, orders=4, units=3))
    engine = harness.services.engine
    with serve_sim() as sim_url:
        # and a partner world that goes down for 4 s right after the fifth job is created
        created, lock = [0], threading.Lock()

        def outage_after_fifth(request: httpx.Request, response: httpx.Response | None) -> None:
            if response is not None and response.status_code == 201:
                with lock:
                    created[0] += 1
                    if created[0] == 5:
                        sim_control(sim_url, outage_s=4)

        transport = RecordingTransport(outage_after_fifth)
        client = client_for(redis_url, transport, breaker_failures=3, breaker_open_s=1.0)
        failures: list = []

        # when each batch's SubmitBatch message is retried until it gets through, as Dramatiq would
        started = time.monotonic()
        for batch_id in batches:
            as_the_actor_would(lambda b=batch_id: submit_all(harness.services, [b], sim_url, client=client),
                               deadline=started + 45, cap_s=0.5, failures=failures, transport=transport)
        elapsed = time.monotonic() - started
        ledger = sim_ledger(sim_url)
        at_partner = {job_id: partner_job(sim_url, job_id, pid)["id"]
                      for job_id, pid in _jobs(engine, t.print_jobs.c.partner_id)}

    # then the outage was felt: 503s with Retry-After, then an open circuit that called nobody
    kinds = Counter("503" if "answered 503" in message else "open" if "circuit open" in message else message
                    for message, *_ in failures)
    assert kinds["503"] >= 3 and kinds["open"] >= 1 and set(kinds) <= {"503", "open"}, kinds
    assert all(made == 0 and took < 0.5 for message, _, took, made in failures if "circuit open" in message)
    assert all(1 <= retry_after <= 4 for message, retry_after, *_ in failures if "answered 503" in message)
    # and afterwards every job is submitted exactly once, with the partner's id for it, none lost or doubled
    assert (ledger["jobs_created"], ledger["duplicate_creates"], ledger.get("repeat_submits", 0)) == (12, 0, 0)
    assert dict(_jobs(engine, t.print_jobs.c.partner_job_id)) == at_partner
    with engine.connect() as conn:
        jobs = Counter(conn.scalars(select(t.print_jobs.c.status)))
        orders = Counter(conn.scalars(select(t.orders.c.status)))
        batch_states = Counter(conn.scalars(select(t.batches.c.status)))
        submitted_events = Counter(conn.scalars(select(t.order_events.c.payload["entity_id"].as_string())
                                                .where(t.order_events.c.type == "job.submitted")))
    assert jobs == {JobStatus.SUBMITTED: 12} and orders == {OrderStatus.IN_PRODUCTION: 4}, (jobs, orders)
    assert set(batch_states) == {"submitted"}
    assert len(submitted_events) == 12 and set(submitted_events.values()) == {1}
    print(f"\noutage mid-batch: 12 jobs, {kinds['503']} × 503 + {kinds['open']} fast fails behind the open "
          f"circuit; all 12 created once, in {elapsed:.1f} s")


def _jobs(engine, column) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(t.print_jobs.c.id, column)
                                                   .order_by(t.print_jobs.c.id))]


# ---- unknown outcomes: ask before resubmitting -----------------------------------------------------------


@pytest.mark.parametrize("lost_answer", [httpx.ReadTimeout, httpx.RemoteProtocolError],
                         ids=["read-timeout", "connection-dropped"])
def test_after_an_unknown_outcome_the_client_asks_the_partner_and_does_not_create_a_second_job(
        sim, redis_url, lost_answer):
    # given a network that loses the partner's answer to each job's first POST, after the partner committed it
    seen: set[str] = set()

    def lose_first_answer(request: httpx.Request, response: httpx.Response | None) -> Exception | None:
        external_id = _posted_external_id(request)
        if response is None or external_id is None or external_id in seen:
            return None
        seen.add(external_id)
        return lost_answer("the answer never arrived", request=request)

    transport = RecordingTransport(lose_first_answer)
    client = client_for(redis_url, transport)

    # when six jobs are submitted
    accepted = [client.submit_job(endpoint(sim, PARTNER), job_body(n)) for n in range(6)]

    # then each was created once, and the client learnt its id by asking (GET ?external_id), not by re-posting
    ledger = sim_ledger(sim)
    assert (ledger["jobs_created"], ledger["duplicate_creates"], ledger.get("repeat_submits", 0)) == (6, 0, 0)
    assert [job.id for job in accepted] == [partner_job(sim, job_body(n)["external_id"])["id"] for n in range(6)]
    assert _story(transport.log) == [("POST", 201, lost_answer.__name__), ("GET", 200, None)] * 6


def test_when_the_partner_never_got_the_request_the_client_asks_then_submits_once(sim, redis_url):
    # given a network that fails each job's first POST before it reaches the partner
    seen: set[str] = set()

    def refuse_first_connection(request: httpx.Request, response: httpx.Response | None) -> Exception | None:
        external_id = _posted_external_id(request)
        if response is not None or external_id is None or external_id in seen:
            return None
        seen.add(external_id)
        return httpx.ConnectTimeout("no route to the partner", request=request)

    transport = RecordingTransport(refuse_first_connection)
    client = client_for(redis_url, transport)

    # when four jobs are submitted
    accepted = [client.submit_job(endpoint(sim, PARTNER), job_body(n)) for n in range(4)]

    # then the client asked first (404: the partner has no such job), then submitted each exactly once
    ledger = sim_ledger(sim)
    assert (ledger["jobs_created"], ledger["duplicate_creates"], ledger.get("repeat_submits", 0)) == (4, 0, 0)
    assert all(job.created for job in accepted)
    assert _story(transport.log) == [("POST", None, "ConnectTimeout"), ("GET", 404, None), ("POST", 201, None)] * 4


def _posted_external_id(request: httpx.Request) -> str | None:
    if request.method != "POST" or not request.url.path.endswith("/v1/jobs"):
        return None
    return json.loads(request.content)["external_id"]


def _story(log: list[Exchange]) -> list[tuple[str, int | None, str | None]]:
    return [(x.method, x.status, x.error) for x in log]


# ---- lost messages: delayed, never lost ------------------------------------------------------------------


def test_a_released_batch_whose_submit_message_was_lost_is_sent_again_by_the_reconciler(
        pg_url, redis_url, tmp_path):
    # given released batches whose SubmitBatch messages were lost (Redis flushed before a worker took them)
    harness = RedisHarness(pg_url, tmp_path)
    batches = release_to_partners(harness.services, place_orders(harness, orders=2, units=1))
    redis.Redis.from_url(redis_url).flushdb()
    # when the reconciler runs a day later
    reconcile(harness.services.uow(), now=harness.services.now() + timedelta(days=1),
              deadlines_s=harness.services.settings.stage_deadlines_s)
    # then each batch's SubmitBatch message is back on the production queue
    client = redis.Redis.from_url(redis_url)
    queued = [json.loads(raw) for raw in client.hvals("dramatiq:production.msgs")]
    assert sorted(m["kwargs"].get("batch_id", "") for m in queued if m["actor_name"].endswith("submit_batch")) \
        == sorted(batches), [m["actor_name"] for m in queued]
