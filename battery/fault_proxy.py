"""Partner and carrier faults through a fault proxy on loopback: latency (some past the client's timeout, so the
request lands late), resets, blackholes and responses lost after the far side committed → 0 duplicate labels or
partner jobs, 0 carrier shipments left unbought, and every unknown outcome of a create, a buy or a submit
resolved by asking first.

Real orders go through the real worker process (queues `shipping`, `notify`, `production`) with its EasyPost and
partner base URLs pointed at two `sims.faultproxy.FaultProxy`s in front of the carrier sim and the partner sim.
Each mode hits the effectful calls (label buys, job submits) for the next N of them, and strikes any call with a
small probability on top. Labels and partner jobs are counted from the sims' ledgers; "asked first" is read from
the proxies' records: after a buy or submit the client got no answer to, the next request it made about the same
shipment or job must be a lookup (GET the shipment; GET the job by external id), never the same call again.

Shipment creates get resets, blackholes and lost answers too (after one, the client asks for the order's
shipment by its reference, `GET /v2/shipments/<order id>`), but no latency past the timeout: a create still on
its way to the carrier when the client asks cannot be found yet, and would be left unbought.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta

import redis
from sqlalchemy import func, select

from adapters.broker import queue_stats
from battery.framework import Context, Figure, count_figure
from battery.shipping_faults import VALID, ShippingWorld, place, statuses, wait_settled
from core.services.production import ProductionRules, batch_ready_jobs, route_order
from core.services.render import render_order
from core.states import JobStatus, OrderStatus
from db import tables as t
from sims.carrier import BackgroundServer, CarrierSimConfig
from sims.faultproxy import Exchange, FaultProxy, Lookups, Mode, Rule, asked_first
from sims.smtp_sink import SmtpSink
from tests.conftest import TEST_KEYS
from tests.integration.production_helpers import (
    DEAD_URL,
    ROOT,
    Processes,
    place_orders,
    serve_sim,
    sim_ledger,
)
from tests.integration.test_intake_on_postgres import RedisHarness

CLIENT_TIMEOUT_S = 2.0  # EasyPost and partner clients: a blackhole or a late answer costs this much
LATE_MS = 3000.0  # past the client's timeout: the request reaches the sim after the client gave up on it
BUY = r"^POST /v2/shipments/(shp_\w+)/buy"
CREATE = r"^POST /v2/shipments(?:\?|$)"
SUBMIT = r"^POST /partners/[\w-]+/v1/jobs$"
CARRIER_LOOKUPS = Lookups(effect=re.compile(BUY), lookup=re.compile(r"^GET /v2/shipments/(shp_\w+)(?:\?|$)"))
CREATE_LOOKUPS = Lookups(effect=re.compile(CREATE), lookup=re.compile(r"^GET /v2/shipments/((?!shp_)\w+)(?:\?|$)"),
                         body_key=re.compile(r'"reference":\s*"(\w+)"'))  # the reference is our order id
PARTNER_LOOKUPS = Lookups(effect=re.compile(SUBMIT),
                          lookup=re.compile(r"^GET /partners/[\w-]+/v1/jobs\?external_id=(\w+)"),
                          body_key=re.compile(r'"external_id":\s*"(\w+)"'))
BACKGROUND = 0.03  # on top of the next-N faults, any call: this much resets and lost answers, a quarter blackholes
MODES = (Mode.RESET, Mode.BLACKHOLE, Mode.LOST_RESPONSE, Mode.LATENCY)


def rules(effect: str, *, next_n: int, background: float) -> list[Rule]:
    """The next N effectful calls get each fault in turn (latency: past the timeout); any call may get one too."""
    return [Rule(mode=Mode.RESET, next=next_n, match=effect),
            Rule(mode=Mode.LOST_RESPONSE, next=next_n, match=effect),
            Rule(mode=Mode.BLACKHOLE, next=next_n, match=effect),
            Rule(mode=Mode.LATENCY, next=next_n, match=effect, latency_ms=LATE_MS),
            Rule(mode=Mode.RESET, probability=background),
            Rule(mode=Mode.LOST_RESPONSE, probability=background),
            Rule(mode=Mode.BLACKHOLE, probability=background / 4),
            Rule(mode=Mode.LATENCY, probability=0.2, latency_ms=150)]


def create_rules(*, next_n: int) -> list[Rule]:
    """The next N shipment creates get each fault that leaves the outcome unknown, in turn."""
    return [Rule(mode=mode, next=next_n, match=CREATE) for mode in (Mode.RESET, Mode.LOST_RESPONSE, Mode.BLACKHOLE)]


def fault_proxy(ctx: Context) -> list[Figure]:
    """N labels and M partner jobs through the workers while both proxies inject every fault → each order one
    label, each job one partner job, 0 lost; 0 blind retries after an unknown outcome."""
    name = "fault-proxy"
    labels, jobs, next_n = ctx.pick(16, 200), ctx.pick(12, 120), ctx.pick(2, 8)
    with ExitStack() as stack:
        carrier = stack.enter_context(BackgroundServer(CarrierSimConfig(webhook_url=None, seed=8)))
        sink = stack.enter_context(SmtpSink())
        partner_url = stack.enter_context(serve_sim())
        carrier_proxy = stack.enter_context(FaultProxy(carrier.url, seed=11, blackhole_hold_s=30))
        partner_proxy = stack.enter_context(FaultProxy(partner_url, seed=12, blackhole_hold_s=30))
        carrier_proxy.set_rules(create_rules(next_n=next_n) + rules(BUY, next_n=next_n, background=BACKGROUND))
        partner_proxy.set_rules(rules(SUBMIT, next_n=next_n, background=BACKGROUND))
        logs = ctx.workdir / "logs"
        logs.mkdir(exist_ok=True)
        env = {**os.environ, **TEST_KEYS, "DATABASE_URL": ctx.pg_url, "REDIS_URL": ctx.redis_url,
               "PYTHONPATH": str(ROOT), "OBJECT_STORE_DIR": str(ctx.workdir / "objects"),
               "PRESSROOM_PROMETHEUS": "0", "PRESSROOM_API_URL": DEAD_URL, "dramatiq_queue_prefetch": "16",
               "EASYPOST_API_BASE": f"{carrier_proxy.url}/v2", "EASYPOST_TIMEOUT_S": str(CLIENT_TIMEOUT_S),
               "EASYPOST_RATE_PER_S": "100", "EASYPOST_BURST": "20",
               "PARTNER_API_BASE": partner_proxy.url, "PARTNER_TIMEOUT_S": str(CLIENT_TIMEOUT_S),
               "PARTNER_RATE_PER_S": "200", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.smtp_port)}
        system = Processes(env=env, logs=logs)
        stack.callback(system.stop)
        harness = RedisHarness(ctx.pg_url, ctx.workdir)
        svc = harness.services
        stack.callback(svc.engine.dispose)
        world = ShippingWorld(ctx=ctx, harness=harness, system=system, carrier=carrier, sink=sink)
        # the production side first (rendered, routed and batched here, as their workers would), then the worker
        job_orders = place_orders(harness, orders=jobs, units=1)
        production_rules = ProductionRules()
        for order_id in job_orders:
            assert render_order(order_id, uow=svc.uow(), store=svc.store, now=svc.now,
                                clock=time.perf_counter) == "rendered"
            assert route_order(order_id, uow=svc.uow(), now=svc.now(), rules=production_rules) == "routed"
        system.start("worker", sys.executable, "-m", "workers", "workers.actors", "--processes", "1",
                     "--threads", "8", "--queues", "shipping", "notify", "production")
        # batch, then release the batches as if their max wait had passed: SubmitBatch messages go out
        batch_ready_jobs(svc.uow(), now=svc.now(), rules=production_rules, new_id=svc.ids.new)
        batch_ready_jobs(svc.uow(), now=svc.now() + production_rules.batching.max_wait + timedelta(seconds=1),
                         rules=production_rules, new_id=svc.ids.new)
        started = time.monotonic()
        # one buy-label message per order: two runs of one order at once would be two clients to the proxy, and
        # its record could not tell one's fresh buy from the other's blind retry
        label_orders = place(world, [VALID] * labels, copies=1)
        client = redis.Redis.from_url(ctx.redis_url)
        try:
            wait_settled(world, label_orders, emails=labels, timeout=ctx.pick(150, 1200))
            _wait_submitted(svc.engine, client, system, timeout=ctx.pick(150, 1200))
        except AssertionError as stuck:  # say why here: the logs go with the work folder
            tail = (logs / "worker.log").read_text(errors="replace")[-4000:]
            raise AssertionError(f"{stuck}\ncarrier proxy {carrier_proxy.ledger()['faults']}, partner proxy "
                                 f"{partner_proxy.ledger()['faults']}\nworker log tail:\n{tail}") from None
        took = time.monotonic() - started
        carrier_ledger, partner_ledger = world.ledger(), sim_ledger(partner_url)
        carrier_log, partner_log = carrier_proxy.exchanges(), partner_proxy.exchanges()
        states = statuses(world, label_orders)
        j = t.print_jobs
        with svc.engine.connect() as conn:
            db_jobs = {r.id: str(r.status)
                       for r in conn.execute(select(j.c.id, j.c.status).where(j.c.order_id.in_(job_orders)))}
        dead = sum(s.dead for s in queue_stats(client, ("shipping", "notify", "production")))
    return _figures(name, labels=labels, label_orders=label_orders, states=states, carrier_ledger=carrier_ledger,
                    partner_ledger=partner_ledger, db_jobs=db_jobs, carrier_log=carrier_log,
                    partner_log=partner_log, dead=dead, took=took)


def _figures(name: str, *, labels: int, label_orders: list[str], states: dict, carrier_ledger: dict,
             partner_ledger: dict, db_jobs: dict[str, str], carrier_log: list[Exchange], partner_log: list[Exchange],
             dead: int, took: float) -> list[Figure]:
    bought = carrier_ledger["purchases_by_reference"]
    created = partner_ledger["by_external_id"]
    shipments = carrier_ledger["shipments_by_reference"]
    ours = set(label_orders)
    orphans = sum(n - 1 for ref, n in shipments.items() if ref in ours and n > 1)
    figures = [
        count_figure(name, f"orders with exactly 1 label (of {labels:,}; {carrier_ledger['labels_bought']:,} bought; "
                           f"re-buys refused as already bought: {carrier_ledger['buys_refused_postage_exists']})",
                     sum(1 for o in label_orders if bought.get(o, 0) == 1), labels),
        count_figure(name, f"carrier shipments left unbought (a second shipment for an order; "
                           f"{carrier_ledger['shipments_created']:,} created, "
                           f"{carrier_ledger.get('shipments_found_by_reference', 0)} found again by reference)",
                     orphans, 0),
        count_figure(name, "double-bought references (carrier sim ledger)",
                     len(carrier_ledger["double_bought_references"]), 0),
        count_figure(name, f"orders at label_created (labels and jobs settled in {took:.0f} s)",
                     sum(1 for s in states.values() if s[0] == OrderStatus.LABEL_CREATED), labels),
        count_figure(name, f"jobs duplicated at the partner (sim ledger; repeat submits it deduped: "
                           f"{partner_ledger.get('repeat_submits', 0)})", partner_ledger["duplicate_creates"], 0),
        count_figure(name, f"jobs submitted exactly once (of {len(db_jobs):,} in the database)",
                     sum(1 for job, status in db_jobs.items()
                         if status == JobStatus.SUBMITTED and created.get(job) == 1),
                     len(db_jobs)),
        count_figure(name, "unexpected partner jobs (not a job of the orders sent to production)",
                     sum(1 for ext in created if ext not in db_jobs), 0),
        count_figure(name, "shipping/notify/production messages dead-lettered", dead, 0),
    ]
    for mode in MODES:
        figures.append(_mode_figure(name, mode, carrier_log, partner_log))
    struck = [e for e in carrier_log if e.unknown_outcome and CREATE_LOOKUPS.effect.search(f"{e.method} {e.target}")]
    unknown_s, blind_s = asked_first(carrier_log, CREATE_LOOKUPS)
    figures.append(Figure(
        test=name, figure=f"shipment creates left without an answer ({_modes(struck)}) resolved by asking by "
                          f"reference first: {unknown_s - len(blind_s)}/{unknown_s} (blind re-creates: "
                          f"{_seqs(blind_s)})",
        pass_figure="100 %; > 0", passed=unknown_s > 0 and not blind_s))
    unknown_c, blind_c = asked_first(carrier_log, CARRIER_LOOKUPS)
    unknown_p, blind_p = asked_first(partner_log, PARTNER_LOOKUPS)
    figures.append(Figure(
        test=name, figure=f"unknown outcomes resolved by asking first: buys {unknown_c - len(blind_c)}/{unknown_c}, "
                          f"submits {unknown_p - len(blind_p)}/{unknown_p} (blind retries: "
                          f"{_seqs(blind_c + blind_p)})",
        pass_figure="100 %; > 0 of each", passed=unknown_c > 0 and unknown_p > 0 and not blind_c and not blind_p))
    return figures


def _mode_figure(name: str, mode: Mode, carrier_log: list[Exchange], partner_log: list[Exchange]) -> Figure:
    """How often a mode struck each side (all calls; buys/submits among them), and, for the faults that leave
    the client without an answer, whether the next call about that buy or submit was a lookup."""
    def side(log: list[Exchange], lookups: Lookups) -> tuple[int, int, int, int]:
        hit = [e for e in log if e.fault == mode]
        effect = [e for e in hit if lookups.effect.search(f"{e.method} {e.target}")]
        unknown, blind = asked_first(log, lookups, fault=mode.value)
        return len(hit), len(effect), unknown, len(blind)

    c_hit, c_effect, c_unknown, c_blind = side(carrier_log, CARRIER_LOOKUPS)
    p_hit, p_effect, p_unknown, p_blind = side(partner_log, PARTNER_LOOKUPS)
    late = f" ({LATE_MS / 1000:g} s, past the timeout, or 150 ms)" if mode is Mode.LATENCY else ""
    text = (f"{mode}{late}: carrier {c_hit} calls ({c_effect} buys), partner {p_hit} calls ({p_effect} submits); "
            f"unknown buys/submits {c_unknown}/{p_unknown}, blind retries {c_blind + p_blind}")
    return Figure(test=name, figure=text, pass_figure="struck buys and submits; 0 blind retries",
                  passed=c_effect > 0 and p_effect > 0 and c_blind + p_blind == 0)


def _wait_submitted(engine, client: redis.Redis, system: Processes, *, timeout: float) -> None:
    """Until every print job has left `batched` (submitted) and the production queue is empty."""
    deadline = time.monotonic() + timeout
    waiting = None
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.scalar(select(func.count()).where(t.print_jobs.c.status == JobStatus.BATCHED))
        [production] = queue_stats(client, ("production",))
        if not waiting and not (production.depth or production.in_flight or production.delayed):
            return
        system.assert_alive()
        time.sleep(0.5)
    raise AssertionError(f"{waiting} jobs still batched after {timeout}s; logs in {system.logs}")


def _modes(exchanges: list[Exchange]) -> str:
    counts = Counter(e.fault or "client gave up" for e in exchanges)  # no fault: the upstream was too slow
    return ", ".join(f"{mode} {n}" for mode, n in sorted(counts.items())) or "none struck"


def _seqs(blind: list[Exchange]) -> str:
    return ", ".join(f"#{e.seq} {e.method} {e.target[:60]}" for e in blind[:3]) if blind else "0"

