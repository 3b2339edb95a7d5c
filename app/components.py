"""Reusable render helpers for the pages: badges, metric tiles, charts, order tables and the timeline list."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Callable, Mapping

import pandas as pd
import plotly.express as px
import streamlit as st

from app.bootstrap import now
from core.states import OrderStatus

STALE_SAMPLES_S = 60.0
STATUS_COLOURS: Mapping[str, str] = {
    OrderStatus.ACCEPTED: "gray", OrderStatus.RENDERING: "blue", OrderStatus.READY_FOR_PRODUCTION: "blue",
    OrderStatus.IN_PRODUCTION: "violet", OrderStatus.QA: "violet", OrderStatus.READY_TO_SHIP: "orange",
    OrderStatus.LABEL_CREATED: "orange", OrderStatus.SHIPPED: "green", OrderStatus.DELIVERED: "green",
    OrderStatus.ON_HOLD: "yellow", OrderStatus.CANCELLED: "gray", OrderStatus.FAILED: "red",
}
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$])")
_CHART_LAYOUT = {"margin": {"l": 8, "r": 8, "t": 8, "b": 8}, "height": 280, "showlegend": False}


# ---- formatting --------------------------------------------------------------------------------------


def plain(text: Any) -> str:
    """Data shown through st.markdown, escaped so a customer's or partner's text is never read as markup."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", str(text))


def money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency}"


def when(at: datetime | None) -> str:
    return "—" if at is None else at.strftime("%Y-%m-%d %H:%M:%S UTC")


def short_when(at: datetime) -> str:
    return at.strftime("%d %b %H:%M")


def ago(at: datetime) -> str:
    seconds = max(0.0, (now() - at).total_seconds())
    return duration(seconds) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def humanise(word: str) -> str:
    return str(word).replace("_", " ")


def describe_event(event_type: str, payload: Mapping[str, Any]) -> str:
    """One readable sentence for a timeline line (the raw payload stays one click away)."""
    if event_type == "order.received":
        return (f"Order {payload.get('number', '')} received from {payload.get('channel', '?')} "
                f"(shop id {payload.get('external_id', '?')}): {payload.get('units', '?')} unit(s), "
                f"{money(int(payload.get('total_cents', 0)), str(payload.get('currency', '')))}")
    if {"from", "to"} <= payload.keys():
        entity = event_type.split(".", 1)[0]
        sentence = f"{entity.capitalize()} {humanise(payload['from'])} → {humanise(payload['to'])}"
        if entity != "order" and payload.get("entity_id"):
            sentence += f" ({payload['entity_id']})"
        if payload.get("reason"):
            sentence += f" — {humanise(payload['reason'])}"
        if payload.get("note"):
            sentence += f": {payload['note']}"
        return sentence
    for key in ("note", "text", "message"):
        if payload.get(key):
            return str(payload[key])
    scalars = [f"{humanise(k)}: {v}" for k, v in payload.items() if isinstance(v, (str, int, float, bool))]
    return " · ".join(scalars) or humanise(event_type)


def order_label(summary: Mapping[str, Any]) -> str:
    """How an order reads in a list of search results."""
    return (f"{plain(summary['number'])} · {humanise(summary['status'])} · {plain(summary['customer'])} · "
            f"{when(summary['placed_at'])} · {money(summary['total_cents'], summary['currency'])}")


# ---- widgets -----------------------------------------------------------------------------------------


def badge(status: str) -> str:
    """A status as an inline markdown badge, coloured by how far along (or how stuck) it is."""
    return f":{STATUS_COLOURS.get(status, 'gray')}-badge[{plain(humanise(status))}]"


def status_badge(status: str) -> None:
    st.markdown(badge(status))


def intake_tiles(outcomes: Mapping[str, int]) -> None:
    """Accepted and refused checkouts in the last hour, and the share accepted."""
    accepted, rejected = outcomes["accepted"], outcomes["rejected"]
    total = accepted + rejected
    first, second, third = st.columns(3)
    first.metric("Accepted (last hour)", accepted, border=True)
    second.metric("Refused (last hour)", rejected, border=True)
    third.metric("Acceptance rate", f"{accepted / total:.0%}" if total else "—", border=True)


