"""The monitor on PostgreSQL and real Redis: stuck orders, queue floods and dead letters open one alert each,
clear when the condition ends, and every new alert reaches the ops mailbox (a real SMTP sink) exactly once."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import redis
from dramatiq import Message
from sqlalchemy import func, insert, select, update

from core.events import Noted
from core.monitors import default_thresholds
from core.services.monitor import save_thresholds
from core.services.shipping import SCAN_KIND
from core.states import JobStatus, OrderStatus
from db import tables as t
from sims.smtp_sink import SmtpSink, free_port
from tests.conftest import settings_for
from tests.integration.test_intake_on_postgres import RedisHarness
from workers.bootstrap import Container
from workers.monitor import monitor
from workers.scheduler import tick

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

OPS = "ops-desk@example.com"


class ClockedContainer(Container):
    """The workers' real composition root; the test may stop its clock (`clock`), else it is the real one."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.clock: datetime | None = None

    def now(self) -> datetime:
        return self.clock or Container.now()


@pytest.fixture
def sink():
    with SmtpSink() as server:
        yield server


def system(pg_url, tmp_path, *, smtp_port: int) -> tuple[RedisHarness, ClockedContainer]:
    """The API (for placing real orders) and the workers' container on the same PostgreSQL and Redis."""
    api = RedisHarness(pg_url, tmp_path)
    settings = settings_for(pg_url, object_store_dir=str(tmp_path / "objects"), smtp_port=smtp_port, ops_email=OPS,
                            partner_api_base=f"http://127.0.0.1:{free_port()}")
    return api, ClockedContainer(settings)


def place(api: RedisHarness) -> dict:
    response = api.client.post("/v1/orders", json=api.order_body(api.upload()["id"]))
    assert response.status_code == 201, response.text
    return response.json()


def alerts(c: Container, **where) -> list[dict]:
    a = t.alerts
    with c.engine.connect() as conn:
        query = select(a).where(*(a.c[name] == value for name, value in where.items())).order_by(a.c.id)
        return [dict(row._mapping) for row in conn.execute(query)]


def open_alerts(c: Container, kind: str) -> list[dict]:
    return [alert for alert in alerts(c, kind=kind) if alert["cleared_at"] is None]


def status_changed_at(c: Container, order_id: str) -> datetime:
    with c.engine.connect() as conn:
        return conn.scalar(select(t.orders.c.status_changed_at).where(t.orders.c.id == order_id))


def move_back(c: Container, order_id: str, seconds: float) -> None:
    """Make the order look as if it had sat in its status `seconds` longer."""
    earlier = status_changed_at(c, order_id) - timedelta(seconds=seconds)
    with c.engine.begin() as conn:
        conn.execute(update(t.orders).where(t.orders.c.id == order_id).values(status_changed_at=earlier))


def test_a_stuck_order_raises_an_alert_on_the_next_run_and_it_clears_when_the_order_moves(pg_url, redis_url,
                                                                                            tmp_path, sink):
    # given an accepted order and an exception-inbox alert support has not resolved yet
    api, c = system(pg_url, tmp_path, smtp_port=sink.smtp_port)
    order = place(api)
    with c.uow() as uow:
        uow.alerts.raise_(kind="carrier", key=order["id"], order_id=order["id"], severity="warning",
                          message="parcel lost?", at=c.now())
        uow.commit()
    deadline = c.settings.stage_deadlines_s[OrderStatus.ACCEPTED]
    # when the monitor runs while the order is within its deadline, nothing is stuck
    monitor(c)
    assert open_alerts(c, "stuck") == []
    # when its status change is moved back past the deadline, the next run raises one alert naming it
    move_back(c, order["id"], deadline + 1)
    run = monitor(c)
    [stuck] = open_alerts(c, "stuck")
    assert run.raised == (("stuck", "order:accepted"),)
    assert (stuck["key"], stuck["severity"]) == ("order:accepted", "warning")
    assert order["number"] in stuck["message"] and "1 order stuck in accepted" in stuck["message"]
    assert stuck["details"]["ids"] == [order["id"]]
    # when the order moves on through its aggregate, the next run clears the alert
    with c.uow() as uow:
        uow.orders.get(order["id"], lock=True).advance(OrderStatus.RENDERING, at=c.now(), source="worker:render")
        uow.commit()
    c.clock = c.now()
    run = monitor(c)
    assert run.cleared == (("stuck", "order:accepted"),)
    assert open_alerts(c, "stuck") == []
    assert alerts(c, kind="stuck")[0]["cleared_at"] == c.clock
    # and the exception-inbox alert is still open: only support clears those
    assert [a["key"] for a in open_alerts(c, "carrier")] == [order["id"]]


