"""Customer self-service pages: the signed link in every e-mail opens the order's timeline and, until the
production gate, its text, address and cancel forms; after it, a change request for support.

No cookies and no session: the signed token (core.signing) travels in the link and in every form, so a forged
cross-site form has nothing to ride on; changes are POST only and answered with a redirect (303) to the page.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import redis
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from adapters.carrier import EasyPostCarrier
from api.deps import Services
from core.commands import Address
from core.errors import NotAllowed, NotFound, Problem, ValidationFailed
from core.services.batches import defaults_from, load_production_rules
from core.services.customer_changes import (
    CUSTOMER,
    AddressNotVerified,
    OrderPage,
    cancel_order,
    change_address,
    change_texts,
    order_page,
    request_change,
)
from core.services.shipping import CarrierUnavailable
from core.signing import LinkCheck, check_customer_token, signed_asset_path
from db import queries

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
ADDRESS_FIELDS = ("name", "line1", "line2", "city", "region", "postal_code", "country")
PREVIEW_LIFETIME = timedelta(hours=1)
HEADERS = {  # the token is in the URL: never cache the page, never send it on as a Referer, never frame it
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
DONE = {  # what a redirect after a change tells the customer (a fixed word in the URL, never echoed text)
    "cancelled": "Your order is cancelled. The payment hold on your card has been released.",
    "already_cancelled": "This order was already cancelled; nothing more to do.",
    "text_changed": "Thanks: the new text is saved and we are preparing your design again.",
    "text_unchanged": "That is the text the item already has; nothing changed.",
    "address_changed": "Thanks: your order will go to the new address.",
    "address_unchanged": "That is the address the order already has; nothing changed.",
    "requested": "Thanks: your change request is with our support team, who will reply by e-mail.",
    "already_requested": "We already have this change request; our support team will reply by e-mail.",
}
LINK_SENTENCES = {
    LinkCheck.EXPIRED: "This link has expired. Please use the link in the most recent e-mail about your order, "
                       "or reply to that e-mail and we will help.",
    LinkCheck.INVALID: "This link is not valid: it may have been cut short or changed. Please open it again "
                       "from the e-mail about your order.",
}


# ---- pages -----------------------------------------------------------------------------------------------------


@router.get("/orders/{order_id}", response_class=HTMLResponse)
def order_status(request: Request, order_id: str, t: str = "", done: str = "") -> Response:
    """The order's page: status, timeline, the editable-until time and the forms that still apply."""
    refused = _refuse_link(request, order_id, t)
    if refused is not None:
        return refused
    return _page(request, order_id, t, notice=DONE.get(done))


@router.post("/orders/{order_id}/cancel", response_class=HTMLResponse)
async def cancel(request: Request, order_id: str) -> Response:
    form = await _form(request)
    return await run_in_threadpool(_cancel, request, order_id, form)  # database and carrier calls block


def _cancel(request: Request, order_id: str, form: dict[str, str]) -> Response:
    refused = _refuse_link(request, order_id, form.get("t", ""))
    if refused is not None:
        return refused
    svc = _services(request)
    reason = " ".join(form.get("reason", "").split())[:200]
    try:
        outcome = cancel_order(order_id, by=CUSTOMER, reason=f"customer: {reason}" if reason else "customer",
                               uow=svc.uow(), payments=svc.payments, now=svc.now())
    except (NotAllowed, NotFound) as refusal:
        return _refusal(request, order_id, form["t"], refusal)
    return _back(order_id, form["t"], outcome)


@router.post("/orders/{order_id}/text", response_class=HTMLResponse)
async def edit_text(request: Request, order_id: str) -> Response:
    form = await _form(request)
    return await run_in_threadpool(_edit_text, request, order_id, form)  # database and carrier calls block


def _edit_text(request: Request, order_id: str, form: dict[str, str]) -> Response:
    refused = _refuse_link(request, order_id, form.get("t", ""))
    if refused is not None:
        return refused
    svc = _services(request)
    try:
        line_no = int(form.get("line_no", ""))
    except ValueError:
        return _page(request, order_id, form["t"], status=422, error="Please choose which item to change.")
    texts = {key[len("text."):]: value for key, value in form.items() if key.startswith("text.")}
    try:
        outcome = change_texts(order_id, line_no, texts, uow=svc.uow(), now=svc.now(), by=CUSTOMER)
    except ValidationFailed as invalid:
        return _page(request, order_id, form["t"], status=422, error=invalid.message,
                     problems=invalid.problems, entered={"line_no": line_no, "texts": texts})
    except (NotAllowed, NotFound) as refusal:
        return _refusal(request, order_id, form["t"], refusal)
    return _back(order_id, form["t"], f"text_{outcome}")


@router.post("/orders/{order_id}/address", response_class=HTMLResponse)
async def edit_address(request: Request, order_id: str) -> Response:
    form = await _form(request)
    return await run_in_threadpool(_edit_address, request, order_id, form)  # database and carrier calls block


def _edit_address(request: Request, order_id: str, form: dict[str, str]) -> Response:
    refused = _refuse_link(request, order_id, form.get("t", ""))
    if refused is not None:
        return refused
    svc = _services(request)
    entered = {f: " ".join(form.get(f, "").split())[:120] for f in ADDRESS_FIELDS}
    entered["country"] = entered["country"].upper()
    address = Address(**entered)
    try:
        outcome = change_address(order_id, address, uow=svc.uow(), carrier=_carrier(request), now=svc.now(),
                                 by=CUSTOMER)
    except AddressNotVerified as unverified:
        return _page(request, order_id, form["t"], status=422, error=unverified.message,
                     problems=unverified.problems, entered={"address": entered},
                     suggestion=unverified.suggestion)
    except ValidationFailed as invalid:
        return _page(request, order_id, form["t"], status=422, error="Please fill in the missing fields.",
                     problems=invalid.problems, entered={"address": entered})
    except CarrierUnavailable:
        log.warning("self-service address check for order %s: the carrier is unavailable", order_id)
        return _page(request, order_id, form["t"], status=503, entered={"address": entered},
                     error="We can't check addresses with the carrier right now, so nothing was changed. "
                           "Please try again in a few minutes.")
    except (NotAllowed, NotFound) as refusal:
        return _refusal(request, order_id, form["t"], refusal)
    return _back(order_id, form["t"], f"address_{outcome}")


