"""Print partner simulator: every catalogue partner behind one HTTP API, with honest faults and a QA camera."""

from __future__ import annotations

import argparse
import hashlib
import heapq
import hmac
import io
import json
import logging
import math
import os
import random
import secrets
import sys
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from sims.camera import DEFECT_KINDS, photograph, pick_defect

log = logging.getLogger(__name__)

CATALOGUE_PATH = Path(__file__).resolve().parents[1] / "db" / "seed_data" / "catalogue.json"
# The blank under the ink, by the catalogue's colour words: what a photo shows where no ink landed.
SUBSTRATE_COLOURS = {
    "black": (29, 29, 31),
    "white": (250, 250, 250),
    "navy": (31, 42, 68),
    "heather grey": (167, 169, 172),
    "matte": (251, 250, 247),
    "clear": (223, 231, 236),
}
NEUTRAL_SUBSTRATE = (200, 200, 200)
STOCK_RANGE = (40, 640)
MAX_BATCH_JOBS = 1000


class JobStatus(StrEnum):
    """A partner job's status, in the partner's words (docs/PARTNER_API.md)."""

    QUEUED = "queued"
    PRINTING = "printing"
    PRINTED = "printed"
    READY_FOR_SHIPMENT = "ready_for_shipment"
    CANCELLED = "cancelled"


# --------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True, kw_only=True)
class Outage:
    """A window, in real seconds from the sim's start, when a partner's API answers 503 (None = all)."""

    partner_id: str | None
    start_s: float
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Every knob of the sim; the run-time ones (rates, outages, time scale) change later via /sim/control.

    Times named `*_partner_s` are partner time, which runs `time_scale` times faster than real time;
    `time_scale=0` means no delay at all (benchmarks). Other times are real seconds.
    """

    catalogue_path: Path = CATALOGUE_PATH
    public_url: str = "http://127.0.0.1:8100"
    callback_base: str = "http://127.0.0.1:8000"
    seed: int = 0
    time_scale: float = 3600.0
    prepress_partner_s: float = 300.0     # a job waits at least this long queued before printing can start
    pack_partner_s: float = 900.0         # printed → ready_for_shipment
    defect_rate: float = 0.04
    defect_mix: Mapping[str, float] | None = None
    rate_limit_per_s: float = 50.0
    rate_limit_burst: float | None = None  # default: one second's worth
    outages: tuple[Outage, ...] = ()
    duplicate_rate: float = 0.0
    delay_rate: float = 0.0
    delay_max_s: float = 5.0
    stock_per_sku: int | None = None  # every blank starts with this many (benchmarks, soak); None: opening_stock()
    reorder_rate: float = 0.0
    reorder_gap_s: float = 0.2            # how long a held-back event trails the later one
    webhook_max_attempts: int = 10
    webhook_backoff_s: float = 0.5
    webhook_backoff_max_s: float = 30.0
    webhook_timeout_s: float = 5.0
    delivery_workers: int = 4
    fetch_attempts: int = 3
    fetch_backoff_s: float = 0.5
    fetch_timeout_s: float = 30.0
    photo_workers: int = 2
    photo_long_side: int = 1500
    photo_cap: int = 500                  # photos kept in memory; the oldest go first
    jpeg_quality: int = 88
    tick_s: float = 0.02
    api_keys: Mapping[str, str] = field(default_factory=dict)         # overrides of pk_dev_{id}
    webhook_secrets: Mapping[str, str] = field(default_factory=dict)  # overrides of whsec_dev_{id}


@dataclass(frozen=True, slots=True, kw_only=True)
class SkuSpec:
    """A blank a partner can print on, with the colour the camera sees under missing ink."""

    sku: str
    product_type: str
    print_method: str
    substrate: tuple[int, int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class PartnerSpec:
    """One partner as the catalogue describes it, plus its credentials and opening stock."""

    id: str
    name: str
    region: str
    country: str
    city: str
    lat: float
    lon: float
    capacity_per_hour: Mapping[str, float]
    skus: Mapping[str, SkuSpec]
    opening_stock: Mapping[str, int]
    api_key: str
    webhook_secret: str


def load_partners(config: SimConfig) -> list[PartnerSpec]:
    """Partners from the catalogue file: each prints the variants whose product's method it supports."""
    catalogue = json.loads(Path(config.catalogue_path).read_text(encoding="utf-8"))
    skus = [
        SkuSpec(sku=v["sku"], product_type=p["product_type"], print_method=p["print_method"],
                substrate=SUBSTRATE_COLOURS.get(v.get("colour", ""), NEUTRAL_SUBSTRATE))
        for p in catalogue["products"] for v in p["variants"]
    ]
    partners = []
    for raw in catalogue["partners"]:
        pid = raw["id"]
        capacity = {m: float(c) for m, c in raw["capacity_per_hour"].items() if float(c) > 0}
        own = {s.sku: s for s in skus if s.print_method in raw["print_methods"] and s.print_method in capacity}
        partners.append(PartnerSpec(
            id=pid, name=raw["name"], region=raw["region"], country=raw.get("country", ""),
            city=raw.get("city", ""), lat=float(raw["lat"]), lon=float(raw["lon"]),
            capacity_per_hour=capacity,
            skus=own, opening_stock={sku: config.stock_per_sku if config.stock_per_sku is not None
                                     else opening_stock(pid, sku) for sku in own},
            api_key=config.api_keys.get(pid, f"pk_dev_{pid}"),
            webhook_secret=config.webhook_secrets.get(pid, f"whsec_dev_{pid}"),
        ))
    return partners


def opening_stock(partner_id: str, sku: str) -> int:
    """Blank stock that is the same on every run, so inventory tests and demos are repeatable."""
    digest = hashlib.sha256(f"{partner_id}:{sku}".encode()).digest()
    low, high = STOCK_RANGE
    return low + int.from_bytes(digest[:4], "big") % (high - low + 1)


