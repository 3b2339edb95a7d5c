"""Customer messages lost with a flushed Redis are re-sent by the reconciler, and still go out exactly once:
real PostgreSQL, real Redis (FLUSHDB between the enqueue and the worker), the real notify worker process, the
SMTP sink and the SMS sim."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import insert, select

from adapters.broker import DramatiqBus, make_broker, queue_stats
from core.notifications import NotificationStatus, notification_id
from core.services.notify import MAX_ATTEMPTS, resend
from core.services.reconcile import reconcile
from db import tables as t
from sims.sms import BackgroundSms
from sims.smtp_sink import SmtpSink
from tests.conftest import TEST_KEYS, ApiHarness, png_bytes

ROOT = Path(__file__).resolve().parents[2]
S = NotificationStatus


@dataclass
class Stack:
    """The API on PostgreSQL sending through the real Redis broker, the two sims, and the notify worker."""

    api: ApiHarness
    redis: redis.Redis
    sink: SmtpSink
    sms: BackgroundSms
    env: dict[str, str]
    tmp: Path
    worker: subprocess.Popen | None = None

    def place_order(self) -> str:
        art = self.api.upload(png_bytes(2400, 2400))["id"]
        response = self.api.client.post("/v1/orders", json=self.api.order_body(art))
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def notify_depth(self) -> int:
        """Messages waiting on the notify queue (Redis), delayed ones included."""
        stats = next(s for s in queue_stats(self.redis) if s.queue == "notify")
        return stats.depth + stats.delayed + stats.in_flight

    def start_worker(self) -> None:
        log = (self.tmp / "worker.log").open("ab")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "workers", "workers.actors", "--processes", "1", "--threads", "1",
             "--queues", "notify"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def emails(self, to: str = "ada@example.com") -> list[dict[str, Any]]:
        return httpx.get(f"{self.sink.http_url}/messages", params={"to": to}).json()

    def texts(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.sms.url}/v1/messages").json()

    def rows(self, order_id: str) -> dict[tuple[str, str], str]:
        n = t.notifications
        with self.api.services.engine.connect() as conn:
            return {(r.milestone, r.channel): r.status for r in conn.execute(
                select(n.c.milestone, n.c.channel, n.c.status).where(n.c.order_id == order_id))}

    def reconcile(self) -> int:
        svc = self.api.services
        return reconcile(svc.uow(), now=svc.now(), deadlines_s=svc.settings.stage_deadlines_s, notify_after_s=0.0)


def eventually(check: Callable[[], Any], *, timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)


@pytest.fixture
def stack(pg_url, redis_url, tmp_path) -> Iterator[Stack]:
    with SmtpSink() as sink, BackgroundSms() as sms:
        api = ApiHarness(pg_url, tmp_path)
        settings = replace(api.services.settings, redis_url=redis_url)
        api.services.bus = DramatiqBus(make_broker(settings))  # stage messages go to the real Redis
        env = {**os.environ, **TEST_KEYS, "PYTHONPATH": str(ROOT), "DATABASE_URL": pg_url, "REDIS_URL": redis_url,
               "SMTP_PORT": str(sink.smtp_port), "SMS_URL": sms.url, "OBJECT_STORE_DIR": str(tmp_path / "objects"),
               "PRESSROOM_PROMETHEUS": "0"}
        found = Stack(api=api, redis=redis.Redis.from_url(redis_url), sink=sink, sms=sms, env=env, tmp=tmp_path)
        try:
            yield found
        finally:
            if found.worker is not None and found.worker.poll() is None:
                os.killpg(found.worker.pid, signal.SIGINT)  # Dramatiq stops gracefully on SIGINT
                try:
                    found.worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(found.worker.pid, signal.SIGKILL)
                    found.worker.wait(timeout=10)
            api.services.engine.dispose()


@pytest.mark.integration
def test_messages_lost_with_a_flushed_redis_are_resent_by_the_reconciler_exactly_once(stack):
    # given an order whose "received" e-mail and text were queued on Redis after the checkout committed
    order_id = stack.place_order()
    assert stack.notify_depth() == 2
    assert stack.rows(order_id) == {("received", "email"): S.QUEUED, ("received", "sms"): S.QUEUED}

    # when Redis is flushed before any worker took them, and the reconciler runs twice before the worker starts
    stack.redis.flushdb()
    assert stack.notify_depth() == 0
    assert stack.reconcile() == 2
    assert stack.reconcile() == 2  # a re-drive that is itself only slow: now two messages per channel
    assert stack.notify_depth() == 4
    stack.start_worker()

    # then the customer gets the e-mail and the text, once each
    eventually(lambda: stack.rows(order_id) == {("received", "email"): S.SENT, ("received", "sms"): S.SENT},
               what="both messages sent")
    eventually(lambda: stack.notify_depth() == 0 or stack.worker.poll() is not None, what="queue drained")
    assert len(stack.emails()) == 1 and len(stack.texts()) == 1
    assert stack.emails()[0]["message_id"] == f"<{notification_id(order_id, 'received', 'email')}@pressroom.dev>"

    # and once sent, the reconciler leaves them alone
    stack.reconcile()
    assert stack.notify_depth() == 0


@pytest.mark.integration
def test_a_support_resend_whose_message_was_flushed_still_goes_out_once(stack):
    # given an order whose "received" e-mail and text went out (a text still queued would be re-driven too)
    order_id = stack.place_order()
    stack.start_worker()
    eventually(lambda: stack.rows(order_id).get(("received", "email")) == S.SENT, what="first e-mail sent")
    eventually(lambda: stack.rows(order_id).get(("received", "sms")) == S.SENT, what="first text sent")
    os.killpg(stack.worker.pid, signal.SIGSTOP)  # paused, so the resend's message is still on Redis when flushed
    try:
        # when support resends it and Redis is flushed before the worker takes the message
        svc = stack.api.services
        assert resend(order_id, "received", "email", "sam", uow=svc.uow(), now=svc.now()) == "received.resend1"
        stack.redis.flushdb()
        assert stack.rows(order_id)[("received.resend1", "email")] == S.QUEUED
        assert stack.reconcile() == 1
    finally:
        os.killpg(stack.worker.pid, signal.SIGCONT)

    # then the resend goes out, once
    eventually(lambda: stack.rows(order_id).get(("received.resend1", "email")) == S.SENT, what="resend sent")
    eventually(lambda: stack.notify_depth() == 0, what="queue drained")
    mails = stack.emails()
    assert len(mails) == 2 and mails[0]["message_id"] != mails[1]["message_id"]


@pytest.mark.integration
def test_the_reconciler_picks_only_messages_that_are_due_untouched_and_not_given_up(stack):
    # given one order's messages in every state, some touched recently
    svc = stack.api.services
    order_id = stack.place_order()
    stack.redis.flushdb()
    now = svc.now()
    old, recent = now - timedelta(minutes=30), now - timedelta(seconds=30)
    rows = {  # milestone: (status, attempts, created_at, sent_at, redriven_at)
        "preview_ready": (S.QUEUED, 0, old, None, None),  # lost: due again
        "production_started": (S.FAILED, 2, old, old, None),  # its retry was lost: due again
        "qa_passed": (S.FAILED, MAX_ATTEMPTS, old, old, None),  # gave up: support's alert, not ours
        "shipped": (S.QUEUED, 0, old, None, recent),  # re-driven a moment ago: wait
        "delivered": (S.FAILED, 1, old, recent, None),  # tried a moment ago: its retry is on its way
        "exception": (S.SENDING, 1, old, old, None),  # the stale sweep's business (unknown), never resent
    }
    with svc.engine.begin() as conn:
        conn.execute(t.notifications.delete().where(t.notifications.c.order_id == order_id))
        conn.execute(insert(t.notifications), [
            {"id": notification_id(order_id, m, "email"), "order_id": order_id, "milestone": m, "channel": "email",
             "status": str(status), "attempts": attempts, "created_at": created, "sent_at": sent,
             "redriven_at": redriven} for m, (status, attempts, created, sent, redriven) in rows.items()])

    # when the reconciler runs with its production interval
    sent = reconcile(svc.uow(), now=now, deadlines_s=svc.settings.stage_deadlines_s)

    # then exactly the lost queued message and the failed one with attempts left are queued again
    queued = [m for m in _queued_messages(stack) if m["order_id"] == order_id]
    assert sorted(m["milestone"] for m in queued) == ["preview_ready", "production_started"]
    assert sent >= 2
    # and a second run straight after queues nothing more (they were just re-driven)
    reconcile(svc.uow(), now=now + timedelta(seconds=1), deadlines_s=svc.settings.stage_deadlines_s)
    assert len([m for m in _queued_messages(stack) if m["order_id"] == order_id]) == 2


def _queued_messages(stack: Stack) -> list[dict[str, Any]]:
    import json

    from adapters.broker import NAMESPACE

    raw = stack.redis.hgetall(f"{NAMESPACE}:notify.msgs")
    return [json.loads(body)["kwargs"] for body in raw.values()]
