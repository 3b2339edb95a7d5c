"""The battery's soak: the whole system on PostgreSQL + Redis with 2 worker processes, faults injected while
orders flow, effects counted from the sims' ledgers and reconciled against the database (lost / duplicated /
unexpected, Jepsen style).

    python -m battery.soak [SCENARIO ...] [--orders N] [--timeout S]      (make soak: all, the issue's sizes)

Scenarios:
  no-faults  N orders, nothing injected: all delivered; 0 lost or duplicated; throughput, order→label p50/p99
  sigkill    a random worker process group SIGKILLed every 2 s while orders flow; a supervisor restarts it
  sigstop    a worker SIGSTOPped while it is inside a label purchase, past the broker's heartbeat timeout (its
             message is redelivered to the other worker), then SIGCONT: exactly one label per order
  redis      FLUSHALL mid-run, then redis-server SIGKILLed and restarted without persistence, 3 times
  postgres   PostgreSQL stopped (-m immediate) and restarted 3 times: 0 accepted orders lost; API and workers
             back within 30 s
Every scenario runs on its own redis-server (no persistence) on a free port; `postgres` also on its own
PostgreSQL cluster (initdb in a temp dir); the others on a scratch database `soak_*` on the shared server.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import redis
from sqlalchemy import create_engine, text
from tqdm import tqdm

from adapters.broker import NAMESPACE, acks_key, heartbeats
from battery.framework import Figure, could_not_run, count_figure, failures, table
from battery.system import (
    SHARED_PG,
    PrivatePostgres,
    PrivateRedis,
    SoakSystem,
    Storefront,
    awaiting_inspector,
    label_latencies,
    pid_of_client,
    reconcile,
    soak_database,
    soak_system,
    wait_quiet,
    wait_settled,
    watched_carrier,
)
from bench.common import percentile, say
from core.commands import BuyLabel, actor_name

HEARTBEAT_S = 10.0  # core.settings.Settings.broker_heartbeat_timeout_ms, the production default
ISSUE_ORDERS = {"no-faults": 5000, "sigkill": 5000, "sigstop": 600, "redis": 1000, "postgres": 1000}
"""`make soak`'s sizes: the issue's 5,000 orders; 200 stops (--stops) over 600 orders; it names no count for the
Redis and PostgreSQL rows, so those run 1,000 orders paced over the faults."""


@dataclass
class Run:
    """One scenario's world: its Redis, its database, the system, the storefront, and a fault thread."""

    name: str
    orders: int
    workdir: Path
    timeout: float
    redis: PrivateRedis | None = None
    engine: object = None
    system: SoakSystem | None = None
    store: Storefront | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    notes: list[str] = field(default_factory=list)
    fault_error: BaseException | None = None
    warm: threading.Event = field(default_factory=threading.Event)  # the warm-up orders are finished
    finished_at: float | None = None
    awaiting: int = 0  # orders held for a human inspector (a doubtful print): finished, for the soak

    def start_faults(self, fault: Callable[[Run], None]) -> threading.Thread:
        def body() -> None:
            try:
                fault(self)
            except BaseException as error:  # noqa: BLE001 - reported as a figure by the scenario
                self.fault_error = error
                say(f"  fault thread failed: {type(error).__name__}: {error}")
        thread = threading.Thread(target=body, name=f"{self.name}-faults", daemon=True)
        thread.start()
        return thread

    def supervise_until_stopped(self, every: float = 0.5) -> None:
        while not self.stop.wait(every):
            self.system.supervise()


