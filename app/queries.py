"""Cached reads for the pages: short-lived st.cache_data wrappers around db.queries (the only caching)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st

from app.bootstrap import engine, now, settings
from core.signing import signed_asset_path
from db import queries as q

LIVE_TTL_S = 4  # a little under the control room's 5 s refresh, so every refresh sees new numbers
LOOKUP_TTL_S = 10
WINDOW = timedelta(hours=1)
SPARKLINE = timedelta(minutes=30)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def orders_per_status() -> pd.DataFrame:
    """status, orders — every status in lifecycle order."""
    return q.orders_per_status(engine())


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def intake_per_minute() -> pd.DataFrame:
    """minute, orders — the last hour."""
    return q.intake_per_minute(engine(), now=now(), minutes=int(WINDOW.total_seconds() // 60))


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def intake_outcomes() -> dict[str, int]:
    """accepted, rejected — checkouts in the last hour."""
    return q.intake_outcomes(engine(), since=now() - WINDOW)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def rejection_reasons() -> pd.DataFrame:
    """code, count — the last hour, most frequent first."""
    return q.rejection_reasons(engine(), since=now() - WINDOW)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def queue_overview() -> list[dict[str, Any]]:
    """Per queue: the latest sample plus its depth and oldest-age series for the sparklines."""
    series = q.queue_series(engine(), since=now() - SPARKLINE)
    overview = []
    for sample in q.latest_queue_samples(engine()):
        mine = series[series["queue"] == sample["queue"]]
        overview.append(sample | {"depth_series": mine["depth"].tolist(),
                                  "age_series": mine["oldest_age_s"].fillna(0.0).tolist()})
    return overview


@st.cache_data(ttl=LOOKUP_TTL_S, show_spinner=False)
def search_orders(term: str) -> list[dict[str, Any]]:
    """Order summaries matching the search box, newest first."""
    return q.search_orders(engine(), term)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def order_detail(order_id: str) -> dict[str, Any] | None:
    return q.order_detail(engine(), order_id)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def timeline(order_id: str) -> list[dict[str, Any]]:
    """The order's events, newest first."""
    return q.timeline(engine(), order_id)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def render_cache() -> dict[str, float]:
    """rendered, hits, hit_ratio — all time."""
    return q.render_cache(engine())


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def retrieval_latency() -> dict[str, Any]:
    """count, p50_ms, p95_ms — print-file downloads in the last hour."""
    return q.retrieval_latency(engine(), since=now() - WINDOW)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def order_assets(order_id: str) -> list[dict[str, Any]]:
    """The order's rendered files, each with signed links (valid for an hour) to preview, PNG and PDF."""
    expires = int(now().timestamp()) // 3600 * 3600 + 7200  # stable within the hour, so images cache
    base, secret = settings().api_url, settings().asset_url_secret
    assets = []
    for asset in q.order_assets(engine(), order_id):
        links = {"print.png": True, "print.pdf": asset["has_pdf"], "preview": asset["has_preview"]}
        assets.append(asset | {f"url_{name.replace('.', '_')}": base + signed_asset_path(
            secret, asset["asset_id"], name, expires=expires) for name, present in links.items() if present})
    return assets
