"""A partner's webhook that arrives before the submitting worker has recorded the partner's answer (the worker
paused or slow between the call and its commit: the soak's SIGSTOP caught one) is early, not late: it is kept and
applied once the job is submitted, instead of being recorded as stale and leaving the job `submitted` for good."""

from __future__ import annotations

import json
from datetime import timedelta

from dramatiq import Message
from sqlalchemy import select

from core.services.production import apply_partner_event
from core.services.reconcile import reconcile
from core.states import JobStatus, OrderStatus
from db import tables as t
from tests.unit.test_render_stage import place, render


def batched_job(api) -> tuple[str, str]:
    """An order rendered and its job batched for a partner, the submission's answer not recorded yet."""
    svc = api.services
    order_id = place(api)
    render(api, order_id)
    with svc.uow() as uow:
        [job] = uow.jobs.for_order(order_id)
        job.partner_id = "acme-columbus"
        job.advance(JobStatus.BATCHED, at=svc.now(), source="test")
        uow.commit()
        return order_id, job.id


def partner_says(api, job_id: str, status: str, n: int) -> int:
    svc = api.services
    body = json.dumps({"event_id": f"evt-{n}", "occurred_at": svc.now().isoformat(),
                       "job": {"id": f"pj-{job_id}", "external_id": job_id, "status": status,
                               "photo_url": "http://partner.test/photo"}})
    with svc.uow() as uow:
        inbox_id = uow.inbox.receive(source="partner:acme-columbus", event_id=f"evt-{n}", topic="job.status",
                                     body=body, at=svc.now())
        uow.commit()
    return inbox_id


def inbox_status(api, inbox_id: int) -> str:
    with api.services.engine.connect() as conn:
        return conn.scalar(select(t.webhook_inbox.c.status).where(t.webhook_inbox.c.id == inbox_id))


def test_a_partner_event_before_the_submission_is_recorded_is_kept_and_applied_once_the_job_is_submitted(api):
    svc = api.services
    order_id, job_id = batched_job(api)
    # given the partner reports the job printed while our worker has not yet recorded the submission
    inbox_id = partner_says(api, job_id, "printed", 1)
    # when the event is applied, it is early: the job does not move and the delivery stays unapplied
    assert apply_partner_event(inbox_id, uow=svc.uow(), now=svc.now()) == "early"
    assert inbox_status(api, inbox_id) == "received"
    with svc.uow() as uow:
        assert uow.jobs.get(job_id).status == JobStatus.BATCHED
        # and then the submitting worker records the partner's answer
        job, order = uow.jobs.get(job_id), uow.orders.get(order_id)
        job.advance(JobStatus.SUBMITTED, at=svc.now(), source="test")
        order.advance(OrderStatus.IN_PRODUCTION, at=svc.now(), source="test")
        uow.commit()
    # then the reconciler's inbox re-drive sends the kept delivery again, and applying it moves the job on
    before = len(api.queued("webhooks"))
    reconcile(svc.uow(), now=svc.now() + timedelta(minutes=5), deadlines_s=svc.settings.stage_deadlines_s)
    assert [Message.decode(m).kwargs for m in api.queued("webhooks")[before:]] == [{"inbox_id": inbox_id}]
    assert apply_partner_event(inbox_id, uow=svc.uow(), now=svc.now()) == "applied"
    assert inbox_status(api, inbox_id) == "processed"
    with svc.uow() as uow:
        assert uow.jobs.get(job_id).status == JobStatus.PRINTED
        assert uow.orders.get(order_id).status == OrderStatus.QA