def _run(name: str, orders: int, workdir: Path, timeout: float, *, fault: Callable[[Run], None] | None = None,
         pg: PrivatePostgres | None = None, pace_s: float | None = None, env: dict[str, str] | None = None,
         until_done: Callable[[Run, int], None] | None = None,
         prepare: Callable[[Run], Callable[[], None]] | None = None,
         server: str = SHARED_PG, warm_up: int = 0) -> tuple[Run, list[Figure]]:
    """Start everything, place the orders (in `pace_s` seconds, or as fast as the API takes them) while `fault`
    runs in a thread, wait until every accepted order is finished, and reconcile the ledgers.

    `warm_up` orders (of the `orders`) are placed first and finished before the rest, and before `run.warm` is
    set: a fault that waits for it starts on a system whose design is already rendered once."""
    run = Run(name=name, orders=orders, workdir=workdir, timeout=timeout)
    with ExitStack() as stack:
        run.redis = PrivateRedis(workdir)
        run.redis.start()
        stack.callback(run.redis.stop)
        if pg is not None:
            pg.init()
            stack.callback(pg.destroy)
        url = stack.enter_context(soak_database(pg.url if pg else server))
        run.system = stack.enter_context(soak_system(url, run.redis.url, workdir, env=env))
        run.engine = create_engine(url, pool_pre_ping=True)
        stack.callback(run.engine.dispose)
        if prepare is not None:
            stack.callback(prepare(run))
        run.store = Storefront.for_system(run.system)
        thread = run.start_faults(fault or (lambda r: r.supervise_until_stopped()))
        stack.callback(run.stop.set)
        started = time.time()
        if warm_up:
            run.store.run(warm_up)
            if wait_settled(run.engine, len(run.store.accepted), timeout=timeout)[0] is None:
                run.notes.append(f"the {warm_up} warm-up orders did not finish")
            run.notes.append(f"{warm_up} warm-up order(s) finished {time.time() - started:.0f} s after the first")
        run.warm.set()
        with tqdm(total=orders - warm_up, desc=f"{name}: accepted", unit="order") as bar:
            run.store.run(orders - warm_up, progress=bar, pace_per_s=orders / pace_s if pace_s else None)
        accepted = list(run.store.accepted.values())
        with tqdm(total=len(accepted), desc=f"{name}: finished", unit="order") as bar:
            def during() -> None:
                if until_done is not None:
                    until_done(run, bar.n)
            finished_at, counts = wait_settled(run.engine, len(accepted), timeout=timeout, progress=bar,
                                               during=during)
        run.finished_at = finished_at
        run.awaiting = len(awaiting_inspector(run.engine))
        run.stop.set()
        thread.join(timeout=120)
        if not wait_quiet(run.engine, run.redis.url):
            run.notes.append("queues or notifications still busy 180 s after the last order finished")
        recs = reconcile(run.engine, run.system, accepted)
        latencies = label_latencies(run.engine)
        with run.engine.connect() as conn:
            run.notes.append("statuses " + ", ".join(f"{k} {v}" for k, v in sorted(
                conn.execute(text("SELECT status, count(*) FROM orders GROUP BY status")).all())))
    figures = _common_figures(run, accepted, counts, finished_at, started, recs, latencies)
    if run.fault_error is not None:
        figures.append(Figure(test=name, figure=f"fault injection failed: {type(run.fault_error).__name__}: "
                                                f"{str(run.fault_error)[:120]}", pass_figure="runs", passed=False))
    return run, figures


def _common_figures(run: Run, accepted: list[str], counts: Counter, finished_at: float | None, started: float,
                    recs, latencies: list[float]) -> list[Figure]:
    name = run.name
    delivered = counts.get("delivered", 0)
    elapsed = (finished_at or time.time()) - started
    figures = [
        count_figure(name, f"orders accepted (201) of {run.orders:,} posted; storefront retries "
                           f"{sum(run.store.failures.values()):,} {dict(run.store.failures) or ''}".rstrip(),
                     len(accepted), run.orders),
        Figure(test=name, figure=f"orders finished: {delivered:,} delivered, {run.awaiting:,} held for an inspector"
                                 f"{'' if finished_at else f' (timed out after {run.timeout:.0f} s)'}; "
                                 f"{elapsed:.0f} s from first order", pass_figure=f"all {len(accepted):,}",
               passed=finished_at is not None),
    ]
    for rec in recs:
        figures.append(Figure(
            test=name, figure=f"{rec.effect}: expected {rec.expected:,}, seen {rec.seen:,}; lost {rec.lost:,}, "
                              f"duplicated {rec.duplicated:,}, unexpected {rec.unexpected:,}"
                              + (f"; {rec.doubtful:,} left sending/unknown for support ({rec.doubtful_delivered:,} "
                                 "of them did arrive)" if rec.doubtful else ""),
            pass_figure="0 lost, 0 duplicated, 0 unexpected",
            passed=rec.lost == 0 and rec.duplicated == 0 and rec.unexpected == 0))
    if latencies:
        figures.append(Figure(test=name, figure=f"order→label p50 {percentile(latencies, 50):.1f} s, p99 "
                                                f"{percentile(latencies, 99):.1f} s (n={len(latencies):,}); "
                                                f"throughput {delivered / elapsed * 3600:,.0f} delivered/hour",
                              pass_figure="printed", passed=True))
    restarts = sum(run.system.restarts.values())
    figures.append(Figure(test=name, figure=f"worker restarts by the supervisor: {restarts:,}; "
                                            f"{'; '.join(run.notes)}", pass_figure="printed", passed=True))
    return figures


