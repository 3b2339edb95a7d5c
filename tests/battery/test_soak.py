"""The soak at CI size: the whole system (API, 2 worker processes, scheduler, sims) on PostgreSQL and a private
redis-server, a random booted worker SIGKILLed every 2 s while a handful of orders flow; the sims' ledgers
reconciled against the database.

Slower than its neighbours (about 2 minutes on 2 cores: the processes boot, and every order goes from intake to
delivered through render, partner, QA, label and carrier): it is the one test that runs the system end to end
under faults. It asserts counts only; the time bound of the issue's figure is printed, not asserted.
"""

from __future__ import annotations

import json
import time

import pytest

from battery import soak
from battery.framework import failures, table

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(900)]


def test_workers_sigkilled_every_two_seconds_lose_no_order_and_duplicate_no_effect(tmp_path, pg_server):
    # given the whole system, and a worker's process group SIGKILLed every 2 s for 15 s while 4 orders flow
    figures = soak.sigkill(4, tmp_path, timeout=600, kill_every=2, kill_for=15, server=pg_server)
    print("\n" + table(figures))
    # then every order was accepted, stored and delivered, and no label, partner job, e-mail or SMS was lost,
    # duplicated or unexpected (a time bound is printed, not asserted)
    counted = [f for f in failures(figures) if not f.figure.startswith(soak.AFTER_LAST_KILL)]
    assert not counted, "\n" + table(counted)
    assert any(f.figure.startswith("labels") for f in figures)


def test_the_carrier_watch_knows_which_shipment_a_client_is_buying_until_it_is_answered():
    import asyncio

    from battery.system import BuyWatch

    async def scenario() -> None:
        release = asyncio.Event()

        async def carrier(scope, receive, send) -> None:  # answers a buy only once released
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        watch, sent = BuyWatch(carrier), []

        async def send(message) -> None:
            sent.append(message)

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        def request(method: str, path: str, port: int) -> dict:
            return {"type": "http", "method": method, "path": path, "client": ("127.0.0.1", port)}

        # given a client on port 5001 buying shipment shp_1, and another retrieving it meanwhile
        buy = asyncio.ensure_future(watch(request("POST", "/v2/shipments/shp_1/buy", 5001), receive, send))
        await asyncio.sleep(0.01)
        # then while the buy is unanswered the watch names it by the buyer's port, and counts every request on it
        assert watch.in_flight_for(5001) == "shp_1" and watch.in_flight_for(5002) is None
        release.set()
        await watch(request("GET", "/v2/shipments/shp_1", 5002), receive, send)
        await buy
        # and once answered, the client is buying nothing
        assert watch.in_flight_for(5001) is None
        assert watch.touches["shp_1"] == 2

    asyncio.run(scenario())


def test_a_kept_sigkill_run_tells_how_long_each_worker_life_took_to_boot_and_lasted_once_ready(tmp_path):
    from datetime import UTC, datetime

    from battery.worker_boot import lives

    def at(stamp: str) -> float:
        return datetime.strptime(stamp, "%H:%M:%S,%f").replace(year=2026, month=11, day=27, tzinfo=UTC).timestamp()

    def line(stamp: str, pid: int, logger: str, message: str) -> str:
        return f"[2026-11-27 {stamp}] [PID {pid}] [MainThread] [{logger}] [INFO] {message}\n"

    # given a worker started by the supervisor, ready 6 s later, one inspection read from the store, killed 1.5 s on
    (tmp_path / "supervisor.log").write_text(f"{at('21:00:00,000'):.3f} started worker0 pid 100\n"
                                             f"{at('21:00:07,500'):.3f} killed worker0 pid 100\n")
    (tmp_path / "worker0.00001.log").write_text(
        line("21:00:05,900", 100, "dramatiq.MainProcess", "Dramatiq '2.2.1' is booting up.")
        + line("21:00:06,000", 101, "dramatiq.WorkerProcess(0)", "Worker process is ready for action.")
        + line("21:00:06,300", 101, "adapters.prepared", "prepared PreparedReference x read from the store in 0.1 s")
        + line("21:00:07,000", 101, "workers.qa", "inspected job job_1: passed in 0.90 s"))
    # when the run's logs are read
    found = lives(tmp_path)
    # then the life's boot, time ready and work are reported
    assert found["spawn → ready"] == [6.0] and found["ready → killed"] == [1.5]
    assert found["inspections"] == [1] and found["prepared read"] == [1] and found["prepared made"] == [0]



def test_the_soak_reads_a_handover_from_the_broker_a_stopped_worker_holding_its_message_until_the_other_takes_it(
        redis_url):
    """dispatch.lua's maintenance, as the sigstop soak sees it: a worker whose last command is older than the
    heartbeat timeout is dead, its held message goes back on the queue, another worker's fetch takes it. A holder
    that acks its own message is not a handover."""
    import redis
    from dramatiq.brokers.redis import RedisBroker

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    def broker():
        b = RedisBroker(url=redis_url, namespace=soak.NAMESPACE, heartbeat_timeout=300, maintenance_chance=1_000_000)
        b.declare_queue("shipping")
        return b
    stopped, other = broker(), broker()
    for order in ("ord_a", "ord_b"):
        stopped.do_enqueue("shipping", f"m_{order}", json.dumps(
            {"queue_name": "shipping", "actor_name": "shipping.buy_label", "args": [], "kwargs": {"order_id": order},
             "options": {}, "message_id": f"m_{order}", "message_timestamp": 0}))
    assert len(stopped.do_fetch("shipping", 2)) == 2  # held by `stopped`
    view = soak.HeldMessages(client, "shipping")
    held, beats = view.holding("shipping.buy_label", "ord_a"), view.heartbeats()
    assert held == {"m_ord_a": stopped.broker_id}
    assert not view.handed_over("m_ord_a", stopped.broker_id, beats)  # nothing has happened yet

    time.sleep(0.4)  # `stopped` sends nothing for longer than the heartbeat timeout
    other.do_fetch("shipping", 1)  # maintenance puts both back on the queue; this fetch takes one of them
    other.do_fetch("shipping", 1)
    assert view.handed_over("m_ord_a", stopped.broker_id, beats)

    # a holder that acks its own message: it left the holder's hands, but by its own command
    other.do_enqueue("shipping", "m_ord_c", json.dumps(
        {"queue_name": "shipping", "actor_name": "shipping.buy_label", "args": ["ord_c"], "kwargs": {},
         "options": {}, "message_id": "m_ord_c", "message_timestamp": 0}))
    other.do_fetch("shipping", 1)
    held, beats = view.holding("shipping.buy_label", "ord_c"), view.heartbeats()
    assert held == {"m_ord_c": other.broker_id}
    time.sleep(0.01)
    other.do_ack("shipping", "m_ord_c")
    assert not view.handed_over("m_ord_c", other.broker_id, beats)
    client.flushdb()