def status_chart(per_status: pd.DataFrame) -> None:
    frame = per_status.assign(label=per_status["status"].map(humanise))
    figure = px.bar(frame, x="label", y="orders", labels={"label": "", "orders": "orders"})
    figure.update_layout(**_CHART_LAYOUT)
    st.plotly_chart(figure, config={"displayModeBar": False})


def intake_chart(per_minute: pd.DataFrame) -> None:
    figure = px.line(per_minute, x="minute", y="orders", labels={"minute": "", "orders": "orders / min"})
    figure.update_layout(**_CHART_LAYOUT)
    st.plotly_chart(figure, config={"displayModeBar": False})


def rejections_chart(reasons: pd.DataFrame) -> None:
    if reasons.empty:
        st.caption("No checkout was refused in the last hour.")
        return
    frame = reasons.assign(reason=reasons["code"].map(humanise)).iloc[::-1]
    figure = px.bar(frame, x="count", y="reason", orientation="h",
                    labels={"reason": "", "count": "checkouts"})
    figure.update_layout(**_CHART_LAYOUT)
    st.plotly_chart(figure, config={"displayModeBar": False})


def queue_table(overview: list[Mapping[str, Any]]) -> None:
    """One row per Dramatiq queue: depth and oldest-message age now, with their 30-minute trends."""
    if not overview:
        st.info("No samples yet — is the scheduler running?", icon=":material/hourglass_empty:")
        return
    newest = max(sample["at"] for sample in overview)
    if (now() - newest).total_seconds() > STALE_SAMPLES_S:
        st.warning(f"The newest queue sample is {ago(newest)} — is the scheduler running?")
    rows = [{"queue": sample["queue"], "depth": sample["depth"], "depth trend": sample["depth_series"],
             "oldest message": duration(sample["oldest_age_s"]), "age trend": sample["age_series"],
             "delayed": sample["delayed"], "dead": sample["dead"]} for sample in overview]
    st.dataframe(rows, hide_index=True, column_config={
        "depth trend": st.column_config.AreaChartColumn("depth, 30 min", y_min=0),
        "age trend": st.column_config.LineChartColumn("age, 30 min", y_min=0),
        "dead": st.column_config.NumberColumn("dead", help="messages that exhausted their retries"),
    })
    st.caption(f"Sampled {ago(newest)}.")


def order_header(order: Mapping[str, Any]) -> None:
    """Number and status, then the facts support is asked about first."""
    st.subheader(f"{plain(order['number'])} {badge(order['status'])}")
    if order.get("hold_reason"):
        st.caption(f"On hold: {humanise(order['hold_reason'])} (from {humanise(order['held_from'])}).")
    tiles = st.columns(4)
    tiles[0].metric("Placed", short_when(order["placed_at"]), help=when(order["placed_at"]))
    tiles[1].metric("Customer", order["customer_name"], help=plain(order["customer_email"]))
    tiles[2].metric("Total", money(order["total_cents"], order["currency"]))
    tiles[3].metric("Shipping", humanise(order["shipping_speed"]))
    st.caption(f"{plain(order['channel'])} · shop id {plain(order['external_id'])} · "
               f"order id {order['id']} · status since {when(order['status_changed_at'])}")


def lines_table(lines: list[Mapping[str, Any]]) -> None:
    rows = [{"#": line["line_no"], "SKU": line["sku"], "qty": line["quantity"],
             "texts": " · ".join(f"{k}: {v}" for k, v in (line["texts"] or {}).items()),
             "template": f"{line['template_key']} v{line['template_version']}",
             "artwork": line["artwork_id"] or "—", "asset": line["asset_id"] or "not rendered yet",
             "partner": line["partner_id"] or "—"} for line in lines]
    st.dataframe(rows, hide_index=True)