# ---- scenarios ------------------------------------------------------------------------------------------------


def no_faults(orders: int, workdir: Path, timeout: float) -> list[Figure]:
    return _run("no-faults", orders, workdir, timeout)[1]


KILL_EVERY_S = 2.0
AFTER_LAST_KILL = "all orders finished"  # the sigkill figure that is a time bound
KILLS_UNTIL = 0.95  # kills go on while orders flow, until this share of the accepted orders is finished


def sigkill(orders: int, workdir: Path, timeout: float, *, kill_every: float = KILL_EVERY_S,
            kill_for: float = 1800.0, server: str = SHARED_PG, warm_up: int = 0) -> list[Figure]:
    """Every 2 s one booted worker's process group, chosen at random, gets SIGKILL and is restarted at once (a
    worker takes seconds to boot on this machine: a tick with both still booting kills nothing); the kills stop
    when 95 % of the orders are finished or after `kill_for` seconds; the rest must finish within heartbeat
    timeout + 60 s of the last kill. With `warm_up`, the kills start once that many orders are finished (the
    soak's one design rendered: a first render outlasts a worker killed every 2 s on a loaded machine)."""
    state = {"kills": 0, "idle_ticks": 0, "last_kill": None, "stop_kills": False, "started": 0.0}
    rng = random.Random(8)

    def fault(run: Run) -> None:
        while not run.stop.is_set() and not (run.warm.is_set() and run.store.accepted):  # with the orders
            run.stop.wait(0.1)
        state["started"] = time.monotonic()
        while not run.stop.is_set():
            if time.monotonic() - state["started"] > kill_for:
                state["stop_kills"] = True
            if not state["stop_kills"]:
                if run.system.kill_worker(rng):
                    state["kills"] += 1
                    state["last_kill"] = time.time()
                else:
                    state["idle_ticks"] += 1  # both workers still booting: nothing to kill this tick
            run.system.supervise()
            run.stop.wait(kill_every if not state["stop_kills"] else 0.5)

    def until_done(run: Run, finished: int) -> None:
        if run.store.accepted and finished >= KILLS_UNTIL * len(run.store.accepted):
            state["stop_kills"] = True

    run, figures = _run("sigkill", orders, workdir, timeout, fault=fault, until_done=until_done,
                        server=server, warm_up=warm_up)
    finished = next(f for f in figures if f.figure.startswith("orders finished"))
    after = run.finished_at - state["last_kill"] if finished.passed and state["last_kill"] else None
    figures.append(Figure(
        test="sigkill", figure=f"{AFTER_LAST_KILL} {'never' if after is None else f'{after:.0f} s'} after the last of "
                               f"{state['kills']:,} SIGKILLs (one every {kill_every:g} s for {kill_for:g} s at most"
                               f"{f', from {warm_up} finished warm-up orders on' if warm_up else ''}; "
                               f"{state['idle_ticks']:,} ticks with no worker booted yet)",
        pass_figure=f"≤ heartbeat timeout + 60 s = {HEARTBEAT_S + 60:.0f} s",
        passed=after is not None and after <= HEARTBEAT_S + 60))
    return figures


