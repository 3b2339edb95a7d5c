"""Repositories: how the services load and save aggregates and the few records around them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from core.catalogue import ArtworkInfo, TemplateSpec, Variant
from core.events import DomainEvent
from core.model import Customer, Order, PrintJob
from core.states import OrderStatus, ShippingSpeed
from db import tables as t
from db.types import keyring


def insert_ignoring_duplicates(session: Session, table, rows: list[dict[str, Any]], *keys: str) -> int:
    """INSERT … ON CONFLICT (keys) DO NOTHING on either database: duplicates are absorbed, never raised.

    Returns how many rows were new.
    """
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement = dialect_insert(table).on_conflict_do_nothing(index_elements=list(keys))
    if len(rows) == 1:
        return session.execute(statement, rows[0]).rowcount
    session.execute(statement, rows)
    return -1


class OrderRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, order: Order) -> None:
        self.session.add(order)

    def get(self, order_id: str, *, lock: bool = False) -> Order | None:
        """The order; with `lock`, its row is locked (FOR UPDATE OF orders) until the transaction ends."""
        if not lock:
            return self.session.get(Order, order_id)
        query = select(Order).where(t.orders.c.id == order_id).with_for_update(of=t.orders)
        return self.session.scalars(query.execution_options(populate_existing=True)).first()

    def by_external(self, channel: str, external_id: str) -> Order | None:
        return self.session.scalars(select(Order).where(
            t.orders.c.channel == channel, t.orders.c.external_id == external_id)).first()

    def stuck(self, cutoffs: Mapping[OrderStatus, datetime], *, limit: int) -> list[Order]:
        """Orders whose status (or last re-drive) is older than that status's cutoff."""
        last_touch = func.coalesce(t.orders.c.redriven_at, t.orders.c.status_changed_at)
        when = or_(*(and_(t.orders.c.status == status, last_touch < cutoff) for status, cutoff in cutoffs.items()))
        query = select(Order).where(when).order_by(t.orders.c.status_changed_at).limit(limit)
        if self.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=t.orders)
        return list(self.session.scalars(query))


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, job: PrintJob) -> None:
        self.session.add(job)

    def for_order(self, order_id: str) -> list[PrintJob]:
        return list(self.session.scalars(select(PrintJob).where(t.print_jobs.c.order_id == order_id)
                                         .order_by(t.print_jobs.c.created_at, t.print_jobs.c.id)))


class CustomerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, customer: Customer) -> None:
        self.session.add(customer)

    def by_email(self, email: str) -> Customer | None:
        digest = keyring().blind_index(email)
        return self.session.scalars(select(Customer).where(t.customers.c.email_hash == digest)
                                    .order_by(t.customers.c.created_at)).first()


class CatalogueReader:
    """Variants with their current template version, prohibited words and pricing rules."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def variants(self, skus: Iterable[str]) -> dict[str, Variant]:
        v, p, tpl, tv = t.variants, t.products, t.templates, t.template_versions
        rows = self.session.execute(
            select(v.c.sku, v.c.price_cents, p.c.id, p.c.product_type, p.c.print_method, tv.c.template_key,
                   tv.c.version, tv.c.spec)
            .join(p, p.c.id == v.c.product_id)
            .join(tpl, tpl.c.key == p.c.template_key)
            .join(tv, and_(tv.c.template_key == tpl.c.key, tv.c.version == tpl.c.current_version))
            .where(v.c.sku.in_(list(skus)), v.c.active, p.c.active))
        return {r.sku: Variant(sku=r.sku, product_id=r.id, product_type=r.product_type,
                               print_method=r.print_method, price_cents=r.price_cents,
                               template=TemplateSpec.from_spec(r.template_key, r.version, r.spec))
                for r in rows}

    def max_artwork_pixels(self) -> int:
        """The largest upload any product accepts (for uploads that don't say which product)."""
        tv, tpl = t.template_versions, t.templates
        specs = self.session.scalars(select(tv.c.spec).join(tpl, and_(tpl.c.key == tv.c.template_key,
                                                                      tpl.c.current_version == tv.c.version)))
        return max((TemplateSpec.from_spec("", 0, spec).max_artwork_pixels for spec in specs), default=0)

    def prohibited_words(self) -> tuple[str, ...]:
        return tuple(self.session.scalars(select(t.prohibited_words.c.word).order_by(t.prohibited_words.c.word)))

    def _pricing(self) -> dict[str, Any]:
        value = self.session.scalar(select(t.settings.c.value).where(t.settings.c.key == "pricing"))
        return value or {"express_surcharge_cents": 0, "currency": "USD"}

    def shipping_surcharge(self, speed: ShippingSpeed) -> int:
        return int(self._pricing()["express_surcharge_cents"]) if speed == ShippingSpeed.EXPRESS else 0

    @property
    def currency(self) -> str:
        return str(self._pricing()["currency"])


class ArtworkRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, **row: Any) -> None:
        self.session.execute(insert(t.artworks).values(**row))

    def storage(self, artwork_id: str) -> tuple[str, str] | None:
        """(storage key, sha256) of an uploaded artwork."""
        row = self.session.execute(select(t.artworks.c.storage_key, t.artworks.c.sha256)
                                   .where(t.artworks.c.id == artwork_id)).first()
        return None if row is None else (row.storage_key, row.sha256)

    def infos(self, ids: Iterable[str]) -> dict[str, ArtworkInfo]:
        a = t.artworks
        rows = self.session.execute(select(a.c.id, a.c.width, a.c.height, a.c.sha256).where(a.c.id.in_(list(ids))))
        return {r.id: ArtworkInfo(id=r.id, width=r.width, height=r.height, sha256=r.sha256) for r in rows}