def jobs_table(jobs: list[Mapping[str, Any]]) -> None:
    if not jobs:
        st.caption("No print jobs.")
        return
    rows = [{"job": job["id"], "line": job["line_no"], "unit": job["unit_index"],
             "status": humanise(job["status"]), "attempt": job["attempt"],
             "reprint of": job["reprint_of"] or "",
             "reason": humanise(job["reason_code"] or ""), "partner": job["partner_id"] or "—",
             "partner job": job["partner_job_id"] or "", "since": when(job["status_changed_at"])}
            for job in jobs]
    st.dataframe(rows, hide_index=True)


def shipments_table(shipments: list[Mapping[str, Any]]) -> None:
    if not shipments:
        return
    st.subheader("Shipments")
    rows = [{"shipment": s["id"], "status": humanise(s["status"]), "carrier": s["carrier"] or "—",
             "service": s["service"] or "—", "tracking": s["tracking_code"] or "—",
             "since": when(s["status_changed_at"])} for s in shipments]
    st.dataframe(rows, hide_index=True)


NOTIFICATION_LINES = ("notification.sent", "notification.failed", "notification.unknown", "notification.skipped")
"""Timeline types of a customer message (payload: milestone, channel): the lines support can resend from."""


def timeline_list(events: list[Mapping[str, Any]], *,
                  on_resend: Callable[[str, str], Any] | None = None) -> None:
    """Newest first: when and by whom on the left, what happened on the right, the raw payload on demand.

    With `on_resend`, each customer message's line has a Resend button calling it with (milestone, channel).
    """
    if not events:
        st.caption("No events recorded for this order.")
        return
    with st.container(border=True):
        for index, event in enumerate(events):
            left, right = st.columns([1, 4], gap="medium")
            left.caption(f"{when(event['at'])}  \nby {plain(event['source'])}")
            summary = describe_event(event["type"], event["payload"])
            right.markdown(f"**{plain(event['type'])}** — {plain(summary)}")
            payload = event["payload"] or {}
            if on_resend is not None and event["type"] in NOTIFICATION_LINES and payload.get("milestone") \
                    and payload.get("channel"):
                right.button("Resend", key=f"timeline.resend.{index}", icon=":material/forward_to_inbox:",
                             on_click=on_resend, args=(str(payload["milestone"]), str(payload["channel"])),
                             help=f"Send the {humanise(payload['milestone'])} {payload['channel']} once more")
            if event["payload"]:
                with right.expander("payload"):
                    st.json(event["payload"])


def render_cache_tiles(cache: Mapping[str, float], latency: Mapping[str, Any]) -> None:
    """The render cache's hit ratio and print-file retrieval latency (target: p95 under 200 ms)."""
    ratio, rendered, p95 = st.columns(3)
    ratio.metric("Render cache hit ratio", f"{cache['hit_ratio']:.0%}",
                 help="Share of order lines served from an identical design already rendered.")
    rendered.metric("Designs rendered", f"{int(cache['rendered']):,}", f"{int(cache['hits']):,} reused",
                    delta_color="off")
    p95_ms = latency.get("p95_ms")
    p95.metric("Print-file retrieval p95", "—" if p95_ms is None else f"{p95_ms:.0f} ms",
               None if p95_ms is None else ("within 200 ms" if p95_ms < 200 else "over 200 ms target"),
               delta_color="normal" if p95_ms is None or p95_ms < 200 else "inverse",
               help=f"{latency.get('count', 0)} downloads in the last hour.")


def print_files(assets: list[Mapping[str, Any]]) -> None:
    """Each line's preview thumbnail, pinned template version, and links to the print-ready files."""
    if not assets:
        st.caption("Not rendered yet.")
        return
    for asset in assets:
        picture, facts = st.columns([1, 3], gap="medium")
        if asset.get("url_preview"):
            picture.image(asset["url_preview"], width=180)
        facts.markdown(f"**Line {asset['line_no']}** · {plain(asset['sku'])} · template "
                       f"`{plain(asset['template'])}` **v{asset['version']}** · {plain(asset['size'])}")
        facts.caption(f"asset {plain(asset['asset_id'][:16])}… · {asset['bytes'] / 1e6:.1f} MB"
                      + (f" · reused by {asset['reused']} other line(s)" if asset["reused"] else ""))
        links = [f"[Print file (PNG)]({asset['url_print_png']})"]
        if asset.get("url_print_pdf"):
            links.append(f"[Print file (PDF)]({asset['url_print_pdf']})")
        facts.markdown(" · ".join(links))