def sign(secret: str, body: bytes) -> str:
    """The X-Partner-Signature value: HMAC-SHA256 of the raw body, as the contract says."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------------
# State


@dataclass(slots=True, kw_only=True)
class Knobs:
    """The run-time knobs of one partner (POST /sim/control)."""

    time_scale: float
    rate_limit_per_s: float
    defect_rate: float
    defect_mix: Mapping[str, float] | None
    duplicate_rate: float
    delay_rate: float
    delay_max_s: float
    reorder_rate: float
    outages: list[tuple[float, float]]  # (start, end) on the monotonic clock

    def as_dict(self, now: float) -> dict[str, Any]:
        outage_left = max((end - now for start, end in self.outages if start <= now < end), default=0.0)
        return {
            "time_scale": self.time_scale, "rate_limit_per_s": self.rate_limit_per_s,
            "defect_rate": self.defect_rate, "defect_mix": dict(self.defect_mix) if self.defect_mix else None,
            "duplicate_rate": self.duplicate_rate, "delay_rate": self.delay_rate, "delay_max_s": self.delay_max_s,
            "reorder_rate": self.reorder_rate, "outage_remaining_s": round(outage_left, 3),
        }


@dataclass(slots=True)
class TokenBucket:
    """A partner's own rate limit: `rate` requests a second on average, bursts up to `burst`."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Spend one token; returns 0 when allowed, else the seconds until a token is due."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(slots=True, kw_only=True)
class Job:
    """One partner job and what the sim knows about it, including what the pipeline must never see."""

    id: str
    seq: int
    partner_id: str
    external_id: str
    batch_id: str | None
    partner_batch_id: str | None
    sku: str
    product_type: str
    print_method: str
    print_file_url: str
    print_file_sha256: str | None
    width: int
    height: int
    dpi: int
    priority: float
    ship_to_region: str | None
    callback_url: str
    status: JobStatus = JobStatus.QUEUED
    created_at: datetime
    updated_at: datetime
    history: list[dict[str, str]] = field(default_factory=list)
    ready_at: float = 0.0        # partner time when prepress is done
    print_start: float | None = None  # partner time when it went on the press
    print_end: float = 0.0       # partner time when the print comes off the press
    photo_url: str | None = None
    truth: dict[str, Any] = field(default_factory=dict)
    held: list[Delivery] = field(default_factory=list)  # events held back to arrive after a later one

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "external_id": self.external_id, "partner_id": self.partner_id,
            "batch_id": self.batch_id, "partner_batch_id": self.partner_batch_id, "sku": self.sku,
            "product_type": self.product_type, "print_method": self.print_method, "priority": self.priority,
            "ship_to_region": self.ship_to_region, "status": str(self.status), "photo_url": self.photo_url,
            "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at), "history": list(self.history),
        }


@dataclass(slots=True)
class Line:
    """One print method's press line at a partner: a single server working through a priority queue."""

    unit_partner_s: float
    pending: deque[Job] = field(default_factory=deque)        # in prepress, oldest first
    ready: list[tuple[float, int, Job]] = field(default_factory=list)  # heap: (-priority, seq, job)
    current: Job | None = None
    free_at: float = 0.0

    @property
    def load(self) -> int:
        return len(self.pending) + len(self.ready) + (self.current is not None)


@dataclass(slots=True, kw_only=True)
class PartnerState:
    """Everything one partner holds in memory: jobs, presses, blanks, its clock and its knobs."""

    spec: PartnerSpec
    knobs: Knobs
    bucket: TokenBucket
    lines: dict[str, Line]
    stock: dict[str, int]
    clock: float = 0.0          # partner time
    clock_updated: float = 0.0  # monotonic time of the last tick
    jobs: dict[str, Job] = field(default_factory=dict)
    by_external_id: dict[str, Job] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)  # by our batch id
    packing: list[tuple[float, int, Job]] = field(default_factory=list)  # heap: (ready_at, seq, job)


@dataclass(slots=True, kw_only=True)
class Delivery:
    """One webhook POST, signed once so every retry and duplicate carries the same bytes."""

    url: str
    body: bytes
    headers: dict[str, str]
    event_id: str
    job_id: str
    attempt: int = 0


class Ledger:
    """What the sim did, for reconciliation: a second job per external id is the bug this exists to catch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.creates: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def created(self, external_id: str) -> None:
        with self._lock:
            self.creates[external_id] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "jobs_created": sum(self.creates.values()),
                "duplicate_creates": sum(n - 1 for n in self.creates.values() if n > 1),
                "by_external_id": dict(self.creates),
                "webhooks_sent": self.counts["webhooks_sent"],
                "webhooks_failed": self.counts["webhooks_failed"],
                **{k: v for k, v in sorted(self.counts.items()) if k not in ("webhooks_sent", "webhooks_failed")},
            }


class ApiError(Exception):
    """A partner API refusal, rendered as the contract's {"error", "message"} JSON."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, dict(headers or {})


# --------------------------------------------------------------------------------------------------
# Webhook outbox: delayed, duplicated, retried deliveries on a few threads.


