"""The render stage: every line of an accepted order gets a print-ready file, or the order goes on hold."""

from __future__ import annotations

import io
import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from PIL import Image, UnidentifiedImageError

from core.commands import RouteOrder
from core.erasable import qa_reference_name
from core.events import EventType, Noted
from core.notifications import Milestone
from core.ports import ObjectStore
from core.render import RenderError, asset_key, render_asset
from core.services.notify import notify_milestone
from core.services.qa import PreparedReferences
from core.states import HoldReason, OrderStatus

log = logging.getLogger(__name__)
SOURCE = "worker:render"
PDF_METHODS = frozenset({"inkjet"})


@dataclass(frozen=True, slots=True, kw_only=True)
class LineWork:
    """What rendering one line needs, read in a short transaction and used outside it."""

    line_id: str
    line_no: int
    template_key: str
    template_version: int
    spec: dict[str, Any]
    texts: dict[str, str]
    artwork_id: str | None
    artwork_key: str | None
    artwork_sha256: str
    product_type: str
    print_method: str
    colour: str

    @property
    def key(self) -> str:
        return asset_key(self.template_key, self.template_version, self.artwork_sha256, self.texts,
                         {"product_type": self.product_type, "print_method": self.print_method,
                          "colour": self.colour})


class Unrenderable(Exception):
    """This design cannot be rendered as it stands (artwork gone or corrupt, template broken)."""

    def __init__(self, reason: HoldReason, note: str) -> None:
        super().__init__(note)
        self.reason = reason
        self.note = note


def render_order(order_id: str, *, uow, store: ObjectStore, now: Callable[[], datetime],
                 clock: Callable[[], float],
                 one_at_a_time: Callable[[str], AbstractContextManager] = lambda key: nullcontext(),
                 references: PreparedReferences | None = None) -> str:
    """Render an order's lines (reusing cached designs) and move it to ready_for_production.

    Safe to run twice: it does nothing unless the order is accepted or rendering, and assets are keyed by
    content, so a second run finds them in the cache. Transient storage errors propagate (the actor retries).
    `one_at_a_time(asset key)` is held around the cache check and the render: the workers pass a lock shared
    between processes, so a popular design's first orders arriving together render it once and the rest hit
    the cache (without it, 8 threads each rendered the same design, 19 s apiece instead of ~2 s once).
    `references` is where QA keeps prepared print files (`core.services.qa.inspect_job`): a new design's print
    file is prepared there from the canvas as it is rendered, so its first inspection does not decode it.

    Returns:
        What happened: "missing", "skipped", "held" or "rendered".
    """
    work = _start(order_id, uow=uow, now=now)
    if isinstance(work, str):
        return work
    assets: dict[str, str] = {}
    hits = 0
    try:
        for line in work:
            with one_at_a_time(line.key):
                cached = _cached(uow, line.key)
                if not cached:
                    _render_and_store(line, uow=uow, store=store, now=now, clock=clock, references=references)
            hits += cached
            assets[line.line_id] = line.key
    except Unrenderable as problem:
        return _hold(order_id, problem, uow=uow, now=now)
    return _finish(order_id, work, assets, hits, uow=uow, now=now)


def _start(order_id: str, *, uow, now) -> list[LineWork] | str:
    with uow:
        order = uow.orders.get(order_id, lock=True)
        if order is None:
            log.warning("render: order %s does not exist", order_id)
            return "missing"
        if order.status not in (OrderStatus.ACCEPTED, OrderStatus.RENDERING):
            return "skipped"
        if order.status == OrderStatus.ACCEPTED:
            order.advance(OrderStatus.RENDERING, at=now(), source=SOURCE)
        work = []
        for line in order.lines:
            variant = uow.variants.describe(line.sku) or {}
            stored = uow.artworks.storage(line.artwork_id) if line.artwork_id else None
            work.append(LineWork(
                line_id=line.id, line_no=line.line_no, template_key=line.template_key,
                template_version=line.template_version,
                spec=uow.templates.spec(line.template_key, line.template_version) or {},
                texts=dict(line.texts), artwork_id=line.artwork_id, artwork_key=stored[0] if stored else None,
                artwork_sha256=stored[1] if stored else "", product_type=variant.get("product_type", ""),
                print_method=variant.get("print_method", ""), colour=variant.get("colour", "")))
        uow.commit()
    return work


def _cached(uow, key: str) -> bool:
    with uow:
        if uow.assets.get(key) is None:
            return False
        uow.assets.count_hit(key)
        uow.commit()
    return True