def test_a_stuck_order_raises_its_alert_within_one_monitor_period_of_its_deadline(pg_url, redis_url, tmp_path,
                                                                                     sink):
    # given an order just accepted, and the real scheduler beat driven by the test's clock
    api, c = system(pg_url, tmp_path, smtp_port=sink.smtp_port)
    order = place(api)
    accepted_at = status_changed_at(c, order["id"])
    deadline = timedelta(seconds=c.settings.stage_deadlines_s[OrderStatus.ACCEPTED])
    period = timedelta(seconds=c.settings.monitor_every_s)
    beat_length = timedelta(seconds=c.settings.reconcile_every_s)
    # when the scheduler beats on (reconciler, sampler, batcher, …, and the monitor every `period`)
    raised_at = None
    for beat in range(int((deadline + 2 * period) / beat_length) + 1):
        c.clock = accepted_at + beat * beat_length
        tick(c, beat)
        if open_alerts(c, "stuck"):
            raised_at = c.clock
            break
    # then the alert was raised after the deadline and no later than one monitor period past it
    assert raised_at is not None
    assert accepted_at + deadline < raised_at <= accepted_at + deadline + period
    # and the reconciler, which re-drove the order at its deadline, did not hide it from the monitor
    assert len(open_alerts(c, "stuck")) == 1 and order["number"] in open_alerts(c, "stuck")[0]["message"]


def test_a_queue_over_its_depth_threshold_raises_one_alert_not_two_and_clears_when_drained(pg_url, redis_url,
                                                                                            tmp_path, sink):
    # given three real render messages on Redis and a manager's stored render-depth threshold of 2
    api, c = system(pg_url, tmp_path, smtp_port=sink.smtp_port)
    for _ in range(3):
        place(api)
    save_thresholds({"queues": {"render": {"depth": {"warning": 2, "critical": 10}}}}, uow=c.uow(),
                    actor="maya", at=c.now(), defaults=default_thresholds(c.settings))
    # when the monitor runs three times
    runs = [monitor(c) for _ in range(3)]
    # then exactly one render depth alert exists, raised by the first run only
    [depth] = alerts(c, kind="queue_depth")
    assert [r.raised for r in runs] == [(("queue_depth", "render"),), (), ()]
    assert (depth["key"], depth["severity"], depth["cleared_at"]) == ("render", "warning", None)
    assert "3 messages waiting" in depth["message"] and "warning above 2" in depth["message"]
    # and the threshold change is in the audit log
    with c.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(t.audit_log)
                           .where(t.audit_log.c.action == "monitor.edit_thresholds",
                                  t.audit_log.c.actor == "maya")) == 1
    # when the queue is drained (Redis flushed), the next run clears it
    redis.Redis.from_url(redis_url).flushdb()
    assert monitor(c).cleared == (("queue_depth", "render"),)
    assert open_alerts(c, "queue_depth") == []


def test_a_dead_lettered_message_opens_an_error_rate_alert_for_its_queue(pg_url, redis_url, tmp_path, sink):
    # given a qa message that a real Dramatiq consumer gave up on (nacked into the dead letters)
    api, c = system(pg_url, tmp_path, smtp_port=sink.smtp_port)
    c.broker.enqueue(Message(queue_name="qa", actor_name="qa.inspect_job", args=(), kwargs={"job_id": "j-1"},
                             options={}))
    consumer = c.broker.consume("qa", prefetch=1, timeout=1000)
    message = next(m for m in consumer if m is not None)
    consumer.nack(message)
    consumer.close()
    # when the monitor runs
    monitor(c)
    # then the qa queue has an error-rate alert, and no other queue has one
    [errors] = open_alerts(c, "error_rate")
    assert (errors["key"], errors["severity"]) == ("qa", "warning")
    assert "1 message dead-lettered in the last 15 min" in errors["message"]


def test_a_new_alert_is_e_mailed_to_ops_exactly_once(pg_url, redis_url, tmp_path, sink):
    # given a stuck order
    api, c = system(pg_url, tmp_path, smtp_port=sink.smtp_port)
    order = place(api)
    move_back(c, order["id"], c.settings.stage_deadlines_s[OrderStatus.ACCEPTED] + 1)
    # when the monitor runs three times
    for _ in range(3):
        monitor(c)
    # then ops got exactly one e-mail about it, and the alert says when it was e-mailed
    [alert] = open_alerts(c, "stuck")
    [mail] = sink.mailbox.newest_first(to=OPS)
    assert mail.subject == "[Pressroom WARNING] stuck: order:accepted"
    assert order["number"] in mail.text and "/control_room" in mail.text
    assert mail.message_id == f"<alert-{alert['id']}@pressroom.dev>"
    assert alert["notified_at"] >= alert["opened_at"]


