"""Support's glue: the exception inbox's reads and actions, resending a notification, cancelling an order."""

from __future__ import annotations

import logging
from typing import Any

import redis
import streamlit as st

from adapters.carrier import EasyPostCarrier
from adapters.payments import SimPayments
from app import actions, bootstrap
from app.bootstrap import engine
from core.commands import Address
from core.notifications import Milestone
from core.ports import Payments
from core.services import exceptions as ex
from core.services import notify
from core.services.customer_changes import cancel_order as _cancel_order
from core.services.shipping import Carrier
from db import queries as q

log = logging.getLogger(__name__)

INBOX_TTL_S = 4
RESEND, CANCEL = "notification.resend", "order.cancel"

carrier_override: Carrier | None = None
"""When set (tests: a client of the carrier sim), address checks use it instead of the configured EasyPost."""
payments_override: Payments | None = None

actions.NEXT_STEP.setdefault("already_resolved", "Nothing more to do: the inbox now shows what is still open.")
actions.NEXT_STEP.setdefault("address_invalid", "Nothing was changed: correct the address and verify again.")
actions.NEXT_STEP.setdefault("note_required", "Nothing was changed.")
actions.NEXT_STEP.setdefault("carrier_unavailable", "Nothing was changed: try again in a minute.")


@st.cache_resource(show_spinner=False)
def _carrier() -> Carrier:
    s = bootstrap.settings()
    return EasyPostCarrier(s.easypost_api_key, s.easypost_api_base, timeout_s=s.easypost_timeout_s,
                           redis_client=redis.Redis.from_url(s.redis_url, socket_timeout=5),
                           rate_per_s=s.easypost_rate_per_s)


@st.cache_resource(show_spinner=False)
def _payments() -> Payments:
    return SimPayments(decline_rate=bootstrap.settings().payment_decline_rate)


def carrier() -> Carrier:
    return carrier_override if carrier_override is not None else _carrier()


def payments() -> Payments:
    return payments_override if payments_override is not None else _payments()


# ---- reads ---------------------------------------------------------------------------------------------------


@st.cache_data(ttl=INBOX_TTL_S, show_spinner=False)
def inbox() -> dict[str, Any]:
    """Open exceptions oldest first with their suggested actions, and the count per kind."""
    found = q.exception_inbox(engine(), kinds=ex.KINDS)
    for entry in found["entries"]:
        entry["actions"] = [str(a) for a in ex.suggested_actions(entry["kind"])]
        entry["address"] = entry["address"].as_dict() if entry["address"] is not None else None
    return found


# ---- actions -------------------------------------------------------------------------------------------------


def _act(action_id: str, work, done) -> bool:
    """`actions.act`, and after a refusal the cached reads are dropped too: a refusal usually means the order
    or the entry moved on, and the page should show where it is now."""
    if actions.act(action_id, work, done):
        return True
    st.cache_data.clear()
    return False


def _on_entry(action: ex.Action, work) -> bool:
    return _act(action.action_id, work, lambda outcome: outcome.summary)


def verify_address(alert_id: int, fields: dict[str, str], note: str = "") -> bool:
    """Verify the edited address with the carrier; when it passes, the order is released to ship."""
    try:
        address = Address(**{k: str(v or "").strip() for k, v in fields.items()})
    except TypeError:
        st.error("That address form is incomplete. Nothing was changed.")
        return False

    def work(*, uow, actor, at, new_id):
        try:
            return ex.verify_address(alert_id, address, uow=uow, carrier=carrier(), actor=actor, at=at, note=note)
        except ex.AddressStillInvalid as invalid:
            if invalid.suggestion is not None:
                st.session_state[f"exceptions.suggestion.{alert_id}"] = invalid.suggestion.as_dict()
            raise

    return _on_entry(ex.Action.VERIFY_ADDRESS, work)


def reship(alert_id: int, note: str = "") -> bool:
    return _on_entry(ex.Action.RESHIP, lambda *, uow, actor, at, new_id: ex.reship(
        alert_id, uow=uow, actor=actor, at=at, note=note))


def refund(alert_id: int, note: str = "") -> bool:
    return _on_entry(ex.Action.REFUND, lambda *, uow, actor, at, new_id: ex.refund(
        alert_id, uow=uow, payments=payments(), actor=actor, at=at, note=note))


def contact_customer(alert_id: int, note: str = "") -> bool:
    return _on_entry(ex.Action.CONTACT, lambda *, uow, actor, at, new_id: ex.contact_customer(
        alert_id, uow=uow, actor=actor, at=at, note=note))


def resolve(alert_id: int, note: str) -> bool:
    return _on_entry(ex.Action.RESOLVE, lambda *, uow, actor, at, new_id: ex.resolve(
        alert_id, note, uow=uow, actor=actor, at=at))


def take(alert_id: int, action: str, note: str = "", address: dict[str, str] | None = None) -> bool:
    """Run one of an entry's suggested actions by name (what the inbox's buttons call)."""
    chosen = ex.Action(action)
    if chosen == ex.Action.VERIFY_ADDRESS:
        return verify_address(alert_id, address or {}, note)
    if chosen == ex.Action.RESOLVE:
        return resolve(alert_id, note)
    return {ex.Action.RESHIP: reship, ex.Action.REFUND: refund,
            ex.Action.CONTACT: contact_customer}[chosen](alert_id, note)


def resend_notification(order_id: str, milestone_key: str, channel: str) -> bool:
    """Send a message the customer got (or should have got) once more, from the order's timeline."""
    milestone = milestone_key.split(".", 1)[0]
    if milestone not in {str(m) for m in Milestone}:
        st.error(f"“{milestone_key}” is not a message that can be resent. Nothing was sent.")
        return False
    return _act(RESEND, lambda *, uow, actor, at, new_id: notify.resend(
        order_id, milestone, channel, actor, uow=uow, now=at),
        lambda key: f"The {milestone.replace('_', ' ')} {channel} is queued again ({key}).")


def cancel_order(order_id: str, reason: str) -> bool:
    """Cancel before the production gate for the customer: jobs cancelled, stock released, payment voided."""
    reason = (reason or "").strip()
    if not reason:
        st.error("Say why the order is cancelled (the customer asked, a duplicate…). Nothing was changed.")
        return False

    def work(*, uow, actor, at, new_id):
        outcome = _cancel_order(order_id, by=f"user:{actor}", reason=reason, uow=uow, payments=payments(), now=at)
        ex.record_staff_cancel(order_id, outcome, reason, uow=uow, actor=actor, at=at)
        return outcome

    return _act(CANCEL, work, lambda outcome: "The order is cancelled: its stock is released and its "
                        "payment voided." if outcome == "cancelled" else "The order was already cancelled.")


def cancellable(order: dict[str, Any]) -> bool:
    """Whether to offer staff the cancel button (the service checks again, under lock)."""
    return ex.before_the_gate(order["status"], order.get("held_from"))