def _render_and_store(line: LineWork, *, uow, store: ObjectStore, now, clock,
                      references: PreparedReferences | None) -> None:
    if not line.spec:
        raise Unrenderable(HoldReason.RENDER_FAILED, f"template {line.template_key} v{line.template_version} is gone")
    if line.artwork_key is None:
        raise Unrenderable(HoldReason.ARTWORK_MISSING, f"line {line.line_no}: no artwork on file")
    try:
        data = store.get(line.artwork_key)
    except KeyError:
        raise Unrenderable(HoldReason.ARTWORK_MISSING, f"line {line.line_no}: artwork file is missing") from None
    try:
        artwork = Image.open(io.BytesIO(data), formats=["PNG"])
        artwork.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as corrupt:
        raise Unrenderable(HoldReason.ARTWORK_MISSING,
                           f"line {line.line_no}: artwork is corrupt ({type(corrupt).__name__})") from None
    try:
        rendered = render_asset(line.spec, artwork=artwork, texts=line.texts, product_type=line.product_type,
                                print_method=line.print_method, colour=line.colour,
                                make_pdf=line.print_method in PDF_METHODS, clock=clock,
                                prepare_qa_reference=references is not None)
    except RenderError as broken:
        raise Unrenderable(HoldReason.RENDER_FAILED, f"line {line.line_no}: {broken.message}") from None
    finally:
        artwork.close()
    base = f"assets/{line.key}"
    print_key = f"{base}/print.png"
    store.put(print_key, rendered.print_png, content_type="image/png")
    pdf_key = None
    if rendered.pdf is not None:
        pdf_key = f"{base}/print.pdf"
        store.put(pdf_key, rendered.pdf, content_type="application/pdf")
    preview_key = f"previews/{line.key}.{rendered.preview_content_type.split('/')[-1]}"
    store.put(preview_key, rendered.preview, content_type=rendered.preview_content_type)
    if references is not None and rendered.qa_reference is not None:
        name = qa_reference_name(rendered.sha256, rendered.qa_reference.substrate)
        references.keep(name, rendered.qa_reference)
    with uow:
        uow.assets.add({"id": line.key, "template_key": line.template_key, "template_version": line.template_version,
                        "artwork_id": line.artwork_id, "designer_id": None, "print_file_key": print_key,
                        "pdf_key": pdf_key, "preview_key": preview_key, "dpi": rendered.dpi,
                        "width": rendered.width, "height": rendered.height,
                        "colour_profile": rendered.colour_profile, "sha256": rendered.sha256,
                        "bytes": rendered.size_bytes, "render_ms": round(rendered.render_ms), "hits": 0,
                        "created_at": now()})
        uow.commit()
    log.info("rendered asset %s (%dx%d, %.0f ms)", line.key[:12], rendered.width, rendered.height, rendered.render_ms)


def _hold(order_id: str, problem: Unrenderable, *, uow, now) -> str:
    with uow:
        order = uow.orders.get(order_id, lock=True)
        if order is None or order.status != OrderStatus.RENDERING:
            return "skipped"
        at = now()
        order.hold(problem.reason, at=at, source=SOURCE, note=problem.note)
        uow.alerts.raise_(kind="render", key=order_id, order_id=order_id, severity="warning", at=at,
                          message=f"Order {order.number} is on hold: {problem.note}")
        uow.commit()
    log.warning("order %s held: %s", order_id, problem.note)
    return "held"


def _finish(order_id: str, work: list[LineWork], assets: dict[str, str], hits: int, *, uow, now) -> str:
    with uow:
        order = uow.orders.get(order_id, lock=True)
        if order is None or order.status != OrderStatus.RENDERING:
            return "skipped"
        at = now()
        for line in order.lines:
            line.asset_id = assets[line.id]
        for item in work:
            asset = uow.assets.get(assets[item.line_id]) or {}
            uow.timeline.add(Noted(
                order_id=order_id, at=at, source=SOURCE, kind=EventType.ASSET_RENDERED,
                key=f"asset:{order_id}:{item.line_id}:{asset.get('id')}",
                details={"line_no": item.line_no, "asset_id": asset.get("id"), "template": item.template_key,
                         "template_version": item.template_version, "print_file_key": asset.get("print_file_key"),
                         "pdf_key": asset.get("pdf_key"), "preview_key": asset.get("preview_key"),
                         "width": asset.get("width"), "height": asset.get("height"), "dpi": asset.get("dpi")}))
        order.advance(OrderStatus.READY_FOR_PRODUCTION, at=at, source=SOURCE,
                      details={"assets": len(assets), "cache_hits": hits})
        uow.defer(RouteOrder(order_id=order_id))
        notify_milestone(order_id, Milestone.PREVIEW_READY, uow=uow)
        uow.commit()
    return "rendered"