# ---- production: batch builder and partner panel ----------------------------------------------------------

_PRIORITY_SLIDERS = (  # field, label, slider top, step
    ("express", "Express shipping", 40.0, 0.5),
    ("high_value", "High-value order", 20.0, 0.5),
    ("age_per_hour", "Age, per hour waiting", 5.0, 0.1),
    ("reprint_boost", "Reprint, per extra attempt", 40.0, 0.5),
    ("deadline", "Calendar deadline, at its ship-by", 30.0, 0.5),
)
_ROUTING_SLIDERS = (("distance", "Distance"), ("capacity", "Free capacity"), ("defects", "Defect record"),
                    ("stock", "Stock left"))


def batch_table(board: pd.DataFrame) -> None:
    """Each batch against its partner's capacity: target, size, fill, oldest wait and whether it is due."""
    if board.empty:
        st.info("No routed jobs are waiting for a batch.", icon=":material/inventory_2:")
        return
    st.dataframe(board, hide_index=True, column_config={
        "capacity_h": st.column_config.NumberColumn("capacity / h", format="%d",
                                                    help="the partner's units per hour for this print method"),
        "fill": st.column_config.ProgressColumn("size / target", min_value=0.0, max_value=1.0, format="percent"),
        "oldest_wait_min": st.column_config.NumberColumn("oldest wait", format="%.0f min"),
        "release_due": st.column_config.TextColumn(
            "release due", help="size: full; age: its oldest job has waited the longest wait; blank: not yet"),
        "priority": st.column_config.NumberColumn(format="%.1f"),
    })


def rules_editor(values: Mapping[str, Any], *, key: str) -> dict[str, Any]:
    """Widgets for the production rules, starting from `values` (a rules document); returns the edited one."""
    priority, batching, routing = dict(values["priority"]), dict(values["batching"]), dict(values["routing"])
    weights, policy = st.columns(2, gap="large")
    with weights:
        st.markdown("**Priority weights** (points)")
        for name, label, top, step in _PRIORITY_SLIDERS:
            st.slider(label, 0.0, max(top, float(priority[name])), float(priority[name]), step,
                      key=f"{key}.priority.{name}")
    with policy:
        st.markdown("**Batching**")
        wait, window = float(batching["max_wait_s"]) / 60, max(5, round(batching["capacity_window_s"] / 60))
        st.number_input("Longest wait for a batch (min)", min(0.05, wait), max(1440.0, wait), wait, 5.0, format="%.2f",
                        key=f"{key}.batching.max_wait",
                        help="an open batch is released when its oldest job has waited this long")
        st.slider("Target size: minutes of the partner's capacity", 5, max(240, window), window, step=5,
                  key=f"{key}.batching.capacity_window")
        sizes = (int(batching["min_size"]), int(batching["max_size"]))
        st.slider("Batch size bounds (jobs)", 1, max(500, sizes[1]), sizes, key=f"{key}.batching.sizes")
        st.number_input("On-time start: printing within (hours of submission)", 0.25, 72.0,
                        values["start_sla_s"] / 3600, 0.25, key=f"{key}.start_sla")
    with st.expander("Routing weights (they apply to jobs routed from now on)"):
        for name, label in _ROUTING_SLIDERS:
            st.slider(label, 0.0, 1.0, float(routing[name]), 0.05, key=f"{key}.routing.{name}")
    return edited_rules(values, key=key)