def test_an_alert_e_mail_the_server_refused_is_sent_once_the_server_is_back(pg_url, redis_url, tmp_path):
    # given a stuck order and an ops mail server that is down
    port = free_port()
    api, c = system(pg_url, tmp_path, smtp_port=port)
    order = place(api)
    move_back(c, order["id"], c.settings.stage_deadlines_s[OrderStatus.ACCEPTED] + 1)
    # when the monitor runs, the alert is raised all the same and waits to be e-mailed
    monitor(c)
    [alert] = open_alerts(c, "stuck")
    assert alert["notified_at"] is None
    # when the mail server is back, the next runs send it once
    with SmtpSink(smtp_port=port) as sink:
        monitor(c)
        monitor(c)
        assert [m.subject for m in sink.mailbox.newest_first(to=OPS)] == ["[Pressroom WARNING] stuck: order:accepted"]
    assert open_alerts(c, "stuck")[0]["notified_at"] is not None


def test_stored_thresholds_that_cannot_work_keep_the_defaults_and_say_so(pg_url, redis_url, tmp_path, sink):
    # given a thresholds document someone broke by hand in the database
    api, c = system(pg_url, tmp_path, smtp_port=sink.smtp_port)
    with c.uow() as uow:
        uow.settings_store.put("monitor_thresholds", {"orders": {"accepted": {"warning": "soon"}}}, by="dba",
                               at=c.now())
        uow.commit()
    order = place(api)
    move_back(c, order["id"], c.settings.stage_deadlines_s[OrderStatus.ACCEPTED] + 1)
    # when the monitor runs, it still watches with the defaults and raises an alert about the document
    monitor(c)
    assert [a["key"] for a in open_alerts(c, "stuck")] == ["order:accepted"]
    [config] = open_alerts(c, "monitor_config")
    assert "orders.accepted" in config["message"] and "defaults apply" in config["message"]


def test_a_silent_parcel_and_a_stuck_print_job_open_alerts_that_clear_on_a_scan_and_a_move(pg_url, redis_url,
                                                                                             tmp_path, sink):
    # given a shipped order whose parcel was bought four days ago and never scanned, and a printed job that QA
    # has not looked at for twice its deadline
    api, c = system(pg_url, tmp_path, smtp_port=sink.smtp_port)
    order = place(api)
    c.clock = c.now()
    bought = c.clock - timedelta(days=c.settings.no_scan_days + 1)
    printed = c.clock - timedelta(seconds=2 * c.settings.job_deadlines_s[JobStatus.PRINTED])
    with c.engine.begin() as conn:
        [line_id] = conn.scalars(select(t.order_lines.c.id).where(t.order_lines.c.order_id == order["id"]))
        conn.execute(insert(t.shipments).values(id="shp_monitor", order_id=order["id"], status="purchased",
                                                tracking_code="1ZMONITOR", created_at=bought,
                                                status_changed_at=bought, version=1))
        conn.execute(insert(t.print_jobs).values(id="job_monitor", order_id=order["id"], line_id=line_id,
                                                 unit_index=1, status="printed", created_at=printed,
                                                 status_changed_at=printed, version=1))
    # when the monitor runs
    monitor(c)
    # then one silent-parcel alert names the order and its tracking code, and one stuck-job alert the job
    [silent] = open_alerts(c, "silent_parcel")
    assert f"{order['number']} (1ZMONITOR)" in silent["message"] and silent["severity"] == "warning"
    [job] = open_alerts(c, "stuck")
    assert job["key"] == "job:printed" and f"{order['number']} #1" in job["message"]
    assert job["details"]["ids"] == ["job_monitor"]
    # when the carrier scans the parcel and QA passes the job, the next run clears both
    with c.uow() as uow:
        uow.timeline.add(Noted(order_id=order["id"], at=c.clock, source="carrier:easypost", kind=SCAN_KIND,
                               key="scan:monitor-test"))
        uow.commit()
    with c.engine.begin() as conn:
        conn.execute(update(t.print_jobs).where(t.print_jobs.c.id == "job_monitor")
                     .values(status="qa_passed", status_changed_at=c.clock))
    assert set(monitor(c).cleared) == {("silent_parcel", "shipments"), ("stuck", "job:printed")}
    assert open_alerts(c, "silent_parcel") == open_alerts(c, "stuck") == []