class Outbox:
    """Delivers webhooks at their due time with bounded retries, like a partner's delivery queue.

    One job's events go out one at a time in due order, so without injected faults they arrive in order;
    retries, delays, duplicates and held-back events are what disorder them, as with real partners.
    """

    def __init__(self, *, config: SimConfig, ledger: Ledger, client: httpx.Client) -> None:
        self._config, self._ledger, self._client = config, ledger, client
        self._heap: list[tuple[float, int, Delivery]] = []
        self._due: deque[Delivery] = deque()   # due now, in due order
        self._busy: set[str] = set()           # jobs with a delivery in flight
        self._cond = threading.Condition()
        self._seq = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._random = random.Random(config.seed + 1)

    def start(self) -> None:
        for i in range(max(1, self._config.delivery_workers)):
            thread = threading.Thread(target=self._work, name=f"partner-sim-webhooks-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=2)

    def put(self, delivery: Delivery, *, delay_s: float = 0.0) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + delay_s, self._seq, delivery))
            self._cond.notify()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + len(self._due) + len(self._busy)

    def _next(self) -> Delivery | None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    self._due.append(heapq.heappop(self._heap)[2])
                for i, delivery in enumerate(self._due):
                    if delivery.job_id not in self._busy:
                        del self._due[i]
                        self._busy.add(delivery.job_id)
                        return delivery
                self._cond.wait(timeout=self._heap[0][0] - now if self._heap else None)
            return None

    def _work(self) -> None:
        while (delivery := self._next()) is not None:
            try:
                self._attempt(delivery)
            finally:
                with self._cond:
                    self._busy.discard(delivery.job_id)
                    self._cond.notify_all()

    def _attempt(self, delivery: Delivery) -> None:
        """One POST; a refusal or a network error is retried with backoff until the attempts run out."""
        delivery.attempt += 1
        self._ledger.count("webhook_attempts")
        try:
            response = self._client.post(delivery.url, content=delivery.body, headers=delivery.headers,
                                         timeout=self._config.webhook_timeout_s)
            ok, why = 200 <= response.status_code < 300, f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self._ledger.count("webhooks_sent")
            return
        if delivery.attempt >= self._config.webhook_max_attempts:
            self._ledger.count("webhooks_failed")
            log.warning("webhook %s to %s given up after %s attempts (%s)",
                        delivery.event_id, delivery.url, delivery.attempt, why)
            return
        backoff = min(self._config.webhook_backoff_max_s,
                      self._config.webhook_backoff_s * 2 ** (delivery.attempt - 1))
        self._ledger.count("webhook_retries")
        log.info("webhook %s attempt %s failed (%s); retrying", delivery.event_id, delivery.attempt, why)
        self.put(delivery, delay_s=backoff * (0.5 + 0.5 * self._random.random()))


# --------------------------------------------------------------------------------------------------
# The simulator