def edited_rules(values: Mapping[str, Any], *, key: str) -> dict[str, Any]:
    """The rules document as `rules_editor`'s widgets hold it now (`values` where a widget has no value yet).

    Read from the session, not from a previous run's return value, so a button callback sees a slider moved
    just before the click.
    """
    state = st.session_state
    priority, batching, routing = dict(values["priority"]), dict(values["batching"]), dict(values["routing"])
    for name, *_ in _PRIORITY_SLIDERS:
        priority[name] = state.get(f"{key}.priority.{name}", priority[name])
    if f"{key}.batching.max_wait" in state:
        batching["max_wait_s"] = 60 * state[f"{key}.batching.max_wait"]
    if f"{key}.batching.capacity_window" in state:
        batching["capacity_window_s"] = 60 * state[f"{key}.batching.capacity_window"]
    if f"{key}.batching.sizes" in state:
        batching["min_size"], batching["max_size"] = state[f"{key}.batching.sizes"]
    for name, _ in _ROUTING_SLIDERS:
        routing[name] = state.get(f"{key}.routing.{name}", routing[name])
    sla_s = 3600 * state[f"{key}.start_sla"] if f"{key}.start_sla" in state else values["start_sla_s"]
    return dict(values) | {"priority": priority, "batching": batching, "routing": routing, "start_sla_s": sla_s}


def start_shift_chart(jobs: pd.DataFrame, *, limit: int = 60) -> None:
    """Each job's predicted start under the rules in force and under the edited ones, earliest first."""
    predicted = jobs.dropna(subset=["before", "after"])
    shown = predicted.head(limit)
    unpredicted = len(jobs) - len(predicted)
    if unpredicted:
        st.caption(f"{unpredicted} job(s) have no predicted start: their batch is held (it starts when you "
                   "release it), or their partner has no capacity for the method.")
    if shown.empty:
        return
    points = shown.melt(id_vars=["job"], value_vars=["before", "after"], var_name="rules", value_name="start")
    points["rules"] = points["rules"].map({"before": "in force", "after": "edited"})
    figure = px.scatter(points, x="start", y="job", color="rules", symbol="rules",
                        labels={"start": "predicted start", "job": ""})
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(**(_CHART_LAYOUT | {"showlegend": True, "height": min(900, 120 + 18 * len(shown))}))
    st.plotly_chart(figure, config={"displayModeBar": False})
    if len(predicted) > len(shown):
        st.caption(f"Showing the first {len(shown)} of {len(predicted)} predicted starts; the table has them all.")


def start_shift_table(jobs: pd.DataFrame) -> None:
    st.dataframe(jobs, hide_index=True, column_config={
        "before": st.column_config.DatetimeColumn("start (in force)", format="D MMM HH:mm"),
        "after": st.column_config.DatetimeColumn("start (edited)", format="D MMM HH:mm"),
        "shift_min": st.column_config.NumberColumn("moves by", format="%+.0f min",
                                                   help="positive: later; blank: held, or no capacity"),
    })


def partner_table(panel: pd.DataFrame, *, start_sla_hours: float) -> None:
    """Per partner: work at the partner against capacity, lag, and the share of jobs that started on time."""
    if not (panel["in_flight"].sum() or panel["decided"].sum() or panel["waiting"].sum()):
        st.caption("No jobs at any partner in the last 24 hours: load, lag and on-time starts show here once "
                   "batches are submitted.")
        return
    frame = panel.assign(lag=panel["lag_s"].map(lambda s: "—" if pd.isna(s) else duration(s)))
    st.dataframe(frame[["name", "in_flight", "by_method", "queue_hours", "lag", "on_time", "decided", "waiting"]],
                 hide_index=True, column_config={
        "name": "partner", "in_flight": st.column_config.NumberColumn("at partner", help="submitted, queued, printing"),
        "by_method": "per method: at partner / capacity per hour",
        "queue_hours": st.column_config.ProgressColumn(
            "queue", min_value=0.0, max_value=start_sla_hours, format="%.1f h",
            help="the busiest method's work at the partner, in hours of its capacity"),
        "lag": st.column_config.TextColumn("lag", help="oldest job submitted but not yet printing"),
        "on_time": st.column_config.ProgressColumn(
            "on-time start", min_value=0.0, max_value=1.0, format="percent",
            help=f"jobs submitted in the last 24 h that started printing within {start_sla_hours:g} h"),
        "decided": st.column_config.NumberColumn("measured"),
        "waiting": st.column_config.NumberColumn("not due yet"),
    })


