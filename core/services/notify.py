"""The notify stage: exactly one message per (order, milestone, channel), whatever the redeliveries.

How "exactly one" holds. A worker first *claims* the message: it inserts the `notifications` row as
`sending` (or moves a `queued`/`failed` row to `sending`) with a statement that absorbs a concurrent
duplicate, and commits. Only the claimant sends, outside any transaction, with an idempotency key that is
the same on every attempt (the e-mail's Message-ID, the SMS provider's Idempotency-Key). Then it records
`sent`, or `failed` when the provider refused or was unreachable before taking the message (nothing went out,
so it is tried again, up to `MAX_ATTEMPTS`).

The gap we cannot close from our side is a worker that dies after handing the message over and before
recording it. We choose at-most-once there: a `sending` row older than `STALE_AFTER` (or a hand-over that
broke off mid-way, `DeliveryUnknown`) becomes `unknown`, raises a support alert and goes on the timeline; it
is never resent automatically. Support checks the mail log (Message-ID) and resends if the customer lacks it.
Text messages are the exception (`REPEAT_ABSORBED`): the SMS provider absorbs a repeat of the idempotency key,
so an unknown hand-over is `failed` and tried again, and the customer still gets one text.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable

from core.commands import SendNotification
from core.errors import Conflict, NotAllowed, NotFound
from core.events import Noted
from core.model import Order
from core.notifications import (
    CLAIMABLE,
    REPEAT_ABSORBED,
    Channel,
    Links,
    Mailer,
    MessageContext,
    Milestone,
    NotDelivered,
    NotificationStatus,
    SmsSender,
    context_fields,
    first_name,
    milestone_key,
    notification_id,
    render_message,
)

log = logging.getLogger(__name__)
SOURCE = "worker:notify"
MAX_ATTEMPTS = 5
STALE_AFTER = timedelta(minutes=10)  # far beyond an SMTP or SMS call's timeout

S = NotificationStatus
TRACKING_FIELDS = frozenset({"tracking_url", "tracking_code", "carrier"})


def notify_milestone(order_id: str, milestone: Milestone, *, uow) -> None:
    """Inside the caller's unit of work: queue the milestone's message on every channel (sent after commit).

    Each message is also reserved as a `queued` row in the same transaction (as of the order's last status
    change, when the milestone was reached), so one whose queue message is lost (Redis flushed or restarted)
    is re-sent by the reconciler (`core.services.reconcile`); a row that exists already is left as it is.
    """
    order = uow.orders.get(order_id)
    if order is not None:
        uow.notifications.insert_queued([{"id": notification_id(order_id, str(milestone), channel),
                                          "order_id": order_id, "milestone": str(milestone), "channel": str(channel)}
                                         for channel in Channel], at=order.status_changed_at)
    for channel in Channel:
        uow.defer(SendNotification(order_id=order_id, milestone=str(milestone), channel=str(channel)))


def send_notification(order_id: str, milestone: Milestone | str, channel: Channel | str, *, uow, mailer: Mailer,
                      sms: SmsSender, links: Links, now: Callable[[], datetime], resend: int = 0,
                      stale_after: timedelta = STALE_AFTER, max_attempts: int = MAX_ATTEMPTS) -> str:
    """Send one milestone message on one channel, unless it was already sent, skipped or is being sent.

    Returns:
        "sent"; "failed" (nothing went out; try again later); "in_flight" (another attempt holds it: try again
        later); "unknown" (a hand-over that may or may not have happened: surfaced, not resent); "done" (settled
        before: sent, skipped or unknown); "gave_up" (failed `max_attempts` times); "skipped_opt_out";
        "no_address"; "missing" (no such order, or a resend nobody reserved).
    """
    milestone, channel = Milestone(milestone), Channel(channel)
    key = milestone_key(milestone, resend)
    nid = notification_id(order_id, key, channel)
    with uow:
        order = uow.orders.get(order_id)
        if order is None:
            return "missing"
        at = now()
        customer = order.customer
        to = customer.email if channel == Channel.EMAIL else customer.phone
        opted_out = customer.email_opt_out if channel == Channel.EMAIL else customer.sms_opt_out
        message = render_message(milestone, channel, _context(order, milestone, channel, uow=uow, links=links))
        # The usual case first: the row reserved with the milestone (or a support resend) is claimed straight
        # away; the compare-and-set holds only when the row checks below would all have led to this claim.
        attempt = None if opted_out or not to else uow.notifications.claim(
            nid, at=at, subject=message.subject, preview=message.preview, max_attempts=max_attempts)
        if attempt is None:
            row = uow.notifications.get(order_id, key, channel)
            if row is not None and row["status"] == S.SENDING:
                return _surface_if_stale(row, order, uow=uow, at=at, stale_after=stale_after)
            if row is not None and row["status"] not in CLAIMABLE:
                return "done"
            if row is not None and row["attempts"] >= max_attempts:
                return "gave_up"
            if row is None and resend:
                return "missing"
            if opted_out or not to:
                status = S.SKIPPED_OPT_OUT if opted_out else S.NO_ADDRESS
                recorded = (uow.notifications.insert(id=nid, order_id=order_id, milestone=key, channel=channel,
                                                     status=status, at=at, subject=message.subject,
                                                     preview=message.preview) if row is None
                            else uow.notifications.settle(nid, status=status, at=at, from_statuses=CLAIMABLE))
                if not recorded:
                    return "done"
                uow.timeline.add(Noted(order_id=order_id, at=at, source=SOURCE, kind="notification.skipped",
                                       key=f"notification:{order_id}:{key}:{channel}",
                                       details={"milestone": key, "channel": str(channel), "reason": str(status)}))
                uow.commit()
                return str(status)
            if row is None:  # not reserved (a message from before reservations): claimed by inserting it
                claimed = uow.notifications.insert(id=nid, order_id=order_id, milestone=key, channel=channel,
                                                   status=S.SENDING, at=at, subject=message.subject,
                                                   preview=message.preview)
                attempt = 1 if claimed else None
            else:  # it changed between the two statements: claimable again, so try once more
                attempt = uow.notifications.claim(nid, at=at, subject=message.subject, preview=message.preview,
                                                  max_attempts=max_attempts)
            if attempt is None:
                return "in_flight"
        number = order.number
        uow.commit()

    sender = mailer if channel == Channel.EMAIL else sms
    error: str | None = None
    try:
        sender.send(to=to, message=message, idempotency_key=nid)
        outcome = S.SENT
    except NotDelivered as refused:
        outcome, error = S.FAILED, str(refused)
    except Exception as broken:  # DeliveryUnknown, or anything unforeseen mid-hand-over: never guess "not sent"
        log.exception("notification %s (%s %s) for order %s: outcome unknown", nid, key, channel, order_id)
        error = f"{type(broken).__name__}: {broken}"
        outcome = S.FAILED if channel in REPEAT_ABSORBED else S.UNKNOWN  # a repeat of the key is absorbed

    with uow:
        at = now()
        # The worker's own knowledge beats the stale sweep's guess, should the sweep have got there first.
        uow.notifications.settle(nid, status=outcome, at=at, error=error, from_statuses=(S.SENDING, S.UNKNOWN))
        details = {"milestone": key, "channel": str(channel), "subject": message.subject,
                   "preview": message.preview, "message_id": nid, "attempt": attempt}
        result = str(outcome)
        if outcome == S.SENT:
            uow.timeline.add(Noted(order_id=order_id, at=at, source=SOURCE, kind="notification.sent",
                                   key=f"notification:{order_id}:{key}:{channel}", details=details))
        elif outcome == S.FAILED:
            uow.timeline.add(Noted(order_id=order_id, at=at, source=SOURCE, kind="notification.failed",
                                   key=f"notification:{order_id}:{key}:{channel}:attempt{attempt}",
                                   details=details | {"error": error}))
            if attempt >= max_attempts:
                result = "gave_up"
                _alert(uow, order_id=order_id, key=key, channel=channel, at=at,
                       message=f"Order {number}: the {key} {channel} failed {attempt} times ({error}); "
                               f"check the address and resend it.")
        else:
            _record_unknown(uow, order_id=order_id, number=number, key=key, channel=channel, at=at, error=error)
        uow.commit()
    log.info("notification %s %s for order %s: %s (attempt %d)", key, channel, order_id, result, attempt)
    return result


def surface_stale_notifications(*, uow, now: datetime, stale_after: timedelta = STALE_AFTER,
                                limit: int = 100) -> int:
    """The scheduler's backstop: `sending` rows whose worker died mid-send become `unknown` and alert support.

    Returns how many rows it surfaced.
    """
    with uow:
        surfaced = 0
        for row in uow.notifications.stale(sending_before=now - stale_after, limit=limit):
            order = uow.orders.get(row["order_id"])
            if order is not None and _surface_if_stale(row, order, uow=uow, at=now, stale_after=stale_after,
                                                       commit=False) == "unknown":
                surfaced += 1
        uow.commit()
    return surfaced


def resend(order_id: str, milestone: Milestone | str, channel: Channel | str, user: str, *, uow,
           now: datetime) -> str:
    """A support agent sends a milestone's message once more: a new row (`shipped.resend1`, …), audited,
    and sent by the notify worker after the commit.

    Returns:
        The new row's milestone key.

    Raises:
        NotFound: no such order, or that message was never due.
        NotAllowed: the customer opted out of the channel, or we have no address for it.
        Conflict: someone resent it at the same moment.
    """
    milestone, channel = Milestone(milestone), Channel(channel)
    with uow:
        order = uow.orders.get(order_id)
        if order is None:
            raise NotFound("That order does not exist.")
        original = uow.notifications.get(order_id, str(milestone), str(channel))
        if original is None:
            raise NotFound(f"Order {order.number} has had no {milestone} {channel}: there is nothing to resend.")
        customer = order.customer
        if customer.email_opt_out if channel == Channel.EMAIL else customer.sms_opt_out:
            raise NotAllowed(f"The customer opted out of {channel} messages; ask them to opt in again first.")
        if not (customer.email if channel == Channel.EMAIL else customer.phone):
            raise NotAllowed(f"Order {order.number} has no address for {channel}; add one first.")
        count = uow.notifications.resends(order_id, str(milestone), str(channel)) + 1
        key = milestone_key(milestone, count)
        nid = notification_id(order_id, key, channel)
        if not uow.notifications.insert(id=nid, order_id=order_id, milestone=key, channel=channel,
                                        status=S.QUEUED, at=now):
            raise Conflict("Someone resent this message a moment ago; refresh the order to see it.")
        uow.audit.record(actor=user, action="notification.resend", target_type="notification", target_id=nid,
                         order_id=order_id, before={"milestone": str(milestone), "channel": str(channel),
                                                    "status": original["status"]},
                         after={"milestone": key, "status": str(S.QUEUED)}, at=now)
        uow.timeline.add(Noted(order_id=order_id, at=now, source=f"user:{user}", kind="notification.resend_requested",
                               key=f"notification:{order_id}:{key}:{channel}:requested",
                               details={"milestone": str(milestone), "channel": str(channel), "resend": count}))
        uow.defer(SendNotification(order_id=order_id, milestone=str(milestone), channel=str(channel), resend=count))
        uow.commit()
    return key


def _context(order: Order, milestone: Milestone, channel: Channel, *, uow, links: Links) -> MessageContext:
    """What the message may say; the design preview and the tracking are looked up only when its templates
    show them (`context_fields`): the others stay None, which those templates never read."""
    fields = context_fields(milestone, channel)
    preview_asset = None
    if "preview_image_url" in fields:
        assets = (uow.assets.get(line.asset_id) for line in order.lines if line.asset_id)
        preview_asset = next((asset["id"] for asset in assets if asset and asset.get("preview_key")), None)
    tracking = uow.notifications.tracking(order.id) if fields & TRACKING_FIELDS else None
    code, carrier = tracking if tracking else (None, None)
    return MessageContext(order_number=order.number, first_name=first_name(order.customer.name),
                          status_url=links.status(order.id),
                          preview_image_url=links.preview(preview_asset) if preview_asset else None,
                          tracking_url=links.tracking(code, carrier) if code else None,
                          tracking_code=code, carrier=carrier)


def _surface_if_stale(row: dict, order: Order, *, uow, at: datetime, stale_after: timedelta,
                      commit: bool = True) -> str:
    """A `sending` row: still in flight, or (older than `stale_after`) a dead worker's, now `unknown`."""
    cutoff = at - stale_after
    if row["sent_at"] is not None and row["sent_at"] >= cutoff:
        return "in_flight"
    error = f"still sending after {stale_after}: the worker stopped mid-send"
    if row["channel"] in REPEAT_ABSORBED:  # the provider absorbs a repeat of the key: try again, nobody alerted
        if not uow.notifications.settle(row["id"], status=S.FAILED, at=at, error=error, sending_before=cutoff):
            return "done"
        if commit:
            uow.commit()
        return "failed"
    if not uow.notifications.settle(row["id"], status=S.UNKNOWN, at=at, error=error, sending_before=cutoff):
        return "done"
    _record_unknown(uow, order_id=order.id, number=order.number, key=row["milestone"], channel=row["channel"],
                    at=at, error=error)
    if commit:
        uow.commit()
    return "unknown"


def _record_unknown(uow, *, order_id: str, number: str, key: str, channel: str, at: datetime,
                    error: str | None) -> None:
    uow.timeline.add(Noted(order_id=order_id, at=at, source=SOURCE, kind="notification.unknown",
                           key=f"notification:{order_id}:{key}:{channel}:unknown",
                           details={"milestone": key, "channel": str(channel), "error": error,
                                    "message_id": notification_id(order_id, key, channel)}))
    _alert(uow, order_id=order_id, key=key, channel=channel, at=at,
           message=f"Order {number}: the {key} {channel} may or may not have reached the customer ({error}). "
                   f"Check the mail log for its Message-ID, then resend it if it is missing.")


def _alert(uow, *, order_id: str, key: str, channel: str, at: datetime, message: str) -> None:
    uow.alerts.raise_(kind="notification", key=f"{order_id}:{key}:{channel}", order_id=order_id,
                      severity="warning", message=message, at=at)