class StockRepository:
    """Blank stock per partner and SKU; reservations are conditional updates, so they cannot oversell."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def _free(self):
        return t.partner_stock.c.on_hand - t.partner_stock.c.reserved

    def available(self, skus: Iterable[str]) -> dict[str, int]:
        """Per SKU, the most units one active partner could still reserve."""
        s, p = t.partner_stock, t.partners
        rows = self.session.execute(select(s.c.sku, func.max(self._free())).join(p, p.c.id == s.c.partner_id)
                                    .where(s.c.sku.in_(list(skus)), p.c.active).group_by(s.c.sku))
        return {sku: int(free or 0) for sku, free in rows}

    def reserve(self, *, sku: str, quantity: int, order_id: str, line_id: str, at: datetime) -> str | None:
        """Reserve at the active partner with the most free stock; None when nobody has enough.

        The UPDATE re-checks `on_hand - reserved >= quantity` under the row lock it takes (PostgreSQL
        re-evaluates it after waiting for a concurrent checkout), so two checkouts never share a unit.
        """
        s, p = t.partner_stock, t.partners
        candidates = self.session.scalars(
            select(s.c.partner_id).join(p, p.c.id == s.c.partner_id)
            .where(s.c.sku == sku, p.c.active, self._free() >= quantity)
            .order_by(self._free().desc(), s.c.partner_id)).all()
        for partner_id in candidates:
            taken = self.session.execute(
                update(s).where(s.c.partner_id == partner_id, s.c.sku == sku, self._free() >= quantity)
                .values(reserved=s.c.reserved + quantity)).rowcount
            if taken == 1:
                self.session.execute(insert(t.stock_reservations).values(
                    id="res_" + line_id.split("_", 1)[-1], order_id=order_id, line_id=line_id,
                    partner_id=partner_id, sku=sku, quantity=quantity, state="held", created_at=at))
                return partner_id
        return None


class IdempotencyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, key: str) -> tuple[str, dict[str, Any]] | None:
        row = self.session.execute(select(t.idempotency_keys.c.request_hash, t.idempotency_keys.c.response)
                                   .where(t.idempotency_keys.c.key == key)).first()
        return None if row is None else (row.request_hash, row.response)

    def put(self, key: str, request_hash: str, response: dict[str, Any], at: datetime) -> None:
        self.session.execute(insert(t.idempotency_keys).values(key=key, request_hash=request_hash,
                                                               response=response, created_at=at))


class RejectionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, *, channel: str, codes: list[str], at: datetime) -> None:
        self.session.execute(insert(t.intake_rejections),
                             [{"at": at, "channel": channel, "code": code} for code in sorted(set(codes))])


class TimelineRepository:
    """Events that are not carried by an aggregate; written with the aggregates' events at commit."""

    def __init__(self) -> None:
        self.pending: list[DomainEvent] = []

    def add(self, event: DomainEvent) -> None:
        self.pending.append(event)


