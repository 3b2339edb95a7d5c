"""Actors on the `production` and `webhooks` queues: route, submit (the production gate), partner events."""

from __future__ import annotations

import logging

import dramatiq

from core.commands import ApplyPartnerEvent, RouteOrder, SubmitBatch, actor_name
from core.errors import Conflict
from core.services import production
from workers.bootstrap import container

log = logging.getLogger(__name__)


@dramatiq.actor(actor_name=actor_name(RouteOrder), queue_name=RouteOrder.QUEUE, max_retries=8)
def route_order(order_id: str) -> None:
    c = container()
    rules = c.production_rules()  # read once for the route and the batcher: one read transaction fewer
    outcome = production.route_order(order_id, uow=c.uow(), now=c.now(), rules=rules)
    if outcome == "routed":
        try:  # batch now rather than at the next scheduler beat: size-full batches go at once
            production.batch_ready_jobs(c.uow(), now=c.now(), rules=rules, new_id=c.ids.new)
        except Conflict:  # an ops manager edited a batch meanwhile: the route stands, the next beat batches
            log.info("order %s routed; batching left to the scheduler's next beat (concurrent batch edit)", order_id)


@dramatiq.actor(actor_name=actor_name(SubmitBatch), queue_name=SubmitBatch.QUEUE, max_retries=40,
                min_backoff=2_000, max_backoff=300_000)
def submit_batch(batch_id: str) -> None:
    c = container()
    production.submit_batch(batch_id, uow=c.uow(), client=c.partners, endpoint_for=c.partner_endpoint,
                            file_url=c.print_file_url, callback_url=c.partner_callback_url, now=c.now)


@dramatiq.actor(actor_name=actor_name(ApplyPartnerEvent), queue_name=ApplyPartnerEvent.QUEUE, max_retries=10)
def apply_partner_event(inbox_id: int) -> None:
    c = container()
    production.apply_partner_event(inbox_id, uow=c.uow(), now=c.now())
