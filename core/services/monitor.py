"""The monitor: measure, evaluate against per-stage thresholds, raise/update/clear alerts, e-mail new ones."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping

from core.errors import NotFound
from core.monitors import (
    MONITOR_KINDS,
    THRESHOLDS_KEY,
    Condition,
    Measurements,
    MonitorKind,
    MonitorSettingsInvalid,
    QueueMeasure,
    Severity,
    Thresholds,
    evaluate,
    plan_alerts,
    thresholds_from_document,
    thresholds_to_document,
)
from core.notifications import DeliveryUnknown, Mailer, Message, NotDelivered
from core.services.shipping import SCAN_KIND
from core.states import ShipmentStatus

log = logging.getLogger(__name__)

SHIPPED = (ShipmentStatus.PURCHASED, ShipmentStatus.IN_TRANSIT, ShipmentStatus.OUT_FOR_DELIVERY)
"""Parcels the carrier has (or should have) and whose scans we wait for."""
ACKNOWLEDGE = "alert.acknowledge"
EDIT_THRESHOLDS = "monitor.edit_thresholds"
"""Action ids: the same words as core.policy.ACTIONS and the audit log's `action` column."""


class AlertGone(NotFound):
    """The alert cleared (or was resolved) since the page showed it."""

    code = "alert_gone"


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorRun:
    """What one run changed (ids as (kind, key))."""

    raised: tuple[tuple[str, str], ...]
    updated: tuple[tuple[str, str], ...]
    cleared: tuple[tuple[str, str], ...]


def thresholds_in_force(uow, *, defaults: Thresholds) -> Thresholds:
    """Staff's stored thresholds over `defaults`, read in the caller's open unit of work.

    Raises:
        MonitorSettingsInvalid: the stored document cannot work (the monitor falls back to defaults, see run).
    """
    return thresholds_from_document(uow.settings_store.get(THRESHOLDS_KEY), defaults=defaults)


def measure(uow, *, queues: Iterable[QueueMeasure], thresholds: Thresholds, now: datetime,
            limit: int = 1000) -> Measurements:
    """The database's part of the measurements (queues come from the broker): candidates past the warning level."""
    orders = {str(s): now - timedelta(seconds=lim.warning) for s, lim in thresholds.orders.items()}
    jobs = {str(s): now - timedelta(seconds=lim.warning) for s, lim in thresholds.jobs.items()}
    silent_before = now - timedelta(days=thresholds.silent_parcel_days.warning)
    return Measurements(queues=tuple(queues),
                        stuck=tuple(uow.monitoring.past_deadline(orders=orders, jobs=jobs, limit=limit)),
                        silent=tuple(uow.monitoring.silent_parcels(statuses=SHIPPED, before=silent_before,
                                                                   scan_type=SCAN_KIND, limit=limit)))


def run_monitor(uow, *, queues: Callable[[float], Iterable[QueueMeasure]], now: datetime,
                defaults: Thresholds) -> MonitorRun:
    """One pass: open what should be open, update what changed, clear monitor alerts whose condition ended.

    `queues(error_window_s)` measures the broker (outside any transaction). Idempotent: a second run with the
    same measurements changes nothing. Exception-inbox alerts (address, carrier, notification, change_request)
    are never cleared here. A stored thresholds document that cannot work does not stop monitoring: the
    defaults apply and a `monitor_config` alert says so.
    """
    problem = None
    with uow:
        try:
            thresholds = thresholds_in_force(uow, defaults=defaults)
        except MonitorSettingsInvalid as error:
            log.error("stored monitor thresholds are invalid (%s); using the defaults", error.message)
            thresholds, problem = defaults, error.message
    measured = tuple(queues(thresholds.error_window_s))
    with uow:
        conditions = evaluate(measure(uow, queues=measured, thresholds=thresholds, now=now), thresholds, now=now)
        if problem is not None:
            config = Condition(kind=MonitorKind.MONITOR_CONFIG, key="thresholds", severity=Severity.WARNING,
                               message=f"The stored monitor thresholds cannot be used ({problem}); the defaults "
                                       "apply until they are corrected.")
            conditions[config.ident] = config
        open_alerts = {(a["kind"], a["key"]): (a["severity"], a["message"])
                       for a in uow.alerts.open(kinds=MONITOR_KINDS)}
        plan = plan_alerts(open_alerts, conditions)
        for condition in (*plan.raise_, *plan.update):
            uow.alerts.raise_(kind=str(condition.kind), key=condition.key, severity=str(condition.severity),
                              message=condition.message, details=_json(condition.details), at=now)
        for kind, key in plan.clear:
            uow.alerts.clear(kind=kind, key=key, at=now)
        uow.commit()
    run = MonitorRun(raised=tuple(c.ident for c in plan.raise_), updated=tuple(c.ident for c in plan.update),
                     cleared=plan.clear)
    if run.raised or run.cleared:
        log.warning("monitor: raised %s, cleared %s", run.raised, run.cleared)
    return run