def redis_faults(orders: int, workdir: Path, timeout: float) -> list[Figure]:
    """FLUSHALL once a fifth of the orders are in; then three times SIGKILL redis-server and start a new one
    (no persistence: every queued message is gone). Only the database's state can re-drive the work."""
    events: list[str] = []

    def fault(run: Run) -> None:
        while not run.stop.is_set() and len(run.store.accepted) < max(1, orders // 5):
            run.stop.wait(0.2)
        if run.stop.is_set():
            return
        run.redis.flushall()
        events.append(f"FLUSHALL at {len(run.store.accepted)} accepted")
        for n in range(3):
            run.stop.wait(10)
            run.system.supervise()
            run.redis.kill()
            run.stop.wait(2)
            run.redis.start()
            events.append(f"kill+restart {n + 1} at {len(run.store.accepted)} accepted")
        run.supervise_until_stopped()

    run, figures = _run("redis", orders, workdir, timeout, fault=fault, pace_s=max(60.0, orders / 10))
    figures.append(Figure(test="redis", figure="; ".join(events) or "no fault injected",
                          pass_figure="FLUSHALL + 3 kills", passed=len(events) == 4))
    return figures


RECOVERY_S = 30.0


def postgres_faults(orders: int, workdir: Path, timeout: float) -> list[Figure]:
    """Three times: PostgreSQL stopped with -m immediate (a crash: no checkpoint, connections cut), down 3 s,
    started again. The storefront keeps posting and retries; API recovery is the time from PostgreSQL being back
    to the next 201, worker recovery the time to the next order status change a worker makes."""
    pg = PrivatePostgres()
    recoveries: list[tuple[float | None, float | None]] = []

    def fault(run: Run) -> None:
        checker = create_engine(run.engine.url, pool_pre_ping=True)
        try:
            while not run.stop.is_set() and len(run.store.accepted) < max(1, orders // 10):
                run.stop.wait(0.2)
            for _ in range(3):
                if run.stop.is_set():
                    return
                pg.stop_immediate()
                run.stop.wait(3)
                pg.start()
                up = time.time()
                api = workers = None
                while (api is None or workers is None) and time.time() - up < 120 and not run.stop.is_set():
                    if api is None and (run.store.last_accepted_at or 0) > up:
                        api = run.store.last_accepted_at - up
                    if workers is None:
                        try:
                            with checker.connect() as conn:
                                moved = conn.scalar(text("SELECT extract(epoch FROM max(status_changed_at)) "
                                                         "FROM orders WHERE status <> 'accepted'"))
                            if moved and float(moved) > up:
                                workers = float(moved) - up
                        except Exception:  # noqa: BLE001 - PostgreSQL still recovering
                            pass
                    run.system.supervise()
                    time.sleep(0.25)
                recoveries.append((api, workers))
                run.stop.wait(15)
            run.supervise_until_stopped()
        finally:
            checker.dispose()

    _, figures = _run("postgres", orders, workdir, timeout, fault=fault, pg=pg, pace_s=max(90.0, orders / 10))
    def shown(value: float | None) -> str:
        return "not within 120 s" if value is None else f"{value:.1f} s"
    figures.append(Figure(
        test="postgres", figure=f"{len(recoveries)} immediate stops; recovery after each restart: API "
                                f"{', '.join(shown(a) for a, _ in recoveries)}; workers "
                                f"{', '.join(shown(w) for _, w in recoveries)}",
        pass_figure=f"3 stops; each ≤ {RECOVERY_S:.0f} s",
        passed=len(recoveries) == 3 and all(a is not None and w is not None and a <= RECOVERY_S
                                            and w <= RECOVERY_S for a, w in recoveries)))
    return figures


STOP_HEARTBEAT_MS = 5000
STOP_MAINTENANCE_CHANCE = 1_000_000  # per million broker commands: every one
STOP_CYCLE_S = 12.0  # the orders are paced over this many seconds per stop wanted
BUY_SECONDS = 3.0


def sigstop(orders: int, workdir: Path, timeout: float, *, stops: int = 200) -> list[Figure]:
    """Whenever a worker is inside a label purchase (the carrier sim, served from this process, answers each buy
    3 s after buying it), SIGSTOP that worker's process group until its message has been handed to the other
    worker (the broker's heartbeat timeout passed: it retrieves or buys the same shipment), then SIGCONT it.
    One stop per order at most (the other worker buys on meanwhile, so it takes about 3 orders a stop), up to
    `stops`: exactly one label per order, from the carrier's ledger."""
    rounds: list[tuple[str, bool, float]] = []  # (carrier shipment id, redelivered while stopped, stopped for s)
    missed: list[str] = []  # buys that ended before the SIGSTOP landed
    carrier: dict = {}

    def prepare(run: Run):
        carrier["c"] = watched_carrier(run.system, buy_seconds=BUY_SECONDS)
        carrier["port"] = carrier["c"].server.config.port
        return carrier["c"].stop

    def fault(run: Run) -> None:
        watch, stopped_ids = carrier["c"].watch, set()
        broker = HeldMessages(redis.Redis.from_url(run.redis.url, socket_timeout=5), BuyLabel.QUEUE)
        label_actor = actor_name(BuyLabel)
        while not run.stop.is_set() and len(rounds) < stops:
            run.system.supervise()
            caught = [(p, sid) for p, sid in watch.buying() if sid not in stopped_ids]
            if not caught:
                time.sleep(0.05)
                continue
            port, shipment = caught[0]
            pid = pid_of_client(port, carrier["port"])
            groups = {w.popen.pid for w in run.system.workers if w.popen.poll() is None}
            group = os.getpgid(pid) if pid else None
            if group not in groups:  # the buy ended meanwhile, or a process that is not a worker
                time.sleep(0.05)
                continue
            stopped_at = time.monotonic()
            os.killpg(group, signal.SIGSTOP)
            if watch.in_flight_for(port) != shipment:
                # the carrier answered between the catch and the stop (finding the socket's process takes a
                # while on a loaded machine): the worker may have acked already, so nothing would be redelivered;
                # not a stop mid-label, so not counted
                os.killpg(group, signal.SIGCONT)
                missed.append(shipment)
                continue
            try:
                # What the broker holds for the order: the stopped worker's message, and any other (a reconciler
                # re-drive) another worker is running; their heartbeats once the stopped worker's last command has
                # landed. The stopped worker's
                # message is handed over when the broker puts it back on the queue (the worker's heartbeat, its
                # last command, older than the timeout) and the other worker takes it. That is read from the
                # broker, not from the carrier: a handed-over message that finds the label already bought (by a
                # re-drive) never asks the carrier again.
                held = broker.holding(label_actor, carrier["c"].reference_of(shipment))
                run.stop.wait(0.3)  # a command the worker sent just before the stop may land after it
                beats = broker.heartbeats()
                patience = STOP_HEARTBEAT_MS / 1000 + 60
                handed = False
                while not handed and time.monotonic() - stopped_at < patience and not run.stop.is_set():
                    handed = any(broker.handed_over(message, worker, beats) for message, worker in held.items())
                    run.stop.wait(0.1)
            finally:
                os.killpg(group, signal.SIGCONT)
            stopped_ids.add(shipment)
            rounds.append((shipment, handed, time.monotonic() - stopped_at))
            say(f"  stop {len(rounds)}: shipment {shipment} {'redelivered' if handed else 'NOT redelivered'} "
                f"after {rounds[-1][2]:.1f} s ({len(run.store.accepted)} orders accepted)"
                + ("" if handed else f"; the order's label messages held at the stop: {broker.describe(held, beats)}"))
        run.supervise_until_stopped()

    # orders paced over the stops (a stop takes the heartbeat timeout and a poll or two), so buys trickle rather
    # than burst: whatever reaches the carrier while one worker is stopped is bought by the other, and gives no
    # stop; about 3 orders per stop. Maintenance on every broker command (not 10 %), so a stopped worker's
    # message goes back on its queue at the other worker's next poll once the heartbeat timeout has passed
    # rather than some polls later (a stop took 13-24 s at 10 %, and fewer fitted in the run).
    run, figures = _run("sigstop", orders, workdir, timeout, fault=fault, prepare=prepare,
                        pace_s=stops * STOP_CYCLE_S,
                        env={"BROKER_HEARTBEAT_TIMEOUT_MS": str(STOP_HEARTBEAT_MS),
                             "BROKER_MAINTENANCE_CHANCE": str(STOP_MAINTENANCE_CHANCE)})
    redelivered = sum(1 for _, again, _ in rounds if again)
    waits = sorted(s for _, _, s in rounds)
    figures.append(Figure(
        test="sigstop", figure=f"workers SIGSTOPped mid-label then SIGCONT: {len(rounds):,} (of {stops:,} wanted); "
                               f"their message run again by the other worker while stopped: {redelivered:,} "
                               f"(heartbeat timeout {STOP_HEARTBEAT_MS / 1000:.0f} s; stopped "
                               f"{percentile(waits, 50) if waits else 0:.1f} s median, "
                               f"{max(waits, default=0):.1f} s longest); {len(missed):,} buys answered before "
                               "the stop landed, not counted (read from the broker: the message put back on the "
                               "queue and taken by the other worker)",
        pass_figure=f"{stops:,} stops, each redelivered", passed=len(rounds) == stops and redelivered == stops))
    return figures


class HeldMessages:
    """The Dramatiq broker's Redis: which worker holds (has fetched, not acked) which message of a queue, and
    whether a stopped worker's message was handed over (dispatch.lua's maintenance: a worker whose heartbeat, its
    last command, is older than the timeout is dead; its messages go back on their queue)."""

    def __init__(self, client: redis.Redis, queue: str) -> None:
        self.client, self.queue = client, queue

    def heartbeats(self) -> dict[str, float]:
        return heartbeats(self.client)

    def holding(self, actor: str, arg: str) -> dict[str, str]:
        """Message id → the worker (broker id) holding it, for every held message of `actor` given `arg` (by
        position or by name)."""
        held = {}
        prefix = acks_key("", self.queue).removesuffix(f".{self.queue}")
        for key in self.client.scan_iter(acks_key("*", self.queue)):
            worker = key.decode()[len(prefix):-len(self.queue) - 1]
            for message in self.client.smembers(key):
                body = self.client.hget(f"{NAMESPACE}:{self.queue}.msgs", message)
                if body and (m := json.loads(body))["actor_name"] == actor and arg in (*m["args"],
                                                                                        *m["kwargs"].values()):
                    held[message.decode()] = worker
        return held

    def describe(self, held: dict[str, str], beats_then: dict[str, float]) -> str:
        """Where each held message is now, for a stop that was not handed over."""
        beats = self.heartbeats()

        def where(message: str, worker: str) -> str:
            moved = "moved" if beats.get(worker) != beats_then.get(worker) else "still"
            held_now = self.client.sismember(acks_key(worker, self.queue), message)
            queued = self.client.lpos(f"{NAMESPACE}:{self.queue}", message) is not None
            return (f"{message[:8]} by {worker[:8]} (heartbeat {moved}, {'still held' if held_now else 'let go'}, "
                    f"{'on the queue' if queued else 'not queued'})")

        return "; ".join(where(message, worker)
            for message, worker in held.items()) or "none found"

    def handed_over(self, message: str, worker: str, beats_then: dict[str, float]) -> bool:
        """The message left `worker`'s hands without `worker` sending a command since `beats_then` (an ack is a
        command, and moves the heartbeat): the broker put it back on the queue; and the other worker took it
        (it is no longer waiting on the queue)."""
        if self.client.sismember(acks_key(worker, self.queue), message):
            return False
        if self.heartbeats().get(worker, beats_then.get(worker)) != beats_then.get(worker):
            return False  # the holder is alive: it acked the message itself
        return self.client.lpos(f"{NAMESPACE}:{self.queue}", message) is None


SCENARIOS: dict[str, Callable[..., list[Figure]]] = {
    "no-faults": no_faults, "sigkill": sigkill, "sigstop": sigstop, "redis": redis_faults, "postgres": postgres_faults}


def _scenario_options(name: str, args: argparse.Namespace) -> dict:
    if name == "sigkill":
        return {"kill_every": args.kill_every, "kill_for": args.kill_for, "warm_up": args.warm_up}
    if name == "sigstop":
        return {"stops": args.stops}
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m battery.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"default: all of {', '.join(SCENARIOS)}")
    parser.add_argument("--orders", type=int, help="orders per scenario (default: the issue's size, see ISSUE_ORDERS)")
    parser.add_argument("--timeout", type=float, help="seconds to wait for the orders to finish (default: scaled)")
    parser.add_argument("--kill-every", type=float, default=KILL_EVERY_S, help="sigkill: seconds between kills")
    parser.add_argument("--kill-for", type=float, default=1800.0,
                        help="sigkill: stop killing after this many seconds (or once 95 %% are finished)")
    parser.add_argument("--warm-up", type=int, default=0,
                        help="sigkill: finish this many of the orders before the kills start (default 0)")
    parser.add_argument("--stops", type=int, default=200, help="sigstop: how many workers to stop mid-label")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"no such scenario: {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    figures: list[Figure] = []
    broken = False
    for name in args.scenarios or list(SCENARIOS):
        orders = args.orders or ISSUE_ORDERS[name]
        timeout = args.timeout or max(900.0, orders * 3.0)
        print(f"== soak {name}: {orders:,} orders", flush=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"soak-{name}-"))
        started = time.monotonic()
        try:
            got = SCENARIOS[name](orders, workdir, timeout, **_scenario_options(name, args))
        except Exception as error:  # reported as a failed figure; the others still run
            got, broken = could_not_run(name, error), True
        figures += got
        print(table(got), f"\n({time.monotonic() - started:.0f} s; logs in {workdir}/logs)\n", flush=True)
        if not os.environ.get("SOAK_KEEP_LOGS") and not failures(got):
            shutil.rmtree(workdir, ignore_errors=True)
    print("== soak: all figures\n" + table(figures))
    failed = failures(figures)
    print(f"\n{len(figures) - len(failed)} of {len(figures)} figures pass")
    return 2 if broken else (1 if failed else 0)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