def event_row(event: DomainEvent) -> dict[str, Any]:
    return {"order_id": event.order_id, "at": event.at, "type": str(event.type), "source": event.source,
            "payload": event.payload(), "dedupe_key": event.dedupe_key}


class InboxRepository:
    """Webhook deliveries, unique on (source, event id): a retried delivery is recognised, not re-applied."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def receive(self, *, source: str, event_id: str, topic: str, body: str, at: datetime) -> bool:
        """Record a verified delivery; False when this (source, event id) was seen before."""
        row = {"source": source, "event_id": event_id, "topic": topic, "body": body, "received_at": at,
               "status": "received"}
        return insert_ignoring_duplicates(self.session, t.webhook_inbox, [row], "source", "event_id") == 1


class QueueSampleRepository:
    """Broker queue depth over time, written by the scheduler so the dashboard reads only the database."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.session.execute(insert(t.queue_samples), rows)

    def prune(self, before: datetime) -> None:
        self.session.execute(t.queue_samples.delete().where(t.queue_samples.c.at < before))


class TemplateRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_version(self, *, key: str, spec: dict[str, Any], author: str, note: str, at: datetime) -> int:
        return add_template_version(self.session, key=key, spec=spec, author=author, note=note, at=at)

    def spec(self, key: str, version: int) -> dict[str, Any] | None:
        """A pinned template version's stored document (old versions stay renderable)."""
        tv = t.template_versions
        return self.session.scalar(select(tv.c.spec).where(tv.c.template_key == key, tv.c.version == version))


class AssetRepository:
    """Rendered print files by content key: one row per distinct design, reused by every order that has it."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.session.execute(select(t.assets).where(t.assets.c.id == key)).first()
        return None if row is None else dict(row._mapping)

    def add(self, row: dict[str, Any]) -> bool:
        """False when another worker stored the same design first (same key, same bytes)."""
        return insert_ignoring_duplicates(self.session, t.assets, [row], "id") == 1

    def record_retrieval(self, *, asset_id: str, file: str, ms: float, size: int, at: datetime) -> None:
        """One served download of a stored file: the source guide's retrieval-latency metric reads these."""
        self.session.execute(insert(t.asset_retrievals).values(at=at, asset_id=asset_id, file=file, ms=ms,
                                                               bytes=size))

    def count_hit(self, key: str) -> None:
        self.session.execute(update(t.assets).where(t.assets.c.id == key).values(hits=t.assets.c.hits + 1))


class AlertRepository:
    """Open alerts, one per (kind, key) until cleared: raising again updates it instead of duplicating."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def raise_(self, *, kind: str, key: str, severity: str, message: str, at: datetime,
               order_id: str | None = None) -> None:
        a = t.alerts
        updated = self.session.execute(update(a).where(a.c.kind == kind, a.c.key == key, a.c.cleared_at.is_(None))
                                       .values(message=message, severity=severity, updated_at=at)).rowcount
        if not updated:
            self.session.execute(insert(a).values(kind=kind, key=key, order_id=order_id, severity=severity,
                                                  message=message, opened_at=at, updated_at=at))


class VariantReader:
    def __init__(self, session: Session) -> None:
        self.session = session

    def describe(self, sku: str) -> dict[str, Any] | None:
        """Product type, print method and colour of a SKU, for the renderer."""
        v, p = t.variants, t.products
        row = self.session.execute(select(p.c.product_type, p.c.print_method, v.c.colour)
                                   .join(p, p.c.id == v.c.product_id).where(v.c.sku == sku)).first()
        return None if row is None else {"product_type": row.product_type, "print_method": str(row.print_method),
                                         "colour": row.colour}


def add_template_version(session: Session, *, key: str, spec: dict[str, Any], author: str, note: str,
                         at: datetime) -> int:
    """Save an edited template as a new version and make it current; existing orders keep their pinned one.

    The current-version row is locked first, so two editors saving at once get versions n+1 and n+2.
    """
    current = session.execute(select(t.templates.c.current_version).where(t.templates.c.key == key)
                              .with_for_update()).scalar_one()
    latest = session.scalar(select(func.max(t.template_versions.c.version))
                            .where(t.template_versions.c.template_key == key)) or current
    version = latest + 1
    session.execute(insert(t.template_versions).values(template_key=key, version=version, spec=spec,
                                                       created_at=at, created_by=author, note=note))
    session.execute(update(t.templates).where(t.templates.c.key == key).values(current_version=version))
    return version