class PartnerSim:
    """All partners' state and the threads that move jobs along, fetch print files and send webhooks."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.ledger = Ledger()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._random = random.Random(config.seed)
        self._seq = 0
        self._photos: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        # Decoded print files by content hash: a partner's press room is not our machine, so the sim spares the
        # shared cores decoding the same popular 4500x5400 file for every job (it still fetches it every time).
        self._decoded: OrderedDict[tuple, tuple[np.ndarray, float]] = OrderedDict()
        self._http = httpx.Client(follow_redirects=True)
        self.outbox = Outbox(config=config, ledger=self.ledger, client=self._http)
        self._photo_pool: ThreadPoolExecutor | None = None
        self._scheduler: threading.Thread | None = None
        burst = config.rate_limit_burst or max(1.0, config.rate_limit_per_s)
        self.partners: dict[str, PartnerState] = {}
        for spec in load_partners(config):
            knobs = Knobs(time_scale=config.time_scale, rate_limit_per_s=config.rate_limit_per_s,
                          defect_rate=config.defect_rate, defect_mix=config.defect_mix,
                          duplicate_rate=config.duplicate_rate, delay_rate=config.delay_rate,
                          delay_max_s=config.delay_max_s, reorder_rate=config.reorder_rate, outages=[])
            self.partners[spec.id] = PartnerState(
                spec=spec, knobs=knobs, bucket=TokenBucket(config.rate_limit_per_s, burst, burst, time.monotonic()),
                lines={m: Line(3600.0 / c) for m, c in spec.capacity_per_hour.items() if c > 0},
                stock=dict(spec.opening_stock),
            )

    # -- lifecycle

    def start(self) -> None:
        """Start the clocks, the scheduler, the photo workers and the webhook outbox."""
        now = time.monotonic()
        with self._lock:
            for state in self.partners.values():
                state.clock_updated = now
                state.bucket.updated = now
                state.knobs.outages = [
                    (now + o.start_s, now + o.start_s + o.duration_s)
                    for o in self.config.outages if o.partner_id in (None, state.spec.id)
                ]
        self._stop.clear()
        self._photo_pool = ThreadPoolExecutor(max(1, self.config.photo_workers), thread_name_prefix="partner-sim-photo")
        self.outbox.start()
        self._scheduler = threading.Thread(target=self._run_scheduler, name="partner-sim-scheduler", daemon=True)
        self._scheduler.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout=2)
        if self._photo_pool is not None:
            self._photo_pool.shutdown(wait=True, cancel_futures=True)
        self.outbox.stop()
        self._http.close()

    # -- the partner API

    def partner(self, partner_id: str) -> PartnerState:
        state = self.partners.get(partner_id)
        if state is None:
            raise ApiError(404, "unknown_partner", f"no partner {partner_id!r} here")
        return state

    def admit(self, partner_id: str, authorization: str | None) -> PartnerState:
        """Gate every partner API request: outage (503), then the key (401), then the rate limit (429)."""
        state = self.partner(partner_id)
        now = time.monotonic()
        with self._lock:
            outage_end = max((end for start, end in state.knobs.outages if start <= now < end), default=None)
            if outage_end is not None:
                self.ledger.count("outage_rejections")
                raise ApiError(503, "unavailable", f"{state.spec.name} is down for maintenance",
                               {"Retry-After": str(max(1, math.ceil(outage_end - now)))})
            scheme, _, key = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), state.spec.api_key.encode()):
                raise ApiError(401, "unauthorized", "a valid Authorization: Bearer <api key> is required",
                               {"WWW-Authenticate": "Bearer"})
            wait = state.bucket.take(now)
            if wait > 0:
                self.ledger.count("rate_limited")
                raise ApiError(429, "rate_limited", f"over {state.knobs.rate_limit_per_s:g} requests/s; retry in "
                               f"{wait:.3f}s", {"Retry-After": str(max(1, math.ceil(wait)))})
        return state

    def submit(self, state: PartnerState, body: JobIn, *, batch: dict[str, Any] | None = None,
               ) -> tuple[Job, bool]:
        """Create the job, or return the one already made for this external id: never two."""
        with self._lock:
            existing = state.by_external_id.get(body.external_id)
            if existing is not None:
                self.ledger.count("repeat_submits")
                return existing, False
            self._check_printable(state, body, needed=1)
            return self._create(state, body, batch), True

    def submit_batch(self, state: PartnerState, body: BatchIn,
                     ) -> tuple[dict[str, Any], bool, list[tuple[Job, bool]]]:
        """All the batch's new jobs are accepted or none is; each stays idempotent on its own external id.

        Returns the batch, whether this call created it, and each job with whether this call created it.
        """
        with self._lock:
            new: dict[str, JobIn] = {}
            for job in body.jobs:
                if job.external_id not in state.by_external_id:
                    new.setdefault(job.external_id, job)
            needed = Counter(job.sku for job in new.values())
            for i, job in enumerate(new.values()):
                try:
                    self._check_printable(state, job, needed=needed[job.sku])
                except ApiError as exc:
                    raise ApiError(exc.status, exc.code, f"jobs[{i}] ({job.external_id}): {exc.message}") from None
            batch = state.batches.get(body.external_id)
            batch_created = batch is None
            if batch is None:
                batch = {"id": f"pb_{secrets.token_hex(8)}", "external_id": body.external_id, "job_ids": []}
                state.batches[body.external_id] = batch
                self.ledger.count("batches_created")
            results = []
            for job_body in body.jobs:
                job, created = self.submit(state, job_body, batch=batch)
                if job.id not in batch["job_ids"]:
                    batch["job_ids"].append(job.id)
                results.append((job, created))
            return batch, batch_created, results

    def get(self, state: PartnerState, job_id: str) -> Job:
        with self._lock:
            job = state.jobs.get(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id!r} at {state.spec.id}")
        return job

    def find(self, state: PartnerState, external_id: str) -> Job:
        with self._lock:
            job = state.by_external_id.get(external_id)
        if job is None:
            raise ApiError(404, "not_found", f"no job with external_id {external_id!r} at {state.spec.id}")
        return job

    def cancel(self, state: PartnerState, job_id: str) -> Job:
        """Cancel while the job is still queued; once on the press it is too late."""
        with self._lock:
            job = self.get(state, job_id)
            if job.status == JobStatus.CANCELLED:
                return job
            if job.status != JobStatus.QUEUED:
                raise ApiError(409, "too_late", f"job {job.id} is {job.status}: printing has started")
            state.stock[job.sku] += 1  # the blank was never used
            self._set_status(state, job, JobStatus.CANCELLED)
            self.ledger.count("jobs_cancelled")
            return job

    def stock(self, state: PartnerState) -> dict[str, Any]:
        with self._lock:
            rows = [{"sku": sku, "on_hand": n} for sku, n in sorted(state.stock.items())]
        return {"partner_id": state.spec.id, "stock": rows, "as_of": _iso(_now())}

    def photo(self, state: PartnerState, job_id: str) -> bytes:
        with self._lock:
            job = self.get(state, job_id)
            data = self._photos.get((state.spec.id, job.id))
            if job.status not in (JobStatus.PRINTED, JobStatus.READY_FOR_SHIPMENT):
                raise ApiError(404, "not_printed", f"job {job.id} is {job.status}: no photo before printed")
            if data is None:
                raise ApiError(404, "no_photo", f"no photo of job {job.id} (print file unavailable, or expired)")
            return data

    # -- sim-only endpoints

    def truth(self, external_id: str, partner_id: str | None) -> dict[str, Any]:
        with self._lock:
            jobs = [s.by_external_id[external_id] for pid, s in self.partners.items()
                    if external_id in s.by_external_id and partner_id in (None, pid)]
        if not jobs:
            raise ApiError(404, "not_found", f"no job with external_id {external_id!r}")
        job = max(jobs, key=lambda j: j.seq)  # a job re-routed to another partner: the latest one
        return {
            "external_id": job.external_id, "partner_id": job.partner_id, "job_id": job.id,
            "status": str(job.status), "defect": job.truth.get("defect"),
            "params": job.truth.get("defect_params", {}), "camera": job.truth.get("camera"),
            "photo": job.photo_url is not None,
            "press": {"ready_partner_s": job.ready_at, "start_partner_s": job.print_start,
                      "end_partner_s": job.print_end if job.print_start is not None else None},
        }

    def ledger_snapshot(self) -> dict[str, Any]:
        snapshot = self.ledger.snapshot()
        with self._lock:
            snapshot["webhooks_pending"] = self.outbox.pending
            snapshot["photos_held"] = len(self._photos)
            snapshot["by_partner"] = {
                pid: {"jobs": len(s.jobs), **Counter(str(j.status) for j in s.jobs.values()),
                      "press_load": {method: line.load for method, line in s.lines.items()}}
                for pid, s in self.partners.items()
            }
        return snapshot

    def control(self, body: ControlIn) -> dict[str, Any]:
        """Turn run-time knobs for one partner or all; the clock is brought up to date first."""
        targets = [self.partner(body.partner_id)] if body.partner_id else list(self.partners.values())
        if body.defect_mix is not None and set(body.defect_mix) - set(DEFECT_KINDS):
            raise ApiError(422, "invalid_request", f"defect_mix kinds must be among {list(DEFECT_KINDS)}")
        now = time.monotonic()
        with self._lock:
            for state in targets:
                self._tick(state, now)
                knobs = state.knobs
                for name in ("time_scale", "defect_rate", "duplicate_rate", "delay_rate", "reorder_rate",
                             "delay_max_s"):
                    if (value := getattr(body, name)) is not None:
                        setattr(knobs, name, value)
                if body.defect_mix is not None:
                    knobs.defect_mix = dict(body.defect_mix) or None
                if body.rate_limit_per_s is not None:
                    knobs.rate_limit_per_s = body.rate_limit_per_s
                    burst = self.config.rate_limit_burst or max(1.0, body.rate_limit_per_s)
                    state.bucket = TokenBucket(body.rate_limit_per_s, burst, burst, now)
                if body.outage_s is not None:
                    knobs.outages = [(now, now + body.outage_s)] if body.outage_s > 0 else []
        self._wake.set()
        return self.knobs()

    def knobs(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            return {"partners": {pid: s.knobs.as_dict(now) for pid, s in self.partners.items()}}

    def describe(self) -> list[dict[str, Any]]:
        return [{
            "id": s.spec.id, "name": s.spec.name, "region": s.spec.region, "country": s.spec.country,
            "city": s.spec.city, "lat": s.spec.lat, "lon": s.spec.lon, "api_url": self._api_url(s.spec.id),
            "capacity_per_hour": dict(s.spec.capacity_per_hour), "skus": sorted(s.spec.skus),
        } for s in self.partners.values()]

    # -- internals: creation

    def _check_printable(self, state: PartnerState, body: JobIn, *, needed: int) -> None:
        spec = state.spec.skus.get(body.sku)
        if spec is None:
            raise ApiError(422, "unsupported_sku", f"{state.spec.name} does not print {body.sku}")
        if body.print_method != spec.print_method:
            raise ApiError(422, "invalid_request",
                           f"{body.sku} is printed by {spec.print_method}, not {body.print_method}")
        if state.stock.get(body.sku, 0) < needed:
            raise ApiError(409, "out_of_stock", f"{state.spec.name} has {state.stock.get(body.sku, 0)} blanks of "
                           f"{body.sku}, {needed} needed")

    def _create(self, state: PartnerState, body: JobIn, batch: dict[str, Any] | None) -> Job:
        self._tick(state, time.monotonic())
        self._seq += 1
        now = _now()
        pid = state.spec.id
        job = Job(
            id=f"pj_{secrets.token_hex(8)}", seq=self._seq, partner_id=pid, external_id=body.external_id,
            batch_id=body.batch_id, partner_batch_id=batch["id"] if batch else None, sku=body.sku,
            product_type=body.product_type, print_method=body.print_method, print_file_url=body.print_file_url,
            print_file_sha256=body.print_file_sha256, width=body.width, height=body.height, dpi=body.dpi,
            priority=body.priority or 0.0, ship_to_region=body.ship_to_region,
            callback_url=body.callback_url or f"{self.config.callback_base.rstrip('/')}/webhooks/partners/{pid}",
            created_at=now, updated_at=now, ready_at=state.clock + self.config.prepress_partner_s,
        )
        state.jobs[job.id] = job
        state.by_external_id[job.external_id] = job
        state.stock[job.sku] -= 1
        state.lines[job.print_method].pending.append(job)
        self.ledger.created(job.external_id)
        job.history.append({"status": str(job.status), "at": _iso(now)})
        self._emit(state, job)
        self._wake.set()
        return job

    # -- internals: progress

    def _run_scheduler(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.config.tick_s)
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                for state in self.partners.values():
                    try:
                        self._tick(state, now)
                        self._advance(state)
                    except Exception:  # a bug in one partner's step must not stop every partner's progress
                        log.exception("partner sim scheduler step failed for %s", state.spec.id)

    def _tick(self, state: PartnerState, now: float) -> None:
        state.clock += max(0.0, now - state.clock_updated) * state.knobs.time_scale
        state.clock_updated = now

    def _advance(self, state: PartnerState) -> None:
        """Move every job whose time has come: onto the press, off the press (to the camera), to shipping."""
        instant = state.knobs.time_scale <= 0
        clock = state.clock
        for line in state.lines.values():
            while True:
                if line.current is not None:
                    job = line.current
                    if not (instant or job.print_end <= clock):
                        break
                    line.current, line.free_at = None, job.print_end
                    assert self._photo_pool is not None
                    self._photo_pool.submit(self._photograph_job, state.spec.id, job.id)
                    continue
                job, start = self._next_on_press(line, clock, instant)
                if job is None:
                    break
                job.print_start, job.print_end = start, start + (0.0 if instant else line.unit_partner_s)
                line.current = job
                self._set_status(state, job, JobStatus.PRINTING)
        while state.packing and (instant or state.packing[0][0] <= clock):
            _, _, job = heapq.heappop(state.packing)
            self._set_status(state, job, JobStatus.READY_FOR_SHIPMENT)

    @staticmethod
    def _next_on_press(line: Line, clock: float, instant: bool) -> tuple[Job | None, float]:
        """The job the free press takes next: the highest priority among those out of prepress by then."""
        if instant:
            line.free_at = clock
        while True:
            while line.pending and (instant or line.pending[0].ready_at <= line.free_at):
                job = line.pending.popleft()
                heapq.heappush(line.ready, (-job.priority, job.seq, job))
            while line.ready and line.ready[0][2].status != JobStatus.QUEUED:
                heapq.heappop(line.ready)  # cancelled while waiting
            if line.ready:
                if line.free_at > clock:
                    return None, 0.0
                return heapq.heappop(line.ready)[2], line.free_at
            if not line.pending or line.pending[0].ready_at > clock:
                return None, 0.0
            line.free_at = line.pending[0].ready_at  # the press stood idle until this one left prepress

    def _photograph_job(self, partner_id: str, job_id: str) -> None:
        """Off the press: fetch the print file once, photograph it (maybe with a defect), then report printed."""
        try:
            self._photograph(partner_id, job_id)
        except Exception:
            log.exception("photographing job %s at %s failed", job_id, partner_id)
            with self._lock:
                state = self.partners[partner_id]
                self._printed(state, state.jobs[job_id], None, {})

    def _photograph(self, partner_id: str, job_id: str) -> None:
        with self._lock:
            state = self.partners[partner_id]
            job = state.jobs[job_id]
            knobs = replace(state.knobs, outages=[])
            substrate = state.spec.skus[job.sku].substrate
        data = self._fetch_print_file(job)
        photo: bytes | None = None
        truth: dict[str, Any] = {}
        if data is not None:
            pick_rng, camera_rng = (np.random.default_rng(s) for s in self._seed_for(job).spawn(2))
            defect = pick_defect(pick_rng, knobs.defect_rate, knobs.defect_mix)
            try:
                print_rgb, dpi = self._decoded_print(data, job, substrate)
            except (OSError, ValueError) as exc:
                self.ledger.count("print_file_invalid")
                log.warning("print file of job %s is not an image (%s)", job.external_id, exc)
            else:
                image, truth = photograph(print_rgb, rng=camera_rng, defect=defect, dpi=dpi,
                                          long_side=self.config.photo_long_side, substrate=substrate)
                ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                           [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
                photo = encoded.tobytes() if ok else None
                self.ledger.count("photos_taken")
                if defect:
                    self.ledger.count(f"defects_injected.{defect}")
        with self._lock:
            self._printed(state, job, photo, truth)

    def _decoded_print(self, data: bytes, job: Job, substrate: tuple[int, int, int]) -> tuple[np.ndarray, float]:
        key = (hashlib.sha256(data).hexdigest(), substrate, job.dpi)
        with self._lock:
            found = self._decoded.get(key)
            if found is not None:
                self._decoded.move_to_end(key)
                return found
        found = _decode_print(data, substrate=substrate, dpi=job.dpi,
                              keep_long_side=self.config.photo_long_side * 3 // 2)
        found[0].setflags(write=False)  # shared by the photos of every job of this design
        with self._lock:
            self._decoded[key] = found
            while len(self._decoded) > 8:
                self._decoded.popitem(last=False)
        return found

    def _printed(self, state: PartnerState, job: Job, photo: bytes | None, truth: dict[str, Any]) -> None:
        job.truth = truth
        if photo is not None:
            self._photos[(state.spec.id, job.id)] = photo
            job.photo_url = f"{self._api_url(state.spec.id)}/v1/jobs/{job.id}/photo"
            while len(self._photos) > self.config.photo_cap:
                self._photos.popitem(last=False)
                self.ledger.count("photos_dropped")
        self._tick(state, time.monotonic())
        self._set_status(state, job, JobStatus.PRINTED)
        heapq.heappush(state.packing, (state.clock + self.config.pack_partner_s, job.seq, job))
        self._wake.set()

    def _fetch_print_file(self, job: Job) -> bytes | None:
        """GET the print file, a few tries; a wrong checksum counts as a failed fetch (the file is not ours)."""
        for attempt in range(1, self.config.fetch_attempts + 1):
            try:
                response = self._http.get(job.print_file_url, timeout=self.config.fetch_timeout_s)
                if response.status_code == 200:
                    data = response.content
                    if job.print_file_sha256 and hashlib.sha256(data).hexdigest() != job.print_file_sha256.lower():
                        self.ledger.count("print_file_checksum_mismatches")
                        log.warning("print file of job %s fails its sha256", job.external_id)
                    else:
                        self.ledger.count("print_file_fetches")
                        return data
                else:
                    log.info("print file of job %s: HTTP %s", job.external_id, response.status_code)
            except httpx.HTTPError as exc:
                log.info("print file of job %s: %s", job.external_id, exc)
            backoff = self.config.fetch_backoff_s * 2 ** (attempt - 1)
            if attempt < self.config.fetch_attempts and self._stop.wait(backoff):
                break  # shutting down
        self.ledger.count("print_file_fetch_failures")
        return None

    def _seed_for(self, job: Job) -> np.random.SeedSequence:
        digest = hashlib.sha256(f"{job.partner_id}:{job.external_id}".encode()).digest()
        return np.random.SeedSequence([self.config.seed, *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])

    # -- internals: webhooks

    def _set_status(self, state: PartnerState, job: Job, status: JobStatus) -> None:
        job.status = status
        job.updated_at = _now()
        job.history.append({"status": str(status), "at": _iso(job.updated_at)})
        self._emit(state, job)

    def _emit(self, state: PartnerState, job: Job) -> None:
        """Sign the job's new status once and queue it, maybe late, twice, or behind the next event."""
        body = json.dumps({
            "event_id": (event_id := f"evt_{secrets.token_hex(12)}"),
            "occurred_at": _iso(job.updated_at),
            "type": "job.status",
            "job": {"id": job.id, "external_id": job.external_id, "status": str(job.status),
                    "photo_url": job.photo_url},
        }, separators=(",", ":")).encode()
        delivery = Delivery(url=job.callback_url, body=body, event_id=event_id, job_id=job.id, headers={
            "Content-Type": "application/json",
            "X-Partner-Id": state.spec.id,
            "X-Partner-Event-Id": event_id,
            "X-Partner-Signature": sign(state.spec.webhook_secret, body),
        })
        knobs, chance = state.knobs, self._random.random
        final = job.status in (JobStatus.READY_FOR_SHIPMENT, JobStatus.CANCELLED)
        if not final and chance() < knobs.reorder_rate:
            job.held.append(delivery)
            self.ledger.count("reordered_deliveries")
            return
        self._queue(delivery, knobs)
        for held in job.held:
            self._queue(held, knobs, after_s=self.config.reorder_gap_s)
        job.held.clear()

    def _queue(self, delivery: Delivery, knobs: Knobs, *, after_s: float = 0.0) -> None:
        chance = self._random.random
        delay = after_s
        if chance() < knobs.delay_rate:
            delay += knobs.delay_max_s * (0.2 + 0.8 * chance())
            self.ledger.count("delayed_deliveries")
        self.outbox.put(delivery, delay_s=delay)
        if chance() < knobs.duplicate_rate:
            twin = replace(delivery, attempt=0)
            self.outbox.put(twin, delay_s=delay + 0.05 + chance())
            self.ledger.count("duplicate_deliveries")

    def _api_url(self, partner_id: str) -> str:
        return f"{self.config.public_url.rstrip('/')}/partners/{partner_id}"