@router.post("/orders/{order_id}/change-request", response_class=HTMLResponse)
async def change_request(request: Request, order_id: str) -> Response:
    form = await _form(request)
    return await run_in_threadpool(_change_request, request, order_id, form)  # database and carrier calls block


def _change_request(request: Request, order_id: str, form: dict[str, str]) -> Response:
    refused = _refuse_link(request, order_id, form.get("t", ""))
    if refused is not None:
        return refused
    svc = _services(request)
    request_id = "".join(ch for ch in form.get("request_id", "") if ch.isalnum())[:40] or secrets.token_hex(8)
    try:
        outcome = request_change(order_id, form.get("message", ""), request_id=request_id, uow=svc.uow(),
                                 now=svc.now(), by=CUSTOMER)
    except ValidationFailed as invalid:
        return _page(request, order_id, form["t"], status=422, error=invalid.problems[0].message,
                     problems=invalid.problems, entered={"message": form.get("message", "")[:4000]})
    except (NotAllowed, NotFound) as refusal:
        return _refusal(request, order_id, form["t"], refusal)
    return _back(order_id, form["t"], outcome)


# ---- plumbing --------------------------------------------------------------------------------------------------


def _services(request: Request) -> Services:
    return request.app.state.services


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _refuse_link(request: Request, order_id: str, token: str) -> Response | None:
    """The 403 page for an expired or tampered link (checked before anything about the order is read)."""
    svc = _services(request)
    check = check_customer_token(svc.settings.customer_link_secret, order_id, token, now=svc.now().timestamp())
    if check == LinkCheck.VALID:
        return None
    log.info("self-service link refused for order %s: %s", order_id[:40], check)
    return _error_page(request, 403, "This link can't be used", LINK_SENTENCES[check])


def _error_page(request: Request, status: int, title: str, sentence: str) -> Response:
    return templates.TemplateResponse(request, "selfservice/error.html", {"title": title, "sentence": sentence},
                                      status_code=status, headers=HEADERS)


def _page(request: Request, order_id: str, token: str, *, status: int = 200, notice: str | None = None,
          error: str | None = None, problems: list[Problem] | tuple[Problem, ...] = (),
          entered: dict[str, Any] | None = None, suggestion: Address | None = None) -> Response:
    svc = _services(request)
    rules = load_production_rules(svc.uow(), defaults=defaults_from(svc.settings))
    try:
        page = order_page(order_id, uow=svc.uow(), events=queries.timeline(svc.engine, order_id),
                          batch_wait=rules.batching.max_wait)
    except NotFound:
        return _error_page(request, 404, "Order not found",
                           "We can't find this order. If you think this is wrong, reply to our e-mail and we "
                           "will look into it.")
    context = {"page": page, "token": token, "action": _actions(order_id), "notice": notice, "error": error,
               "problems": {p.field: p.message for p in problems}, "entered": entered or {},
               "suggestion": suggestion, "request_id": secrets.token_hex(8),
               "previews": _previews(svc, page), "when": _when}
    return templates.TemplateResponse(request, "selfservice/order.html", context, status_code=status,
                                      headers=HEADERS)


def _refusal(request: Request, order_id: str, token: str, refusal: NotAllowed | NotFound) -> Response:
    """The page again with the refusal's sentence (409), or the 404 page when the order itself is unknown."""
    return _page(request, order_id, token, status=409 if isinstance(refusal, NotAllowed) else 404,
                 error=refusal.message)


def _back(order_id: str, token: str, done: str) -> RedirectResponse:
    """POST/redirect/GET: a reload of the result page never sends the change again."""
    query = urlencode({"t": token, "done": done})
    return RedirectResponse(f"/orders/{quote(order_id, safe='')}?{query}", status_code=303, headers=HEADERS)


def _actions(order_id: str) -> dict[str, str]:
    base = f"/orders/{quote(order_id, safe='')}"
    return {"cancel": f"{base}/cancel", "text": f"{base}/text", "address": f"{base}/address",
            "change_request": f"{base}/change-request"}


def _previews(svc: Services, page: OrderPage) -> dict[int, str]:
    expires = int((svc.now() + PREVIEW_LIFETIME).timestamp())
    return {item.line_no: signed_asset_path(svc.settings.asset_url_secret, item.preview_asset_id, "preview",
                                            expires=expires)
            for item in page.items if item.preview_asset_id}


def _when(moment: datetime | None) -> str:
    return moment.strftime("%d %b %Y, %H:%M UTC") if moment else ""


def _carrier(request: Request) -> EasyPostCarrier:
    """The carrier adapter for address checks: one per app, its rate limit shared with the workers."""
    carrier = getattr(request.app.state, "carrier", None)
    if carrier is None:
        svc = _services(request)
        s = svc.settings
        client = svc.redis if isinstance(svc.redis, redis.Redis) else None
        carrier = EasyPostCarrier(s.easypost_api_key, s.easypost_api_base, timeout_s=s.easypost_timeout_s,
                                  redis_client=client, rate_per_s=s.easypost_rate_per_s, max_attempts=2,
                                  max_inline_wait_s=2.0)
        request.app.state.carrier = carrier
    return carrier
