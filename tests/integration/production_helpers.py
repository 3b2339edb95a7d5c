"""Shared by the partner integration tests: servers on loopback, orders taken through the production gate
against the partner sim, signed partner webhooks, and a recording httpx transport (the third-party edge)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis
import uvicorn
from sqlalchemy import select

from adapters.partners import PartnerClient, PartnerEndpoint
from core.services.production import ProductionRules, batch_ready_jobs, route_order, submit_batch
from core.services.render import render_order
from db import tables as t
from sims.partner import SimConfig
from sims.partner import create_app as create_sim
from tests.conftest import TEST_KEYS

ROOT = Path(__file__).resolve().parents[2]
DEAD_URL = "http://127.0.0.1:9"  # nothing listens on the discard port: the sim's own webhooks go nowhere
DESTINATIONS = (  # one per partner region, so several partners and batches take part
    {"name": "Ada Lovelace", "line1": "12 Marylebone Rd", "city": "London", "region": "LND",
     "postal_code": "NW1 5LR", "country": "GB"},
    {"name": "Max Planck", "line1": "Unter den Linden 6", "city": "Berlin", "region": "BE",
     "postal_code": "10117", "country": "DE"},
    {"name": "Grace Hopper", "line1": "350 5th Ave", "city": "New York", "region": "NY",
     "postal_code": "10118", "country": "US"},
    {"name": "Hedy Lamarr", "line1": "6801 Hollywood Blvd", "city": "Los Angeles", "region": "CA",
     "postal_code": "90028", "country": "US"},
    {"name": "Ursula Franklin", "line1": "100 Queen St W", "city": "Toronto", "region": "ON",
     "postal_code": "M5H 2N2", "country": "CA"},
    {"name": "Ruby Payne-Scott", "line1": "1 Flinders St", "city": "Melbourne", "region": "VIC",
     "postal_code": "3000", "country": "AU"},
)
SIZES = ("TEE-DTG-BLK-S", "TEE-DTG-BLK-M", "TEE-DTG-BLK-L", "TEE-DTG-BLK-XL")  # one render, cached for all


# ---- servers on loopback ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(app, *, timeout: float = 15.0) -> Iterator[str]:
    """Serve an ASGI app over real HTTP from a thread of this process (lifespan included); yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError(f"uvicorn on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def quiet_sim_config(**changes) -> SimConfig:
    """The partner sim with nothing moving on its own during a test: partner time runs at real speed (a job
    sits in prepress for five minutes), its webhooks give up at once, and the API rate limit is generous."""
    defaults = {"time_scale": 1.0, "webhook_max_attempts": 1, "rate_limit_per_s": 1000.0, "photo_workers": 1,
                "callback_base": DEAD_URL, "seed": 7}
    return SimConfig(**(defaults | changes))


@contextmanager
def serve_sim(**changes) -> Iterator[str]:
    """The partner sim (quiet_sim_config) over real HTTP; its given-up webhooks are expected, so not logged."""
    sim_log = logging.getLogger("sims.partner")
    level = sim_log.level
    sim_log.setLevel(logging.ERROR)
    try:
        with serve(create_sim(quiet_sim_config(**changes))) as url:
            yield url
    finally:
        sim_log.setLevel(level)


def sim_control(sim_url: str, **knobs) -> dict:
    response = httpx.post(f"{sim_url}/sim/control", json=knobs, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def sim_ledger(sim_url: str) -> dict:
    return httpx.get(f"{sim_url}/sim/ledger", timeout=5).json()


def endpoint(sim_url: str, partner_id: str) -> PartnerEndpoint:
    return PartnerEndpoint(partner_id=partner_id, base_url=f"{sim_url}/partners/{partner_id}",
                           api_key=f"pk_dev_{partner_id}")


@dataclass
class Processes:
    """Pressroom processes started the way the Procfile starts them, stopped by their own process group."""

    env: dict[str, str]
    logs: Path
    api_url: str = ""
    running: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, *argv: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.running[name] = subprocess.Popen(list(argv), cwd=ROOT, env=self.env, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)

    def assert_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.running.items() if p.poll() is not None}
        if dead:
            tails = {n: (self.logs / f"{n}.log").read_text()[-3000:] for n in dead}
            raise AssertionError(f"processes died: {dead}\n{tails}")

    def wait_http(self, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            self.assert_alive()
            time.sleep(0.2)
        raise AssertionError(f"{url} did not answer within {timeout}s; logs in {self.logs}")

    def stop(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


@contextmanager
def pressroom_processes(pg_url: str, redis_url: str, tmp_path: Path, *, api_workers: int = 3,
                        worker_threads: int = 8, queues: tuple[str, ...] = ("webhooks",)) -> Iterator[Processes]:
    """The API (uvicorn, several worker processes) and a Dramatiq worker on the given queues, over PG + Redis.

    The Dramatiq worker consumes only `queues`, so messages for later stages (QA) stay in Redis to be counted.
    """
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    port = free_port()
    env = {**os.environ, **TEST_KEYS, "DATABASE_URL": pg_url, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT),
           "OBJECT_STORE_DIR": str(tmp_path / "objects"), "PRESSROOM_PROMETHEUS": "0",
           "PRESSROOM_API_URL": f"http://127.0.0.1:{port}", "dramatiq_queue_prefetch": "16"}
    processes = Processes(env=env, logs=logs, api_url=f"http://127.0.0.1:{port}")
    try:
        processes.start("api", str(Path(sys.executable).with_name("uvicorn")), "api.asgi:app", "--host",
                        "127.0.0.1", "--port", str(port), "--workers", str(api_workers), "--no-access-log")
        processes.start("worker", sys.executable, "-m", "workers", "workers.actors", "--processes", "1",
                        "--threads", str(worker_threads), "--queues", *queues)
        yield processes
    finally:
        processes.stop()


# ---- orders taken to the production gate -----------------------------------------------------------------


def place_orders(harness, *, orders: int, units: int) -> list[str]:
    """Storefront orders through the real API: one artwork, sizes and destinations spread over partners."""
    art = harness.upload()
    ids = []
    for n in range(orders):
        body = harness.order_body(art["id"], shipping_address=DESTINATIONS[n % len(DESTINATIONS)],
                                  lines=[{"sku": SIZES[n % len(SIZES)], "quantity": units,
                                          "artwork_id": art["id"], "texts": {"headline": "Best Dad Ever"}}])
        response = harness.client.post("/v1/orders", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def release_to_partners(services, order_ids: list[str]) -> list[str]:
    """Render, route and batch the orders as the workers would, and release every batch (by age)."""
    rules = ProductionRules()
    for order_id in order_ids:
        assert render_order(order_id, uow=services.uow(), store=services.store, now=services.now,
                            clock=time.perf_counter) == "rendered"
        assert route_order(order_id, uow=services.uow(), now=services.now(), rules=rules) == "routed"
    released = batch_ready_jobs(services.uow(), now=services.now(), rules=rules, new_id=services.ids.new)
    later = services.now() + rules.batching.max_wait + timedelta(seconds=1)
    released += batch_ready_jobs(services.uow(), now=later, rules=rules, new_id=services.ids.new)
    return released


def submit_all(services, batch_ids: list[str], sim_url: str, *, client: PartnerClient | None = None) -> None:
    """The production gate, against the partner sim over HTTP (file and callback URLs lead nowhere)."""
    client = client or PartnerClient(redis.Redis.from_url(services.settings.redis_url), rate_per_s=500, burst=500)
    for batch_id in batch_ids:
        assert submit_batch(batch_id, uow=services.uow(), client=client,
                            endpoint_for=lambda pid: endpoint(sim_url, pid),
                            file_url=lambda asset_id: f"{DEAD_URL}/assets/{asset_id}/print.png",
                            callback_url=lambda pid: f"{DEAD_URL}/webhooks/partners/{pid}",
                            now=services.now) == "submitted"


@dataclass(frozen=True, slots=True)
class SubmittedJob:
    id: str
    order_id: str
    partner_id: str
    partner_job_id: str


def submitted_jobs(engine) -> list[SubmittedJob]:
    j = t.print_jobs
    with engine.connect() as conn:
        rows = conn.execute(select(j.c.id, j.c.order_id, j.c.partner_id, j.c.partner_job_id, j.c.status)
                            .order_by(j.c.id)).all()
    assert rows and {r.status for r in rows} == {"submitted"}, {r.status for r in rows}
    return [SubmittedJob(r.id, r.order_id, r.partner_id, r.partner_job_id) for r in rows]


# ---- partner webhooks -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook POST as a partner sends it: path, headers and the exact raw body bytes."""

    path: str
    headers: dict[str, str]
    body: bytes
    event_id: str


def partner_event(job: SubmittedJob, status: str, *, at: datetime, sim_url: str) -> tuple[str, bytes]:
    """A job.status event body, serialised the way the sim serialises it; returns (event id, raw body)."""
    event_id = f"evt_{secrets.token_hex(12)}"
    photo = f"{sim_url}/partners/{job.partner_id}/v1/jobs/{job.partner_job_id}/photo" \
        if status in ("printed", "ready_for_shipment") else None
    body = json.dumps({"event_id": event_id, "occurred_at": at.isoformat(timespec="milliseconds"),
                       "type": "job.status", "job": {"id": job.partner_job_id, "external_id": job.id,
                                                     "status": status, "photo_url": photo}},
                      separators=(",", ":")).encode()
    return event_id, body


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed(partner_id: str, event_id: str, body: bytes, *, secret: str | None = None) -> Delivery:
    return Delivery(path=f"/webhooks/partners/{partner_id}", body=body, event_id=event_id, headers={
        "Content-Type": "application/json", "X-Partner-Id": partner_id, "X-Partner-Event-Id": event_id,
        "X-Partner-Signature": signature(secret or f"whsec_dev_{partner_id}", body)})


def now_utc() -> datetime:
    return datetime.now(UTC)


# ---- the HTTP edge, recorded -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request the partner client made: when, what, and what came back (None when it raised)."""

    started: float
    ended: float
    method: str
    path: str
    status: int | None
    retry_after: float | None
    external_id: str | None
    error: str | None = None


class RecordingTransport(httpx.BaseTransport):
    """httpx's real HTTP transport, recording every exchange; `fault(request, response)` may turn an exchange
    into an error: before sending (response is None) or after the partner answered (the answer is lost)."""

    def __init__(self, fault: Callable[[httpx.Request, httpx.Response | None], Exception | None] | None = None):
        self.inner = httpx.HTTPTransport()
        self.fault = fault
        self.log: list[Exchange] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        external_id = _external_id(request)
        error = self.fault(request, None) if self.fault else None
        if error is not None:
            self._record(started, request, None, external_id, type(error).__name__)
            raise error
        response = self.inner.handle_request(request)
        response.read()
        error = self.fault(request, response) if self.fault else None
        self._record(started, request, response, external_id, type(error).__name__ if error else None)
        if error is not None:
            response.close()
            raise error
        return response

    def _record(self, started, request, response, external_id, error) -> None:
        retry_after = response.headers.get("Retry-After") if response is not None else None
        with self._lock:
            self.log.append(Exchange(started=started, ended=time.monotonic(), method=request.method,
                                     path=request.url.path, status=response.status_code if response else None,
                                     retry_after=float(retry_after) if retry_after else None,
                                     external_id=external_id, error=error))

    def close(self) -> None:
        self.inner.close()


def _external_id(request: httpx.Request) -> str | None:
    if request.method == "GET":
        return request.url.params.get("external_id")
    try:
        return json.loads(request.content).get("external_id")
    except (ValueError, AttributeError):
        return None