def _decode_print(data: bytes, *, substrate: tuple[int, int, int], dpi: float, keep_long_side: int,
                  ) -> tuple[np.ndarray, float]:
    """The print file flattened onto its blank, reduced early by a whole factor so a 78 MP poster costs little.

    Transparent pixels mean "no ink" (DTG, UV, embroidery files): the blank shows there. The reduction
    averages premultiplied colour, so edges of the design do not pick up the colour of transparent pixels.

    Returns the RGB array and its DPI after the reduction.
    """
    pixels = _decode_bgr(data)
    height, width = pixels.shape[:2]
    factor = max(1, max(height, width) // keep_long_side)
    size = (max(1, width // factor), max(1, height // factor))

    def reduced(channels: np.ndarray) -> np.ndarray:
        return cv2.resize(channels, size, interpolation=cv2.INTER_AREA) if factor > 1 else channels

    if pixels.shape[2] == 3:
        return cv2.cvtColor(reduced(pixels), cv2.COLOR_BGR2RGB), dpi * size[0] / width
    premultiplied = reduced(cv2.cvtColor(pixels, cv2.COLOR_RGBA2mRGBA))  # channel order does not matter here
    uncovered = cv2.bitwise_not(cv2.extractChannel(premultiplied, 3))
    blank = cv2.multiply(cv2.merge([uncovered] * 3), (*substrate[::-1], 0), scale=1 / 255)
    bgr = cv2.add(cv2.cvtColor(premultiplied, cv2.COLOR_BGRA2BGR), blank)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dpi * size[0] / width


def _decode_bgr(data: bytes) -> np.ndarray:
    """8-bit BGR or BGRA pixels of a PNG/JPEG/TIFF; OpenCV decodes straight into an array, Pillow is the fallback."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            rgba = np.asarray(img.convert("RGBA"))
        return cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {pixels.dtype}")
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    if pixels.shape[2] == 2:  # grey + alpha
        grey, alpha = cv2.split(pixels)
        return cv2.merge([grey, grey, grey, alpha])
    return pixels


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------------
# HTTP


class JobIn(BaseModel):
    """A job as Pressroom submits it (docs/PARTNER_API.md); unknown fields are ignored, as partners do."""

    model_config = ConfigDict(extra="ignore")

    external_id: str = Field(min_length=1, max_length=200)
    batch_id: str | None = None
    sku: str = Field(min_length=1)
    product_type: str
    print_method: str
    print_file_url: str = Field(min_length=1)
    print_file_sha256: str | None = None
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    dpi: int = Field(gt=0)
    priority: float | None = 0.0
    ship_to_region: str | None = None
    callback_url: str | None = None


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    external_id: str = Field(min_length=1, max_length=200)
    jobs: list[JobIn] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


class ControlIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partner_id: str | None = None
    outage_s: float | None = Field(default=None, ge=0)
    rate_limit_per_s: float | None = Field(default=None, gt=0)
    defect_rate: float | None = Field(default=None, ge=0, le=1)
    defect_mix: dict[str, float] | None = None
    duplicate_rate: float | None = Field(default=None, ge=0, le=1)
    delay_rate: float | None = Field(default=None, ge=0, le=1)
    delay_max_s: float | None = Field(default=None, ge=0)
    reorder_rate: float | None = Field(default=None, ge=0, le=1)
    time_scale: float | None = Field(default=None, ge=0)


def create_app(config: SimConfig) -> FastAPI:
    """The sim's HTTP face: /partners/{id}/v1/… as the contract says, plus /sim/… for tests and benches."""
    sim = PartnerSim(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sim.start()
        try:
            yield
        finally:
            sim.stop()

    app = FastAPI(title="Pressroom print partner sim", lifespan=lifespan, docs_url="/sim/docs", redoc_url=None,
                  openapi_url="/sim/openapi.json")
    app.state.sim = sim

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": "invalid_request", "message": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return JSONResponse({"error": code, "message": str(exc.detail)}, status_code=exc.status_code)

    def admitted(partner_id: str, request: Request) -> PartnerState:
        return sim.admit(partner_id, request.headers.get("authorization"))

    base = "/partners/{partner_id}/v1"

    @app.post(base + "/jobs")
    def submit_job(body: JobIn, state: PartnerState = Depends(admitted)) -> JSONResponse:
        job, created = sim.submit(state, body)
        return JSONResponse({**job.as_json(), "created": created}, status_code=201 if created else 200)

    @app.post(base + "/batches")
    def submit_batch(body: BatchIn, state: PartnerState = Depends(admitted)) -> JSONResponse:
        batch, created, results = sim.submit_batch(state, body)
        return JSONResponse({
            "id": batch["id"], "external_id": batch["external_id"], "created": created,
            "jobs": [{**job.as_json(), "created": job_created} for job, job_created in results],
        }, status_code=201 if created else 200)

    @app.get(base + "/jobs")
    def find_job(external_id: str | None = None, state: PartnerState = Depends(admitted)) -> dict[str, Any]:
        if not external_id:
            raise ApiError(422, "invalid_request", "external_id is required")
        return sim.find(state, external_id).as_json()

    @app.get(base + "/jobs/{job_id}")
    def get_job(job_id: str, state: PartnerState = Depends(admitted)) -> dict[str, Any]:
        return sim.get(state, job_id).as_json()

    @app.post(base + "/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, state: PartnerState = Depends(admitted)) -> dict[str, Any]:
        job = sim.cancel(state, job_id)
        return {"id": job.id, "external_id": job.external_id, "status": str(job.status)}

    @app.get(base + "/jobs/{job_id}/photo")
    def job_photo(job_id: str, state: PartnerState = Depends(admitted)) -> Response:
        return Response(sim.photo(state, job_id), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get(base + "/stock")
    def stock(state: PartnerState = Depends(admitted)) -> dict[str, Any]:
        return sim.stock(state)

    @app.get("/sim/truth/jobs/{external_id}")
    def truth(external_id: str, partner_id: str | None = None) -> dict[str, Any]:
        return sim.truth(external_id, partner_id)

    @app.get("/sim/ledger")
    def ledger() -> dict[str, Any]:
        return sim.ledger_snapshot()

    @app.get("/sim/control")
    def knobs() -> dict[str, Any]:
        return sim.knobs()

    @app.post("/sim/control")
    def control(body: ControlIn) -> dict[str, Any]:
        return sim.control(body)

    @app.get("/sim/partners")
    def partners() -> list[dict[str, Any]]:
        return sim.describe()

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "partners": sorted(sim.partners)}

    return app


# --------------------------------------------------------------------------------------------------
# Command line


def parse_pairs(text: str) -> dict[str, str]:
    """`id=value,id2=value2` (the PARTNER_API_KEYS / PARTNER_WEBHOOK_SECRETS format) as a dict."""
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"expected id=value, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _outage(text: str) -> Outage:
    who, _, window = text.rpartition("=")
    start, _, duration = window.partition(":")
    try:
        return Outage(partner_id=None if who in ("", "*") else who, start_s=float(start), duration_s=float(duration))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected [partner=]START:DURATION seconds, got {text!r}") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sims.partner", description=__doc__)
    defaults = SimConfig()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--public-url", help="base URL photo links use (default http://HOST:PORT)")
    p.add_argument("--callback-base", default=defaults.callback_base,
                   help="where webhooks go when a job has no callback_url (+ /webhooks/partners/{id})")
    p.add_argument("--catalogue", type=Path, default=CATALOGUE_PATH)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-scale", type=float, default=defaults.time_scale,
                   help="partner seconds per real second (3600: an hour a second; 0: no delay)")
    p.add_argument("--instant", action="store_true", help="no delay at all (same as --time-scale 0)")
    p.add_argument("--defect-rate", type=float, default=defaults.defect_rate)
    p.add_argument("--defect-mix", default="", help="kind=weight,… (default equal shares)")
    p.add_argument("--rate-limit", type=float, default=defaults.rate_limit_per_s, help="requests/s per partner")
    p.add_argument("--outage", type=_outage, action="append", default=[], metavar="[PARTNER=]START:DURATION",
                   help="503 window in seconds from start; repeatable")
    p.add_argument("--duplicate-rate", type=float, default=0.0)
    p.add_argument("--delay-rate", type=float, default=0.0)
    p.add_argument("--delay-max", type=float, default=defaults.delay_max_s, help="seconds")
    p.add_argument("--reorder-rate", type=float, default=0.0)
    p.add_argument("--stock", type=int, help="blanks of every SKU at start (default: a repeatable 40–640 each)")
    p.add_argument("--photo-long-side", type=int, default=defaults.photo_long_side)
    p.add_argument("--photo-cap", type=int, default=defaults.photo_cap)
    p.add_argument("--photo-workers", type=int, default=defaults.photo_workers)
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace, environ: Mapping[str, str]) -> SimConfig:
    """The composition root's one reading of the environment: credential overrides only."""
    public_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    mix = {k: float(v) for k, v in parse_pairs(args.defect_mix).items()} or None
    return SimConfig(
        catalogue_path=args.catalogue, public_url=args.public_url or f"http://{public_host}:{args.port}",
        callback_base=args.callback_base, seed=args.seed, time_scale=0.0 if args.instant else args.time_scale,
        defect_rate=args.defect_rate, defect_mix=mix, rate_limit_per_s=args.rate_limit, outages=tuple(args.outage),
        duplicate_rate=args.duplicate_rate, delay_rate=args.delay_rate, delay_max_s=args.delay_max,
        reorder_rate=args.reorder_rate, photo_long_side=args.photo_long_side, photo_cap=args.photo_cap,
        photo_workers=args.photo_workers, stock_per_sku=args.stock,
        api_keys=parse_pairs(environ.get("PARTNER_API_KEYS", "")),
        webhook_secrets=parse_pairs(environ.get("PARTNER_WEBHOOK_SECRETS", "")),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = config_from(args, os.environ)
    log.info("partner sim on %s: %s partners, time scale %s, defect rate %s", config.public_url,
             len(load_partners(config)), config.time_scale or "instant", config.defect_rate)
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level.lower(),
                access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

