"""Actors on the `qa` queue."""

from __future__ import annotations

import dramatiq

from core.commands import InspectJob, actor_name
from core.services.qa import inspect_job
from workers.bootstrap import container


@dramatiq.actor(actor_name=actor_name(InspectJob), queue_name=InspectJob.QUEUE, max_retries=10,
                time_limit=5 * 60_000)
def inspect(job_id: str) -> None:
    c = container()
    inspect_job(job_id, uow=c.uow(), store=c.store,
                fetch_photo=lambda partner_id, url: c.partners.photo(c.partner_endpoint(partner_id), url),
                new_id=c.ids.new, now=c.now, rules=c.qa_rules())
