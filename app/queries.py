"""Cached reads for the pages: short-lived st.cache_data wrappers around db.queries (the only caching)."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st
from PIL import Image

from adapters.objectstore import make_object_store
from app.bootstrap import engine, now, settings
from core.errors import PressroomError
from core.ports import ObjectStore
from core.services import batches as b
from core.services.production import ProductionRules
from core.signing import signed_asset_path
from db import queries as q

LIVE_TTL_S = 4  # a little under the control room's 5 s refresh, so every refresh sees new numbers
LOOKUP_TTL_S = 10
WINDOW = timedelta(hours=1)
SPARKLINE = timedelta(minutes=30)
ON_TIME_WINDOW = timedelta(hours=24)
FINISHED_WINDOW = timedelta(hours=24)  # orders by state: final states count the last day's, open ones all


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def orders_per_status() -> pd.DataFrame:
    """status, orders — every status in lifecycle order; delivered, cancelled and failed: the last 24 hours."""
    return q.orders_per_status(engine(), finished_since=now() - FINISHED_WINDOW)


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


# ---- production: batch builder and partner panel ----------------------------------------------------------


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def rules_document() -> dict[str, Any] | None:
    """The stored production rules document (None until an ops manager saves one)."""
    return q.setting(engine(), b.RULES_KEY)


def production_rules() -> ProductionRules:
    """The rules in force: the stored document over the defaults the workers start from."""
    return b.rules_from_document(rules_document(), defaults=b.defaults_from(settings()))


def rules_in_force() -> dict[str, Any]:
    """Every rule field with its value in force (stored or default), as the editor's starting values."""
    return b.rules_to_document(production_rules(), start_sla=b.start_sla_from_document(rules_document()))


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def _open_work() -> tuple[list[dict[str, Any]], q.GroupCounts, dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """Open jobs (each stored batch's, and each group's most urgent unbatched ones), unbatched jobs per group,
    partner capacity and the load already ahead on each line: one read."""
    with engine().connect() as conn:
        groups = q.unbatched_per_group(conn)
        return q.open_jobs(conn, groups=groups), groups, q.partner_capacity(conn), q.line_load(conn)


def _plan(jobs: list[dict[str, Any]], capacity: dict[str, dict[str, float]],
          groups: q.GroupCounts) -> list[b.PlannedBatch]:
    """The batcher's plan over the jobs read; a group read only in part loses its last, possibly cut, batch."""
    planned = b.plan_batches([b.OpenJob(**job) for job in jobs], rules=production_rules(),
                             partners_capacity=capacity, now=now())
    cut = {key for key, waiting in groups.items() if waiting > q.OPEN_JOBS_PER_GROUP}
    last = {p.proposal.key: p for p in planned if not p.stored and tuple(p.proposal.key) in cut}
    return [p for p in planned if last.get(p.proposal.key) is not p or p.proposal.size >= p.proposal.target_size]


def unbatched_not_shown() -> int:
    """Unbatched jobs behind the batches the board shows (it reads each group's most urgent ones only)."""
    jobs, groups, capacity, _ = _open_work()
    shown = sum(p.proposal.size for p in _plan(jobs, capacity, groups) if not p.stored)
    return sum(groups.values()) - shown


def _job_label(order_number: str, unit_index: int, job_id: str) -> str:
    """How a job reads in lists: its order and unit, and the end of its id (an order's lines repeat units)."""
    return f"{order_number} #{unit_index} (…{job_id[-4:]})"


def batch_board() -> pd.DataFrame:
    """One row per batch as the batcher sees it now: stored open/held ones, then those it would make next."""
    jobs, groups, capacity, _ = _open_work()
    rows = []
    for planned in _plan(jobs, capacity, groups):
        proposal = planned.proposal
        rows.append({"batch": planned.batch_id or "(next)", "status": planned.status,
                     "partner": proposal.key.partner_id, "product": proposal.key.product_type,
                     "method": proposal.key.print_method, "region": proposal.key.region,
                     "capacity_h": planned.capacity_per_hour, "target": proposal.target_size, "size": proposal.size,
                     "fill": proposal.size / proposal.target_size if proposal.target_size else 0.0,
                     "oldest_wait_min": proposal.oldest_wait.total_seconds() / 60,
                     "release_due": str(proposal.release_reason or ""), "priority": proposal.priority})
    return pd.DataFrame(rows, columns=["batch", "status", "partner", "product", "method", "region", "capacity_h",
                                       "target", "size", "fill", "oldest_wait_min", "release_due", "priority"])


def stored_batches() -> list[dict[str, Any]]:
    """The open and held batches staff can act on, each with its jobs in queue order and its merge partners."""
    jobs, groups, capacity, _ = _open_work()
    planned = [p for p in _plan(jobs, capacity, groups) if p.stored]
    by_id = {job["id"]: job for job in jobs}
    batches = []
    for batch in planned:
        key = batch.proposal.key
        batches.append({
            "id": batch.batch_id, "status": batch.status, "group": key.label, "size": batch.proposal.size,
            "target": batch.proposal.target_size, "priority": batch.proposal.priority,
            "jobs": [f"{_job_label(by_id[view.id]['order_number'], by_id[view.id]['unit_index'], view.id)} · "
                     f"priority {view.priority:.1f}" for view in batch.proposal.jobs],
            "merge_with": [other.batch_id for other in planned
                           if other.proposal.key == key and other.batch_id != batch.batch_id]})
    return batches


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def rules_preview(document: dict[str, Any]) -> dict[str, Any]:
    """Predicted starts under the rules in force and under `document`, per job, before anything is saved.

    Returns error (a sentence, when the edited rules cannot work), jobs (a frame: job, batch, partner,
    method, before, after, shift_min), the count of jobs that start earlier or later, and left_out: the
    unbatched jobs not previewed (each group's most urgent `q.OPEN_JOBS_PER_GROUP` are).
    """
    try:
        proposed = b.rules_from_document(document, defaults=b.defaults_from(settings()))
    except PressroomError as error:
        return {"error": error.message, "jobs": pd.DataFrame(), "earlier": 0, "later": 0, "left_out": 0}
    jobs, groups, capacity, load = _open_work()
    left_out = sum(max(0, waiting - q.OPEN_JOBS_PER_GROUP) for waiting in groups.values())
    shifts = b.preview_rules([b.OpenJob(**job) for job in jobs], current=production_rules(), proposed=proposed,
                             partners_capacity=capacity, load=load, now=now())
    frame = pd.DataFrame([{"job": _job_label(s.order_number, s.unit_index, s.job_id), "batch": s.batch,
                           "partner": s.partner_id, "method": s.print_method, "before": s.before, "after": s.after,
                           "shift_min": None if s.shift is None else s.shift.total_seconds() / 60}
                          for s in shifts],
                         columns=["job", "batch", "partner", "method", "before", "after", "shift_min"])
    moved = frame["shift_min"].dropna()
    return {"error": None, "jobs": frame, "earlier": int((moved < -0.5).sum()), "later": int((moved > 0.5).sum()),
            "left_out": left_out}


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def partner_panel() -> pd.DataFrame:
    """Per partner: load per method against capacity, lag, and on-time start rate over the last 24 hours."""
    return q.partner_panel(engine(), now=now(), start_sla=start_sla(), window=ON_TIME_WINDOW)


def start_sla() -> timedelta:
    """How soon after submission a job should start printing (stored with the production rules)."""
    return b.start_sla_from_document(rules_document())


# ---- QA review ---------------------------------------------------------------------------------------------

PICTURES_TTL_S = 300  # stored QA pictures never change; the TTL only bounds memory
ZOOM_MARGIN = 0.25  # of the worst region's larger side, on every side


@st.cache_resource(show_spinner=False)
def object_store() -> ObjectStore:
    """The object store holding print files and QA photos (S3 or the local folder, per the settings)."""
    return make_object_store(settings())


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def review_queue() -> dict[str, Any]:
    """Needs-review items oldest first, with waiting, by_reason and decided (today, UTC) counts."""
    midnight = now().replace(hour=0, minute=0, second=0, microsecond=0)
    return q.review_queue(engine(), since=midnight)


def undoable_verdicts(user: str) -> list[dict[str, Any]]:
    """The inspector's own verdicts still inside their undo window, newest first (not cached: it is per click)."""
    window = timedelta(seconds=settings().qa_undo_window_s)
    return q.undoable_verdicts(engine(), user=user, since=now() - window)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def inspection(inspection_id: str) -> dict[str, Any] | None:
    return q.inspection_detail(engine(), inspection_id)


@st.cache_data(ttl=PICTURES_TTL_S, show_spinner=False, max_entries=20)
def _pictures(inspection_id: str) -> dict[str, Image.Image] | None:
    """Reference, aligned photo and heat-map, all in the aligned photo's frame (worst_region's pixels).

    The reference is the print file (not the product preview, a mock-up of another shape) flattened on white
    and downscaled to the aligned photo, so blending and zooming line up pixel for pixel.
    """
    found = inspection(inspection_id)
    if found is None or not found["aligned_key"] or not found["print_file_key"]:
        return None
    store = object_store()
    aligned = Image.open(io.BytesIO(store.get(found["aligned_key"]))).convert("RGB")
    with Image.open(io.BytesIO(store.get(found["print_file_key"]))) as printed:
        flat = Image.new("RGBA", printed.size, "white")
        flat.alpha_composite(printed.convert("RGBA"))
    pictures = {"reference": flat.convert("RGB").resize(aligned.size, Image.Resampling.LANCZOS), "aligned": aligned}
    if found["heatmap_key"]:
        heatmap = Image.open(io.BytesIO(store.get(found["heatmap_key"]))).convert("RGB")
        pictures["heatmap"] = heatmap.resize(aligned.size, Image.Resampling.BILINEAR)
    return pictures


def _crop_box(region: list[int] | None, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The worst region [x, y, w, h] grown by ZOOM_MARGIN on each side, kept inside the picture."""
    if not region or len(region) != 4 or region[2] <= 0 or region[3] <= 0:
        return None
    x, y, w, h = region
    margin = max(16, int(ZOOM_MARGIN * max(w, h)))
    return (max(0, x - margin), max(0, y - margin), min(size[0], x + w + margin), min(size[1], y + h + margin))


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@st.cache_data(ttl=PICTURES_TTL_S, show_spinner=False, max_entries=50)
def review_pictures(inspection_id: str, *, after_pct: int, heatmap: bool, zoom: bool) -> dict[str, Any] | None:
    """The two pictures the inspector compares, as PNG bytes: reference, and the photo side.

    The photo side is the aligned photo (or its heat-map), blended over the reference by `after_pct`
    (0: reference only, 100: photo only). With `zoom`, both are cropped to the worst region plus a margin.

    Returns reference, photo, zoomed (whether a worst region was there to zoom to); None without pictures.
    """
    pictures = _pictures(inspection_id)
    if pictures is None:
        return None
    reference = pictures["reference"]
    photo = pictures["heatmap"] if heatmap and "heatmap" in pictures else pictures["aligned"]
    photo = Image.blend(reference, photo, max(0, min(100, after_pct)) / 100)
    box = _crop_box((inspection(inspection_id) or {}).get("worst_region"), reference.size) if zoom else None
    if box is not None:
        reference, photo = reference.crop(box), photo.crop(box)
    return {"reference": _png(reference), "photo": _png(photo), "zoomed": box is not None}