# ---- QA review ---------------------------------------------------------------------------------------------


def review_counts(queue: Mapping[str, Any]) -> None:
    """Waiting, decided today, and why the waiting items came to a human."""
    waiting, decided, reasons = st.columns([1, 1, 3])
    waiting.metric("Waiting for review", queue["waiting"], border=True)
    decided.metric("Decided today", queue["decided"], border=True)
    reasons.markdown("**Why they are here**  \n" + (" · ".join(
        f"{plain(reason.replace('_', ' '))}: {n}" for reason, n in queue["by_reason"].items()) or "—"))


def review_label(item: Mapping[str, Any]) -> str:
    """How a queue item reads in the picker: order, why it is here, since when (stable, so the pick sticks)."""
    why = str(item["review_reason"] or "review").replace("_", " ")
    return f"{item['order_number']} · {why} · waiting since {short_when(item['created_at'])} UTC"


def inspection_facts(found: Mapping[str, Any]) -> None:
    """The suspected reason(s) and the automatic scores of one inspection."""
    suspected = ", ".join(str(r).replace("_", " ") for r in found["reasons"]) or "none: the scores were borderline"
    st.markdown(f"**Order** {plain(found['order_number'])} · **SKU** {plain(found['sku'])} · **partner** "
                f"{plain(found['partner_id'] or '—')} · **attempt** {found['attempt']}  \n"
                f"**Here because** {plain(str(found['review_reason'] or 'review').replace('_', ' '))} · "
                f"**suspected** {plain(suspected)}")
    scores = pd.DataFrame({"score": list(found["scores"]), "value": list(found["scores"].values())})
    st.dataframe(scores, hide_index=True, column_config={"value": st.column_config.NumberColumn(format="%.3f")})


def verdict_line(given: dict) -> str:
    """One of the inspector's verdicts still waiting out its undo window."""
    what = "approved" if given["pending_verdict"] == "approve" else f"rejected ({given['pending_reason']})"
    return f"Order {given['order_number']}: {what} at {given['decided_at']:%H:%M:%S} — takes effect shortly."


# ---- exception inbox -----------------------------------------------------------------------------------------

EXCEPTION_KINDS: Mapping[str, str] = {"address": "Address problems", "carrier": "Parcel problems",
                                      "notification": "Failed notifications", "change_request": "Change requests"}


def exception_counts(counts: Mapping[str, int]) -> None:
    """Open entries per kind, one tile each."""
    for column, (kind, count) in zip(st.columns(len(counts) or 1), counts.items(), strict=False):
        column.metric(EXCEPTION_KINDS.get(kind, humanise(kind)), count, border=True)


def exception_entry(entry: Mapping[str, Any]) -> None:
    """What happened to which order, since when, and what the customer asked for (a change request)."""
    severity = {"critical": "red", "warning": "orange"}.get(entry["severity"], "gray")
    order = plain(entry["order_number"] or "no order")
    st.markdown(f"**#{entry['id']} · {order}** :{severity}-badge[{plain(humanise(entry['kind']))}] "
                + (badge(entry["order_status"]) if entry["order_status"] else ""))
    st.markdown(plain(entry["message"]))
    facts = [f"open since {when(entry['opened_at'])} ({ago(entry['opened_at'])})"]
    if entry.get("hold_reason"):
        facts.append(f"on hold: {humanise(entry['hold_reason'])}")
    if entry.get("tracking_code"):
        facts.append(f"parcel {plain(entry['tracking_code'])} ({humanise(entry['shipment_status'] or '?')})")
    st.caption(" · ".join(facts))
    request = (entry.get("details") or {}).get("request")
    if request:
        st.markdown(f"> {plain(request)}")
