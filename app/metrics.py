"""The metrics page's glue: filters → a scope, cached reads of db.metrics, tables, trend charts and CSV exports."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.bootstrap import engine, now, settings
from core.errors import PressroomError
from core.metrics import (
    METRIC_BY_KEY,
    METRICS,
    Compare,
    MetricScope,
    Status,
    Target,
    Unit,
    format_value,
    status_of,
    targets_from,
)
from core.settings import DEFAULT_METRIC_TARGETS
from db import metrics as m
from db import queries as q

TTL_S = 30  # the figures are read live; a manager flipping filters should not re-run every query each click
TARGETS_KEY = "metric_targets"  # settings row that overrides core.settings.DEFAULT_METRIC_TARGETS
DEFAULT_DAYS = 7
STATUS_ICON = {Status.MET: ":material/check_circle:", Status.AT_RISK: ":material/warning:",
               Status.MISSED: ":material/cancel:", Status.NO_DATA: ":material/help:"}
STATUS_COLOUR = {Status.MET: "green", Status.AT_RISK: "orange", Status.MISSED: "red", Status.NO_DATA: "gray"}
ALL_PARTNERS = ""


def default_range() -> tuple[date, date]:
    """The last week, today included (UTC)."""
    today = now().date()
    return today - timedelta(days=DEFAULT_DAYS - 1), today


def _scope(start: date, end: date, partner: str) -> MetricScope:
    """Whole UTC days from `start` to `end` inclusive."""
    return MetricScope(start=datetime.combine(start, time(), UTC),
                       end=datetime.combine(end + timedelta(days=1), time(), UTC), partner_id=partner or None)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def partner_choices() -> list[str]:
    """"" (all partners) then every partner id."""
    return [ALL_PARTNERS, *(p["id"] for p in m.partners(engine()))]


def partner_label(partner_id: str) -> str:
    return partner_id or "All partners"


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _targets_document() -> dict[str, Any] | None:
    return q.setting(engine(), TARGETS_KEY)


def targets() -> dict[str, Target]:
    """The targets in force: the stored `metric_targets` document over the configured defaults."""
    return targets_from(_targets_document(), DEFAULT_METRIC_TARGETS)


def _deadlines():
    return settings().stage_deadlines_s


@st.cache_data(ttl=TTL_S, show_spinner=False)
def overview(start: date, end: date, partner: str) -> dict[str, Any]:
    """Every success metric for the filters: error (a sentence, when the filters or targets cannot work),
    cards (one dict per metric: key, title, value, target, status, icon, colour, counts, how, detail,
    per_partner)
    and table (the same as a frame, which the CSV export writes)."""
    try:
        scope = _scope(start, end, partner)
        results = m.success_metrics(engine(), scope, now=now(), targets=targets(), deadlines_s=_deadlines())
    except PressroomError as error:
        return {"error": error.message, "cards": [], "table": pd.DataFrame()}
    cards = [{"key": r.spec.key, "title": r.spec.title, "stage": r.spec.stage,
              "value": format_value(r.value, r.spec.unit), "target": r.target.text(r.spec.unit),
              "status": str(r.status), "icon": STATUS_ICON[r.status], "colour": STATUS_COLOUR[r.status],
              "counts": r.counts, "how": r.spec.how, "detail": r.detail,
              "per_partner": r.spec.per_partner or not partner} for r in results]
    table = pd.DataFrame([r.row() for r in results]).drop(columns=["raw_value"])
    return {"error": None, "cards": cards, "table": table}


@st.cache_data(ttl=TTL_S, show_spinner=False)
def drill(key: str, start: date, end: date, partner: str) -> pd.DataFrame:
    """The rows behind a metric's misses (newest or slowest first, at most db.metrics.DRILL_LIMIT)."""
    scope, bind = _scope(start, end, partner), engine()
    goal = targets()[key].goal
    if key == "validation_errors":
        rows = m.rejected_checkouts(bind, scope)
    elif key == "asset_generation":
        rows = m.failed_events(bind, scope, source=m.RENDER_SOURCE)
    elif key == "label_success":
        rows = m.failed_events(bind, scope, source=m.SHIPPING_SOURCE)
    elif key == "notification_delivery":
        rows = m.failed_notifications(bind, scope)
    elif key == "on_time_start":
        trials = m.trials_for(key, scope, now=now(), deadlines_s=_deadlines())
        rows = [{"created": r["at"], "order_number": r["order_number"], "partner": r["partner_id"], "job": r["ref"]}
                for r in m.outcomes(bind, trials, hit=0)]
    elif key == "defect_rate":
        rows = [{"at": r["at"], "order_number": r["order_number"], "partner": r["partner_id"], "reason": r["ref"]}
                for r in m.outcomes(bind, m.defect_trials(scope), hit=1)]
    else:
        unit = "ms" if METRIC_BY_KEY[key].unit == Unit.MS else "seconds"
        rows = [{"at": r["at"], "of": r["grp"], unit: r["value"]}
                for r in m.slowest(bind, m.values_for(key, scope), above=goal)]
    return pd.DataFrame(rows)


DRILL_TITLES = {
    "validation_errors": "Refused checkouts and their reasons (a refused checkout has no order yet)",
    "asset_generation": "Orders the render worker held",
    "retrieval_latency_p95": "Downloads at or over the target",
    "queue_lag_p95": "Queue samples at or over the target",
    "queue_lag_p99": "Queue samples at or over the target",
    "on_time_start": "Jobs that reached their partner late, or are still waiting past their budget",
    "defect_rate": "Items that failed QA",
    "label_success": "Orders the shipping worker held instead of buying a label",
    "notification_delivery": "Notifications that failed or whose outcome is unknown",
}


