"""The carrier's webhooks: EasyPost events verified over the raw body, stored once, applied by the tracking queue."""

from __future__ import annotations

import logging

from easypost.errors import SignatureVerificationError
from easypost.util import validate_webhook
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import Services
from api.problems import problem, problem_responses
from api.schemas import CARRIER_EVENT_BODY, WebhookAck, contains_nul
from core.commands import ApplyCarrierEvent
from core.errors import Problem

log = logging.getLogger(__name__)
SOURCE = "carrier:easypost"
router = APIRouter()


@router.post("/webhooks/carrier/easypost", response_model=WebhookAck, responses=problem_responses(401, 422),
             openapi_extra=CARRIER_EVENT_BODY)
async def easypost_webhook(request: Request) -> JSONResponse:
    """An EasyPost event (tracker.updated): HMAC-verified before anything is stored, recorded once per event id
    in the inbox, answered at once; the `tracking` queue applies it."""
    svc: Services = request.app.state.services
    raw = await request.body()
    try:
        # Starlette's headers: validate_webhook looks up "X-Hmac-Signature" with .get, case-sensitively.
        event = validate_webhook(raw, request.headers, svc.settings.easypost_webhook_secret)
    except SignatureVerificationError:
        log.warning("carrier webhook refused: bad or missing signature")
        return problem(401, "bad-signature", "The webhook signature does not match its body.")
    except ValueError as error:  # signed, but not JSON
        return problem(422, "invalid-request", "The webhook body is not JSON.",
                       [Problem(field="body", code="invalid", message=str(error)[:200])])
    event_id = event.get("id") if isinstance(event, dict) else None
    if not isinstance(event_id, str) or not event_id or len(event_id) > 120:
        return problem(422, "invalid-request", "An EasyPost event carries its id; this one has none.",
                       [Problem(field="id", code="required", message="the Event's id is missing")])
    topic = str(event.get("description") or "unknown")[:60]
    if contains_nul([event_id, topic]):  # PostgreSQL cannot store NUL: a 422, not a 500
        return problem(422, "invalid-request", "The event's id or description holds a NUL (\\x00) character.",
                       [Problem(field="id" if contains_nul(event_id) else "description", code="invalid",
                                message="must not contain NUL (\\x00) characters")])
    inbox_id = await run_in_threadpool(_receive, svc, event_id, topic, raw)  # blocking database work
    return JSONResponse({"status": "accepted" if inbox_id is not None else "duplicate"})


def _receive(svc: Services, event_id: str, topic: str, raw: bytes) -> int | None:
    """Store the event once per EasyPost event id; the tracking message goes out after the commit."""
    with svc.uow() as uow:
        inbox_id = uow.inbox.receive(source=SOURCE, event_id=event_id, topic=topic,
                                     body=raw.decode(errors="replace"), at=svc.now())
        if inbox_id is not None:
            uow.defer(ApplyCarrierEvent(inbox_id=inbox_id))
        uow.commit()
    return inbox_id