def _json(details: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if not isinstance(v, int | float | str | list | None) else v) for k, v in details.items()}


def alert_message(alert: Mapping[str, Any], *, dashboard_url: str) -> Message:
    """The e-mail for one new alert: what, how bad, since when, and where to acknowledge it."""
    severity, kind = str(alert["severity"]).upper(), str(alert["kind"]).replace("_", " ")
    text = (f"{alert['message']}\n\nSeverity: {alert['severity']}\nKind: {kind}\n"
            f"Since: {alert['opened_at']:%Y-%m-%d %H:%M:%S} UTC\n\n"
            f"Acknowledge it in the control room: {dashboard_url.rstrip('/')}/control_room\n"
            "This alert clears by itself when its condition ends.\n")
    return Message(subject=f"[Pressroom {severity}] {kind}: {alert['key']}", text=text, html=None,
                   preview=f"{severity} {kind} {alert['key']}")


def notify_new_alerts(uow, *, mailer: Mailer, to: str, now: datetime, dashboard_url: str,
                      kinds: Iterable[str] = MONITOR_KINDS) -> list[int]:
    """E-mail every open alert of `kinds` not yet e-mailed, after the commit that opened it; returns the ids sent.

    Each is marked (`notified_at`) in its own transaction right after the SMTP server took it, so a later run
    never sends it again. An alert whose hand-over failed or broke mid-way stays unmarked and is tried on the
    next run with the same Message-ID (`alert-<id>`), which lets a mail system drop the repeat.
    """
    with uow:
        pending = [a for a in uow.alerts.open(kinds=kinds) if a["notified_at"] is None]
    sent = []
    for alert in pending:
        try:
            mailer.send(to=to, message=alert_message(alert, dashboard_url=dashboard_url),
                        idempotency_key=f"alert-{alert['id']}")
        except (NotDelivered, DeliveryUnknown) as error:
            log.warning("alert %s not e-mailed to ops yet (%s); next run tries again", alert["id"], error.message)
            continue
        with uow:
            uow.alerts.mark_notified([alert["id"]], at=now)
            uow.commit()
        sent.append(alert["id"])
    return sent


def acknowledge_alert(alert_id: int, *, uow, actor: str, at: datetime, **_: Any) -> bool:
    """Someone has seen the alert and is on it: record who and when, audited. Acknowledging twice keeps the first.

    Returns True when this call acknowledged it.

    Raises:
        AlertGone: no such alert, or it has cleared since the page was drawn.
    """
    with uow:
        alert = uow.alerts.get(int(alert_id))
        if alert is None or alert["cleared_at"] is not None:
            raise AlertGone(f"Alert {alert_id} is no longer open: its condition ended or support resolved it.")
        done = uow.alerts.acknowledge(int(alert_id), user=actor, at=at)
        if done:
            uow.audit.record(actor, ACKNOWLEDGE, "alert", str(alert_id), alert["order_id"],
                             {"acknowledged_by": None},
                             {"acknowledged_by": actor, "kind": alert["kind"], "key": alert["key"],
                              "severity": alert["severity"]}, at)
        uow.commit()
    return done


def save_thresholds(document: Mapping[str, Any], *, uow, actor: str, at: datetime, defaults: Thresholds,
                    **_: Any) -> Thresholds:
    """Store staff's thresholds (validated first, audited with before and after); the next monitor run uses them.

    Raises:
        MonitorSettingsInvalid: a limit is not a number, negative, or its critical level is below its warning.
    """
    thresholds = thresholds_from_document(document, defaults=defaults)
    stored = thresholds_to_document(thresholds)
    with uow:
        before = uow.settings_store.get(THRESHOLDS_KEY)
        uow.settings_store.put(THRESHOLDS_KEY, stored, by=actor, at=at)
        uow.audit.record(actor, EDIT_THRESHOLDS, "settings", THRESHOLDS_KEY, None, before, stored, at)
        uow.commit()
    return thresholds