@st.cache_data(ttl=TTL_S, show_spinner=False)
def trend(key: str, grain: str, start: date, end: date, partner: str) -> pd.DataFrame:
    """bucket, series, value, counts: the metric per UTC hour or day (a percentile metric per stage queue)."""
    scope, bind, spec = _scope(start, end, partner), engine(), METRIC_BY_KEY[key]
    trials = m.trials_for(key, scope, now=now(), deadlines_s=_deadlines())
    if trials is not None:
        rows = [{"bucket": r["bucket"], "series": spec.title, "value": r["hits"] / r["trials"],
                 "counts": f"{r['hits']} of {r['trials']}"} for r in m.trend(bind, trials, grain) if r["trials"]]
    else:
        pct = 99 if key.endswith("p99") else 95
        rows = [{"bucket": r["bucket"], "series": r["grp"], "value": r[f"p{pct}"], "counts": f"{r['n']} samples"}
                for r in m.percentiles(bind, m.bucketed(m.values_for(key, scope), grain), groups=("bucket", "grp"))]
    frame = pd.DataFrame(rows, columns=["bucket", "series", "value", "counts"])
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True)
    return frame


def trend_figure(key: str, grain: str, start: date, end: date, partner: str) -> go.Figure:
    """The metric's trend with its goal as a dashed line."""
    spec, target = METRIC_BY_KEY[key], targets()[key]
    frame = trend(key, grain, start, end, partner)
    scale = 100.0 if spec.unit == Unit.SHARE else 1.0
    figure = go.Figure()
    for series, part in frame.groupby("series", sort=True):
        figure.add_trace(go.Scatter(x=part["bucket"], y=part["value"] * scale, mode="lines+markers", name=str(series),
                                    customdata=part["counts"], hovertemplate="%{x}<br>%{y:.2f}<br>%{customdata}"))
    figure.add_hline(y=target.goal * scale, line_dash="dash", annotation_text=f"target {target.text(spec.unit)}")
    axis = {Unit.SHARE: "%", Unit.MS: "ms", Unit.SECONDS: "seconds"}[spec.unit]
    figure.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, yaxis_title=axis,
                         title=f"{spec.title} per {grain} (UTC)")
    return figure


def trend_choices() -> list[str]:
    return [spec.key for spec in METRICS]


def metric_title(key: str) -> str:
    return METRIC_BY_KEY[key].title


@st.cache_data(ttl=TTL_S, show_spinner=False)
def stage_latency(start: date, end: date, partner: str) -> pd.DataFrame:
    """Per order status: stays, p50/p95/p99/max in minutes, its stage deadline and p95's status against it."""
    scope, deadlines = _scope(start, end, partner), _deadlines()
    rows = []
    for row in m.stage_latency(engine(), scope, now=now()):
        deadline = deadlines.get(row["stage"])
        status = (status_of(row["p95"], Target(compare=Compare.AT_MOST, goal=deadline, warn=deadline))
                  if deadline else Status.NO_DATA)
        rows.append({"stage": row["stage"], "stays": row["n"],
                     **{f"p{p}_min": round(row[f"p{p}"] / 60, 1) for p in (50, 95, 99)},
                     "max_min": round(row["max"] / 60, 1),
                     "deadline_min": deadline / 60 if deadline else None,
                     "p95 vs deadline": str(status) if deadline else "no deadline"})
    return pd.DataFrame(rows, columns=["stage", "stays", "p50_min", "p95_min", "p99_min", "max_min",
                                       "deadline_min", "p95 vs deadline"])


@st.cache_data(ttl=TTL_S, show_spinner=False)
def slowest_stays(start: date, end: date, partner: str) -> pd.DataFrame:
    return pd.DataFrame(m.slowest_stays(engine(), _scope(start, end, partner), now=now()),
                        columns=["order_number", "stage", "entered", "seconds"])


@st.cache_data(ttl=TTL_S, show_spinner=False)
def queue_lag(start: date, end: date) -> pd.DataFrame:
    """Per stage queue: samples, p50/p95/p99 of the oldest message's age, and each against its target."""
    ts = targets()
    rows = [{"queue": r["grp"], "samples": r["n"], "p50_s": r["p50"], "p95_s": r["p95"], "p99_s": r["p99"],
             "p95 status": str(status_of(r["p95"], ts["queue_lag_p95"])),
             "p99 status": str(status_of(r["p99"], ts["queue_lag_p99"]))}
            for r in m.percentiles(engine(), m.queue_lag_values(_scope(start, end, ALL_PARTNERS)))]
    return pd.DataFrame(rows, columns=["queue", "samples", "p50_s", "p95_s", "p99_s", "p95 status", "p99 status"])


@st.cache_data(ttl=TTL_S, show_spinner=False)
def scorecards(start: date, end: date, partner: str) -> pd.DataFrame:
    """One row per partner: volume, on-time start, defect rate and by reason, reprints and their cost."""
    cards = m.partner_scorecards(engine(), _scope(start, end, partner), now=now(), targets=targets(),
                                 deadlines_s=_deadlines())
    frame = pd.DataFrame(cards)
    if not frame.empty:
        frame["reprint_cost"] = frame["reprint_cost_cents"] / 100
    return frame


@st.cache_data(ttl=TTL_S, show_spinner=False)
def reprints(start: date, end: date, partner: str) -> pd.DataFrame:
    return pd.DataFrame(m.reprints(engine(), _scope(start, end, partner)),
                        columns=["at", "order_number", "partner", "sku", "reason", "attempt", "base_cost_cents"])


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """A frame as UTF-8 CSV for st.download_button."""
    return frame.to_csv(index=False).encode("utf-8")
