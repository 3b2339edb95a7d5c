"""Repositories: how the services load and save aggregates and the few records around them."""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from sqlalchemy import and_, bindparam, event, func, insert, inspect, literal, or_, select, true, update
from sqlalchemy.orm import Session, make_transient_to_detached

from core.catalogue import ArtworkInfo, TemplateSpec, Variant
from core.errors import Conflict
from core.events import DomainEvent
from core.model import Batch, Customer, Inspection, Order, PrintJob, Shipment
from core.production import PartnerView
from core.states import BatchStatus, InspectionStatus, JobStatus, OrderStatus, ShippingSpeed
from db import tables as t
from db.types import keyring

_INSERT_IGNORING: dict[tuple, Any] = {}
_INSERT: dict[Any, Any] = {}


def insert_ignoring_duplicates(session: Session, table, rows: list[dict[str, Any]], *keys: str) -> int:
    """INSERT … ON CONFLICT (keys) DO NOTHING on either database: duplicates are absorbed, never raised.

    Returns how many rows were new.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    statement = _INSERT_IGNORING.get((dialect, table, keys))
    if statement is None:  # built once: a new statement object costs its construction and cache key every time
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        statement = _INSERT_IGNORING[(dialect, table, keys)] = (
            dialect_insert(table).on_conflict_do_nothing(index_elements=list(keys)))
    if len(rows) == 1:
        return session.execute(statement, rows[0]).rowcount
    session.execute(statement, rows)
    return -1


_COLUMNS: dict[type, tuple[tuple[str, str], ...]] = {}


def _columns(cls) -> tuple[tuple[str, str], ...]:
    """(attribute, column) pairs of a mapped class, read from its mapper once."""
    found = _COLUMNS.get(cls)
    if found is None:
        found = _COLUMNS[cls] = tuple((prop.key, prop.columns[0].key) for prop in inspect(cls).column_attrs)
    return found


def _rows(objects: list) -> list[dict[str, Any]]:
    pairs = _columns(type(objects[0]))
    rows = []
    for obj in objects:
        state = vars(obj)
        rows.append({column: state[attr] for attr, column in pairs if attr in state})
    return rows


_COMBINED: OrderedDict[tuple, Any] = OrderedDict()
_COMBINED_LOCK = threading.Lock()
COMBINED_MAX_ROWS = 24  # a larger order (many lines or units) is written table by table, as on SQLite


def insert_combined(session: Session, parts: list[tuple[Any, list[dict[str, Any]]]]) -> bool:
    """On PostgreSQL, several tables' new rows in one statement (`WITH a AS (INSERT …), b AS (INSERT …) INSERT …`):
    each statement of a checkout cost ~0.3–0.5 ms of API CPU in SQLAlchemy and the driver, far more than its rows.
    Parents come first in `parts`; foreign keys are checked at the end of the statement, so children may follow.
    Returns False (nothing written) when this database or this shape is not for it: the caller inserts per table.

    The statement is built once per shape (tables, columns, row counts) with a bound parameter per value, each of
    its column's type (encryption, JSON, enums as for any insert), so SQLAlchemy reuses it and its compiled form.
    """
    if session.get_bind().dialect.name != "postgresql":
        return False
    shape, params = [], {}
    for i, (table, rows) in enumerate(parts):
        if not rows or any(tuple(row) != tuple(rows[0]) for row in rows):
            return False
        columns = tuple(rows[0])
        if any(column.default is not None and column.key not in columns for column in table.c):
            return False  # a Python-side default would be a parameter of its own inside a CTE: not for this
        shape.append((table, columns, len(rows)))
        for r, row in enumerate(rows):
            for c, column in enumerate(columns):
                params[f"v{i}_{r}_{c}"] = row[column]
    if sum(n for _, _, n in shape) > COMBINED_MAX_ROWS:
        return False
    key = tuple(shape)
    with _COMBINED_LOCK:
        statement = _COMBINED.get(key)
        if statement is not None:
            _COMBINED.move_to_end(key)
    if statement is None:  # one single-row INSERT per row: SQLAlchemy caches no multi-row VALUES statement
        inserts = [insert(table).values({column: bindparam(f"v{i}_{r}_{c}", type_=table.c[column].type)
                                         for c, column in enumerate(columns)})
                   for i, (table, columns, n) in enumerate(shape) for r in range(n)]
        statement = inserts[-1].add_cte(*[part.cte(f"new_{i}") for i, part in enumerate(inserts[:-1])])
        with _COMBINED_LOCK:
            _COMBINED[key] = statement
            while len(_COMBINED) > 64:
                _COMBINED.popitem(last=False)
    session.execute(statement, params)
    return True


def _attach(session: Session, objects: list) -> None:
    """Written rows' objects into the session as if loaded: all detached first, so that adding one never cascades
    another that is still transient into a pending INSERT."""
    for obj in objects:
        make_transient_to_detached(obj)
    for obj in objects:
        session.add(obj)


def insert_new(session: Session, table, objects: list, *, attach: bool = True) -> None:
    """Write new mapped objects with one plain (multi-row) INSERT, then attach them to the session as if just
    loaded (`attach`), so later changes to them are flushed as UPDATEs and `session.get` finds them.

    The ORM's flush of a new order (customer, order, lines, jobs) cost ~2 ms of CPU per checkout, intake's largest
    single cost; the same rows through Core cost a fraction of it. Every column attribute must be set on the
    objects (foreign keys included: no relationship fills them in here), or the column's default applies.
    """
    if not objects:
        return
    statement = _INSERT.get(table)
    if statement is None:
        statement = _INSERT[table] = insert(table)
    session.execute(statement, _rows(objects))
    if attach:
        _attach(session, objects)


def get_aggregate(session: Session, cls, table, key: str, *, lock: bool = False):
    """One aggregate by id; with `lock`, its row alone is locked (FOR UPDATE OF it) until the transaction ends,
    and reloaded so the caller sees the committed state it now holds."""
    if not lock:
        return session.get(cls, key)
    query = select(cls).where(table.c.id == key).with_for_update(of=table)
    return session.scalars(query.execution_options(populate_existing=True)).first()


class OrderRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, order: Order) -> None:
        self.session.add(order)

    def insert_new(self, order: Order, jobs: Iterable[PrintJob], *, new_customer: bool = False) -> None:
        """A checkout's new order, its lines and print jobs (and with `new_customer` its customer, not yet stored)
        in plain INSERTs — one statement on PostgreSQL (`insert_combined`), one per table elsewhere; the customer,
        order and lines are attached to the unit of work as loaded, so its `OrderReceived` reaches the timeline at
        commit and a later change (a line re-routed) is flushed as an UPDATE. The jobs are not attached: nothing
        changes them in the checkout's transaction."""
        order.customer_id = order.customer.id
        for line in order.lines:
            line.order_id = order.id
        jobs = list(jobs)
        customers = []
        if new_customer:
            CustomerRepository.prepare_new(order.customer)
            customers = [order.customer]
        parts = [(table, _rows(objects)) for table, objects in ((t.customers, customers), (t.orders, [order]),
                                                                (t.order_lines, order.lines), (t.print_jobs, jobs))
                 if objects]
        if not insert_combined(self.session, parts):
            for table, rows in parts:
                self.session.execute(insert(table), rows)
        _attach(self.session, [*customers, *order.lines, order])

    def get(self, order_id: str, *, lock: bool = False) -> Order | None:
        return get_aggregate(self.session, Order, t.orders, order_id, lock=lock)

    def by_external(self, channel: str, external_id: str) -> Order | None:
        return self.session.scalars(select(Order).where(
            t.orders.c.channel == channel, t.orders.c.external_id == external_id)).first()

    def summary_by_external(self, channel: str, external_id: str) -> dict[str, Any] | None:
        """id, number, status, total_cents and currency of the channel's order `external_id`, without loading the
        aggregate (checkout asks this of every order, and almost always gets None)."""
        o = t.orders
        row = self.session.execute(select(o.c.id, o.c.number, o.c.status, o.c.total_cents, o.c.currency)
                                   .where(o.c.channel == channel, o.c.external_id == external_id)).first()
        return None if row is None else {"id": row.id, "number": row.number, "status": str(row.status),
                                         "total_cents": row.total_cents, "currency": row.currency}

    def checkout_reads(self, key: str | None, channel: str, external_id: str, *, customer_email: str | None = None,
                       skus: list[str] | None = None) -> tuple[tuple[str, dict[str, Any]] | None,
                                                               dict[str, Any] | None, str | None,
                                                               dict[str, list[tuple[str, int]]]]:
        """What a checkout reads before it pays, in one statement: the Idempotency-Key's (request hash, response)
        and the summary of the channel's order `external_id` (each None when absent; no key, no key's row), the id
        of the first customer with `customer_email` (blind index) when one is given, and
        `StockRepository.offers(skus)` when SKUs are given (joined on, one row per offer). One row always comes
        back (outer joins from a one-row table): each statement of a checkout cost ~0.3–0.5 ms of API CPU, more
        than these reads' rows."""
        query = _checkout_read(customer_email is not None, bool(skus))
        params: dict[str, Any] = {"key": key, "channel": channel, "external_id": external_id}
        if customer_email is not None:
            params["email_hash"] = keyring().blind_index(customer_email)
        if skus:
            params["skus"] = list(skus)
        rows = self.session.execute(query, params).all()
        row = rows[0]
        seen = None if row.request_hash is None else (row.request_hash, row.response)
        order = None if row.id is None else {"id": row.id, "number": row.number, "status": str(row.status),
                                             "total_cents": row.total_cents, "currency": row.currency}
        found: dict[str, list[tuple[str, int]]] = {}
        if skus:
            for offer in rows:
                if offer.sku is not None:
                    found.setdefault(offer.sku, []).append((offer.partner_id, int(offer.free or 0)))
        return seen, order, row.customer_id, found

    def stuck(self, cutoffs: Mapping[OrderStatus, datetime], *, limit: int) -> list[Order]:
        """Orders whose status (or last re-drive) is older than that status's cutoff."""
        last_touch = func.coalesce(t.orders.c.redriven_at, t.orders.c.status_changed_at)
        when = or_(*(and_(t.orders.c.status == status, last_touch < cutoff) for status, cutoff in cutoffs.items()))
        query = select(Order).where(when).order_by(t.orders.c.status_changed_at).limit(limit)
        if self.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=t.orders)
        return list(self.session.scalars(query))


@functools.cache
def _checkout_read(with_customer: bool, with_offers: bool):
    """`OrderRepository.checkout_reads`'s statement, built once per shape with bound parameters: building it
    anew (three subqueries, their column collections and its cache key) cost as much API CPU as running it."""
    k, o, c, s, p = t.idempotency_keys, t.orders, t.customers, t.partner_stock, t.partners
    one = select(literal(1).label("one")).subquery()
    customer = (select(c.c.id).where(c.c.email_hash == bindparam("email_hash")).order_by(c.c.created_at).limit(1)
                .scalar_subquery() if with_customer else literal(None))
    joined = (one.outerjoin(k, k.c.key == bindparam("key"))
              .outerjoin(o, and_(o.c.channel == bindparam("channel"), o.c.external_id == bindparam("external_id"))))
    columns = [k.c.request_hash, k.c.response, o.c.id, o.c.number, o.c.status, o.c.total_cents, o.c.currency,
               customer.label("customer_id")]
    if with_offers:
        offers = (select(s.c.sku, s.c.partner_id, (s.c.on_hand - s.c.reserved).label("free"))
                  .join(p, p.c.id == s.c.partner_id).where(s.c.sku.in_(bindparam("skus", expanding=True)), p.c.active)
                  .subquery("offers"))
        return (select(*columns, offers.c.sku, offers.c.partner_id, offers.c.free)
                .select_from(joined.outerjoin(offers, true()))
                .order_by(offers.c.sku, offers.c.free.desc(), offers.c.partner_id))
    return select(*columns).select_from(joined)


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, job: PrintJob) -> None:
        self.session.add(job)

    def for_order(self, order_id: str) -> list[PrintJob]:
        return list(self.session.scalars(select(PrintJob).where(t.print_jobs.c.order_id == order_id)
                                         .order_by(t.print_jobs.c.created_at, t.print_jobs.c.id)))

    def get(self, job_id: str, *, lock: bool = False) -> PrintJob | None:
        return get_aggregate(self.session, PrintJob, t.print_jobs, job_id, lock=lock)

    def by_external(self, partner_id: str, job_id: str) -> PrintJob | None:
        """The job a partner reports on: its external id is our job id, and it must be that partner's."""
        job = self.get(job_id, lock=True)
        return job if job is not None and job.partner_id == partner_id else None

    def routed_unbatched(self) -> list[PrintJob]:
        j = t.print_jobs
        return list(self.session.scalars(select(PrintJob).where(j.c.status == JobStatus.PENDING,
                                                                j.c.partner_id.is_not(None))
                                         .order_by(j.c.priority.desc(), j.c.created_at)))

    def uninspected(self, *, before: datetime, limit: int) -> list[PrintJob]:
        """Printed jobs with no inspection, untouched (by the print report or the last re-drive) since `before`."""
        j, i = t.print_jobs, t.inspections
        last = func.coalesce(j.c.redriven_at, j.c.status_changed_at)
        query = (select(PrintJob).where(j.c.status == JobStatus.PRINTED, last < before,
                                        ~select(i.c.id).where(i.c.job_id == j.c.id).exists())
                 .order_by(last).limit(limit))
        if self.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(of=j, skip_locked=True)
        return list(self.session.scalars(query))

    def in_batch(self, batch_id: str) -> list[PrintJob]:
        j = t.print_jobs
        return list(self.session.scalars(select(PrintJob).where(j.c.batch_id == batch_id)
                                         .order_by(j.c.priority.desc(), j.c.created_at)))

    def sku(self, job_id: str) -> str:
        j, line = t.print_jobs, t.order_lines
        return self.session.scalar(select(line.c.sku).join(j, j.c.line_id == line.c.id).where(j.c.id == job_id))

    def failed_partners(self, order_id: str, line_id: str, *, after: int = 2) -> list[str]:
        """Partners where this line already failed QA `after` times: a reprint goes elsewhere."""
        j = t.print_jobs
        rows = self.session.execute(select(j.c.partner_id, func.count()).where(
            j.c.order_id == order_id, j.c.line_id == line_id, j.c.status == JobStatus.QA_FAILED)
            .group_by(j.c.partner_id)).all()
        return [partner for partner, failures in rows if partner and failures >= after]


class CustomerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, customer: Customer) -> None:
        self.session.add(customer)

    def insert_new(self, customer: Customer) -> None:
        """A new customer in one plain INSERT, attached to the unit of work as loaded (see `insert_new`)."""
        self.prepare_new(customer)
        insert_new(self.session, t.customers, [customer])

    @staticmethod
    def prepare_new(customer: Customer) -> None:
        """What a customer's row needs before a plain INSERT (the ORM's before_insert sets the blind index too)."""
        customer._email_hash = keyring().blind_index(customer.email)
        customer.erased_at = None

    def id_by_email(self, email: str) -> str | None:
        """The id of the first customer with this e-mail (blind index), without loading the aggregate: a checkout
        by a new customer, the common case, needs nothing more."""
        c = t.customers
        return self.session.scalar(select(c.c.id).where(c.c.email_hash == keyring().blind_index(email))
                                   .order_by(c.c.created_at).limit(1))

    def get(self, customer_id: str) -> Customer | None:
        return self.session.get(Customer, customer_id)

    def by_email(self, email: str) -> Customer | None:
        digest = keyring().blind_index(email)
        return self.session.scalars(select(Customer).where(t.customers.c.email_hash == digest)
                                    .order_by(t.customers.c.created_at)).first()


CATALOGUE_TTL_S = 5.0  # how long a process keeps its copy of the catalogue; admin edits reach intake within it


@dataclass(frozen=True, slots=True)
class _CatalogueCopy:
    """What checkout reads on every order and staff change rarely: active variants with their current template
    version, the prohibited words, the pricing settings row."""

    loaded_at: float
    variants: dict[str, Variant]
    prohibited_words: tuple[str, ...]
    pricing: dict[str, Any]


_catalogues: weakref.WeakKeyDictionary[Any, _CatalogueCopy] = weakref.WeakKeyDictionary()
_artworks: weakref.WeakKeyDictionary[Any, OrderedDict[str, ArtworkInfo]] = weakref.WeakKeyDictionary()
_ARTWORKS_KEPT = 10_000
_cache_lock = threading.Lock()


def clear_catalogue_cache() -> None:
    """Forget this process's copies of the catalogue: the next read loads it from the database.

    Staff edits made through the repositories call this themselves (at once and after their commit); a test or
    tool that changes variants, templates, words or pricing with plain SQL calls it before reading again.
    """
    with _cache_lock:
        _catalogues.clear()


def catalogue_changed(session: Session) -> None:
    """A staff edit to the catalogue is in this transaction: drop the cached copy now and once it commits, so
    this process's next checkout sees it (other processes see it within CATALOGUE_TTL_S)."""
    clear_catalogue_cache()
    if not event.contains(session, "after_commit", _cleared_after_commit):
        event.listen(session, "after_commit", _cleared_after_commit)


def _cleared_after_commit(_session) -> None:
    clear_catalogue_cache()


class CatalogueReader:
    """Variants with their current template version, prohibited words and pricing rules.

    Read through a per-process copy, reloaded when older than CATALOGUE_TTL_S: checkout reads all three on every
    order and they change only when staff edit them (rarely), so a checkout does no round trip for them.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def _copy(self) -> _CatalogueCopy:
        bind = self.session.get_bind()
        now = time.monotonic()
        copy = _catalogues.get(bind)
        if copy is None or now - copy.loaded_at > CATALOGUE_TTL_S:
            copy = _CatalogueCopy(loaded_at=now, variants=self._load_variants(), pricing=self._load_pricing(),
                                  prohibited_words=tuple(self.session.scalars(
                                      select(t.prohibited_words.c.word).order_by(t.prohibited_words.c.word))))
            with _cache_lock:
                _catalogues[bind] = copy
        return copy

    def _load_variants(self) -> dict[str, Variant]:
        v, p, tpl, tv = t.variants, t.products, t.templates, t.template_versions
        rows = self.session.execute(
            select(v.c.sku, v.c.price_cents, p.c.id, p.c.product_type, p.c.print_method, tv.c.template_key,
                   tv.c.version, tv.c.spec)
            .join(p, p.c.id == v.c.product_id)
            .join(tpl, tpl.c.key == p.c.template_key)
            .join(tv, and_(tv.c.template_key == tpl.c.key, tv.c.version == tpl.c.current_version))
            .where(v.c.active, p.c.active))
        return {r.sku: Variant(sku=r.sku, product_id=r.id, product_type=r.product_type,
                               print_method=r.print_method, price_cents=r.price_cents,
                               template=TemplateSpec.from_spec(r.template_key, r.version, r.spec))
                for r in rows}

    def _load_pricing(self) -> dict[str, Any]:
        value = self.session.scalar(select(t.settings.c.value).where(t.settings.c.key == "pricing"))
        return value or {"express_surcharge_cents": 0, "currency": "USD"}

    def variants(self, skus: Iterable[str]) -> dict[str, Variant]:
        """The active variants among `skus` (an unknown or inactive SKU is simply absent)."""
        every = self._copy().variants
        return {sku: every[sku] for sku in skus if sku in every}

    def max_artwork_pixels(self) -> int:
        """The largest upload any product accepts (for uploads that don't say which product)."""
        tv, tpl = t.template_versions, t.templates
        specs = self.session.scalars(select(tv.c.spec).join(tpl, and_(tpl.c.key == tv.c.template_key,
                                                                      tpl.c.current_version == tv.c.version)))
        return max((TemplateSpec.from_spec("", 0, spec).max_artwork_pixels for spec in specs), default=0)

    def prohibited_words(self) -> tuple[str, ...]:
        return self._copy().prohibited_words

    def _pricing(self) -> dict[str, Any]:
        return self._copy().pricing

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
        """Size and hash of uploaded artworks (absent when unknown). An artwork row never changes once stored,
        so the ones found are remembered per process and a repeat checkout of a design reads nothing."""
        wanted = list(dict.fromkeys(ids))
        bind = self.session.get_bind()
        with _cache_lock:
            known = _artworks.setdefault(bind, OrderedDict())
            found = {i: known[i] for i in wanted if i in known}
        missing = [i for i in wanted if i not in found]
        if missing:
            a = t.artworks
            rows = self.session.execute(select(a.c.id, a.c.width, a.c.height, a.c.sha256)
                                        .where(a.c.id.in_(missing)))
            loaded = {r.id: ArtworkInfo(id=r.id, width=r.width, height=r.height, sha256=r.sha256) for r in rows}
            found.update(loaded)
            with _cache_lock:
                known.update(loaded)
                while len(known) > _ARTWORKS_KEPT:
                    known.popitem(last=False)
        return found


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

    def offers(self, skus: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
        """Per SKU, the active partners stocking it with their free units, most free first (ties by partner id):
        one read that gives checkout both what it may sell and where it will try to reserve."""
        s, p = t.partner_stock, t.partners
        rows = self.session.execute(select(s.c.sku, s.c.partner_id, self._free().label("free"))
                                    .join(p, p.c.id == s.c.partner_id)
                                    .where(s.c.sku.in_(list(skus)), p.c.active)
                                    .order_by(s.c.sku, self._free().desc(), s.c.partner_id))
        found: dict[str, list[tuple[str, int]]] = {}
        for sku, partner_id, free in rows:
            found.setdefault(sku, []).append((partner_id, int(free or 0)))
        return found

    def reserve_lines(self, lines: list[tuple[str, str, int]], *, order_id: str, at: datetime,
                      prefer: Mapping[str, list[str]] | None = None) -> dict[str, str | None]:
        """Reserve each (line id, SKU, quantity) at an active partner; per line the partner, or None when nobody
        has enough.

        Each reservation is one conditional UPDATE: it re-checks `on_hand - reserved >= quantity` under the row
        lock it takes (PostgreSQL re-evaluates it after waiting for a concurrent checkout), so two checkouts never
        share a unit. The partners in `prefer` (most free first, as `offers` read them) are tried first; when they
        ran out meanwhile, the active partners with the most free stock now. Lines are taken in SKU order so two
        checkouts lock the same rows in the same order; the reservation rows go in one INSERT.
        """
        s, p = t.partner_stock, t.partners
        taken: dict[str, str | None] = {}
        held: set[str] = set()  # lines whose reservation row went in with their UPDATE
        together = self.session.get_bind().dialect.name == "postgresql"
        for line_id, sku, quantity in sorted(lines, key=lambda line: (line[1], line[0])):
            tried = set()
            taken[line_id] = None
            for partner_id in (prefer or {}).get(sku, []):
                tried.add(partner_id)
                if together:  # UPDATE and the reservation's INSERT in one statement
                    if self._take_and_hold(partner_id, sku, quantity, line_id=line_id, order_id=order_id, at=at):
                        taken[line_id] = partner_id
                        held.add(line_id)
                        break
                elif self._take(partner_id, sku, quantity):
                    taken[line_id] = partner_id
                    break
            if taken[line_id] is not None:
                continue
            candidates = self.session.scalars(
                select(s.c.partner_id).join(p, p.c.id == s.c.partner_id)
                .where(s.c.sku == sku, p.c.active, self._free() >= quantity)
                .order_by(self._free().desc(), s.c.partner_id)).all()
            for partner_id in candidates:
                if partner_id not in tried and self._take(partner_id, sku, quantity):
                    taken[line_id] = partner_id
                    break
        rows = [{"id": "res_" + line_id.split("_", 1)[-1], "order_id": order_id, "line_id": line_id,
                 "partner_id": taken[line_id], "sku": sku, "quantity": quantity, "state": "held", "created_at": at}
                for line_id, sku, quantity in lines if taken[line_id] is not None and line_id not in held]
        if rows:
            self.session.execute(insert(t.stock_reservations), rows)
        return taken

    def _take_and_hold(self, partner_id: str, sku: str, quantity: int, *, line_id: str, order_id: str,
                       at: datetime) -> bool:
        """PostgreSQL: `_take` and the line's reservation row in one statement (`WITH taken AS (UPDATE … RETURNING)
        INSERT … SELECT FROM taken`): the row goes in only when the UPDATE took the units. A checkout's statements
        each cost ~0.3–0.5 ms of API CPU; this is one fewer for every order whose likely partner still has stock."""
        global _TAKE_AND_HOLD
        if _TAKE_AND_HOLD is None:
            s, r = t.partner_stock, t.stock_reservations
            units = bindparam("take_quantity", type_=r.c.quantity.type)
            took = (update(s).where(s.c.partner_id == bindparam("take_partner", type_=s.c.partner_id.type),
                                    s.c.sku == bindparam("take_sku", type_=s.c.sku.type), self._free() >= units)
                    .values(reserved=s.c.reserved + units).returning(s.c.partner_id, s.c.sku).cte("taken"))
            _TAKE_AND_HOLD = insert(r).from_select(
                ["id", "order_id", "line_id", "partner_id", "sku", "quantity", "state", "created_at"],
                select(bindparam("hold_id", type_=r.c.id.type), bindparam("hold_order", type_=r.c.order_id.type),
                       bindparam("hold_line", type_=r.c.line_id.type), took.c.partner_id, took.c.sku, units,
                       literal("held"), bindparam("hold_at", type_=r.c.created_at.type)).select_from(took))
        return self.session.execute(_TAKE_AND_HOLD, {
            "take_partner": partner_id, "take_sku": sku, "take_quantity": quantity,
            "hold_id": "res_" + line_id.split("_", 1)[-1], "hold_order": order_id, "hold_line": line_id,
            "hold_at": at}).rowcount == 1

    def _take(self, partner_id: str, sku: str, quantity: int) -> bool:
        s = t.partner_stock
        return self.session.execute(
            update(s).where(s.c.partner_id == partner_id, s.c.sku == sku, self._free() >= quantity)
            .values(reserved=s.c.reserved + quantity)).rowcount == 1

    def sync(self, partner_id: str, on_hand: Mapping[str, int], *, at: datetime) -> None:
        """Take the partner's count of blanks as truth for on-hand; our reservations stay as they are."""
        s = t.partner_stock
        for sku, count in on_hand.items():
            self.session.execute(update(s).where(s.c.partner_id == partner_id, s.c.sku == sku)
                                 .values(on_hand=count, synced_at=at))

    def move(self, *, line_id: str, to_partner: str, quantity: int, at: datetime) -> bool:
        """Move a line's reservation to another partner (routing chose it); False if that partner ran out."""
        s, r = t.partner_stock, t.stock_reservations
        held = self.session.execute(select(r.c.id, r.c.partner_id, r.c.sku, r.c.quantity)
                                    .where(r.c.line_id == line_id, r.c.state == "held")).first()
        sku = held.sku if held else self.session.scalar(select(t.order_lines.c.sku)
                                                        .where(t.order_lines.c.id == line_id))
        taken = self.session.execute(
            update(s).where(s.c.partner_id == to_partner, s.c.sku == sku, self._free() >= quantity)
            .values(reserved=s.c.reserved + quantity)).rowcount
        if taken != 1:
            return False
        if held is not None:
            self.session.execute(update(s).where(s.c.partner_id == held.partner_id, s.c.sku == sku)
                                 .values(reserved=s.c.reserved - held.quantity))
            self.session.execute(update(r).where(r.c.id == held.id).values(partner_id=to_partner,
                                                                           quantity=quantity))
        return True

    def release(self, *, order_id: str, at: datetime) -> int:
        """Give a cancelled order's held blanks back to their partners; returns the units released.

        Each reservation is flipped from held to released before its units are returned, so running this
        twice (or concurrently) returns every unit once.
        """
        s, r = t.partner_stock, t.stock_reservations
        held = self.session.execute(select(r.c.id, r.c.partner_id, r.c.sku, r.c.quantity)
                                    .where(r.c.order_id == order_id, r.c.state == "held")).all()
        units = 0
        for row in held:
            if self.session.execute(update(r).where(r.c.id == row.id, r.c.state == "held")
                                    .values(state="released")).rowcount != 1:
                continue
            self.session.execute(update(s).where(s.c.partner_id == row.partner_id, s.c.sku == row.sku)
                                 .values(reserved=s.c.reserved - row.quantity))
            units += row.quantity
        return units


_TAKE_AND_HOLD = None  # StockRepository._take_and_hold's statement, built on first use


class IdempotencyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, key: str) -> tuple[str, dict[str, Any]] | None:
        row = self.session.execute(select(t.idempotency_keys.c.request_hash, t.idempotency_keys.c.response)
                                   .where(t.idempotency_keys.c.key == key)).first()
        return None if row is None else (row.request_hash, row.response)

    def put(self, key: str, request_hash: str, response: dict[str, Any], at: datetime) -> None:
        """Remember the response for `key`.

        Raises:
            Conflict: a concurrent request with the same key stored its response first (this transaction stays
                usable; the caller rolls it back and answers with the first one).
        """
        row = {"key": key, "request_hash": request_hash, "response": response, "created_at": at}
        if insert_ignoring_duplicates(self.session, t.idempotency_keys, [row], "key") != 1:
            raise Conflict("This Idempotency-Key was stored by a concurrent request.")


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

    def receive(self, *, source: str, event_id: str, topic: str, body: str, at: datetime) -> int | None:
        """Record a verified delivery; returns its inbox id, or None when (source, event id) was seen before."""
        row = {"source": source, "event_id": event_id, "topic": topic, "body": body, "received_at": at,
               "status": "received"}
        w = t.webhook_inbox
        if self.session.get_bind().dialect.name == "postgresql":  # one round trip: the new row's id, or nothing
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return self.session.scalar(pg_insert(w).values(**row)
                                       .on_conflict_do_nothing(index_elements=["source", "event_id"])
                                       .returning(w.c.id))
        if insert_ignoring_duplicates(self.session, w, [row], "source", "event_id") != 1:
            return None
        return self.session.scalar(select(w.c.id).where(w.c.source == source, w.c.event_id == event_id))

    def get(self, inbox_id: int, *, lock: bool = False) -> dict[str, Any] | None:
        query = select(t.webhook_inbox).where(t.webhook_inbox.c.id == inbox_id)
        row = self.session.execute(query.with_for_update() if lock else query).first()
        return None if row is None else dict(row._mapping)

    def stuck(self, *, before: datetime, kinds: tuple[str, ...], limit: int) -> list[tuple[int, str]]:
        """(id, source) of stored deliveries still unapplied since `before`, for the given source kinds."""
        w = t.webhook_inbox
        last = func.coalesce(w.c.redriven_at, w.c.received_at)
        query = (select(w.c.id, w.c.source).where(w.c.status == "received", last < before,
                                                  or_(*(w.c.source.like(f"{kind}:%") for kind in kinds)))
                 .order_by(w.c.id).limit(limit))
        return [(row.id, row.source) for row in self.session.execute(query)]

    def touch(self, inbox_id: int, *, at: datetime) -> None:
        self.session.execute(update(t.webhook_inbox).where(t.webhook_inbox.c.id == inbox_id).values(redriven_at=at))

    def mark(self, inbox_id: int, *, status: str, at: datetime, error: str | None = None) -> None:
        self.session.execute(update(t.webhook_inbox).where(t.webhook_inbox.c.id == inbox_id)
                             .values(status=status, processed_at=at, error=error))

    def failed(self, *, kinds: tuple[str, ...], statuses: tuple[str, ...], received_before: datetime,
               limit: int) -> list[dict[str, Any]]:
        """Deliveries from the given source kinds whose applying failed (`statuses`), or still `received`
        since before `received_before` (never applied): the replay console's list, without their bodies."""
        w = t.webhook_inbox
        columns = (w.c.id, w.c.source, w.c.event_id, w.c.topic, w.c.status, w.c.error, w.c.received_at,
                   w.c.processed_at, w.c.redriven_at)
        query = (select(*columns)
                 .where(or_(*(w.c.source.like(f"{kind}:%") for kind in kinds)),
                        or_(w.c.status.in_(statuses),
                            and_(w.c.status == "received", w.c.received_at < received_before)))
                 .order_by(w.c.id).limit(limit))
        return [dict(row._mapping) for row in self.session.execute(query)]

    def reopen(self, inbox_id: int, *, at: datetime) -> None:
        """Make a failed delivery applicable again (status `received`, error cleared, re-driven `at`)."""
        self.session.execute(update(t.webhook_inbox).where(t.webhook_inbox.c.id == inbox_id)
                             .values(status="received", error=None, processed_at=None, redriven_at=at))

    def sources(self, inbox_ids: Iterable[int]) -> dict[int, str]:
        """Each stored delivery's source ("partner:acme"), by inbox id."""
        ids = sorted(set(inbox_ids))
        if not ids:
            return {}
        w = t.webhook_inbox
        return {row.id: row.source for row in self.session.execute(select(w.c.id, w.c.source).where(w.c.id.in_(ids)))}


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

    def for_line(self, line_id: str) -> dict[str, Any] | None:
        asset_id = self.session.scalar(select(t.order_lines.c.asset_id).where(t.order_lines.c.id == line_id))
        return self.get(asset_id) if asset_id else None

    def record_retrieval(self, *, asset_id: str, file: str, ms: float, size: int, at: datetime) -> None:
        """One served download of a stored file: the source guide's retrieval-latency metric reads these."""
        self.session.execute(insert(t.asset_retrievals).values(at=at, asset_id=asset_id, file=file, ms=ms,
                                                               bytes=size))

    def count_hit(self, key: str) -> None:
        self.session.execute(update(t.assets).where(t.assets.c.id == key).values(hits=t.assets.c.hits + 1))


class AlertRepository:
    """Open alerts, one per (kind, key) until cleared: raising again updates it instead of duplicating.

    Operational alerts (monitors) clear themselves when the condition ends; exception-inbox alerts (address,
    carrier, notification, change_request) are cleared when support resolves them with an action.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def raise_(self, *, kind: str, key: str, severity: str, message: str, at: datetime,
               order_id: str | None = None, details: dict[str, Any] | None = None) -> bool:
        """Open the alert, or refresh the open one. Returns True when a new alert was opened."""
        a = t.alerts
        values: dict[str, Any] = {"message": message, "severity": severity, "updated_at": at}
        if details is not None:
            values["details"] = details
        updated = self.session.execute(update(a).where(a.c.kind == kind, a.c.key == key, a.c.cleared_at.is_(None))
                                       .values(**values)).rowcount
        if not updated:
            self.session.execute(insert(a).values(kind=kind, key=key, order_id=order_id, severity=severity,
                                                  message=message, opened_at=at, updated_at=at, details=details))
        return not updated

    def get(self, alert_id: int) -> dict[str, Any] | None:
        row = self.session.execute(select(t.alerts).where(t.alerts.c.id == alert_id).with_for_update()).first()
        return None if row is None else dict(row._mapping)

    def open(self, *, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
        a = t.alerts
        query = select(a).where(a.c.cleared_at.is_(None)).order_by(a.c.opened_at)
        if kinds is not None:
            query = query.where(a.c.kind.in_(list(kinds)))
        return [dict(row._mapping) for row in self.session.execute(query)]

    def acknowledge(self, alert_id: int, *, user: str, at: datetime) -> bool:
        a = t.alerts
        return bool(self.session.execute(update(a).where(a.c.id == alert_id, a.c.acknowledged_at.is_(None))
                                         .values(acknowledged_by=user, acknowledged_at=at)).rowcount)

    def clear(self, *, kind: str, key: str, at: datetime) -> bool:
        """The condition behind an operational alert is over."""
        a = t.alerts
        return bool(self.session.execute(update(a).where(a.c.kind == kind, a.c.key == key, a.c.cleared_at.is_(None))
                                         .values(cleared_at=at, updated_at=at)).rowcount)

    def resolve(self, alert_id: int, *, user: str, resolution: str, at: datetime) -> bool:
        """Support acted on an exception-inbox entry: it leaves the inbox with the action taken."""
        a = t.alerts
        return bool(self.session.execute(update(a).where(a.c.id == alert_id, a.c.cleared_at.is_(None))
                                         .values(cleared_at=at, updated_at=at, resolution=resolution,
                                                 resolved_by=user)).rowcount)

    def mark_notified(self, alert_ids: Iterable[int], *, at: datetime) -> None:
        a = t.alerts
        self.session.execute(update(a).where(a.c.id.in_(list(alert_ids))).values(notified_at=at))


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
    catalogue_changed(session)
    return version


BATCHER_LOCK_KEY = 0x5052_4241_5443_4801  # "PRBATCH" + 1: a constant the batcher alone uses


class BatchRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, batch: Batch) -> None:
        self.session.add(batch)

    def get(self, batch_id: str, *, lock: bool = False) -> Batch | None:
        return get_aggregate(self.session, Batch, t.batches, batch_id, lock=lock)

    def open(self) -> list[Batch]:
        """Batches still taking jobs or held by an ops manager."""
        return list(self.session.scalars(select(Batch).where(t.batches.c.status.in_(
            [BatchStatus.OPEN, BatchStatus.HELD])).order_by(t.batches.c.created_at)))

    def take_batcher_turn(self) -> None:
        """Wait for the batcher's turn, held until this transaction ends (PostgreSQL advisory lock).

        Route actors on every worker thread run the batcher right after routing; two at once picked the same
        routed jobs and one failed on a stale version (its message retried 15 s later). One at a time, each
        sees every job routed and committed before its turn. SQLite writes are serialised anyway.
        """
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(select(func.pg_advisory_xact_lock(BATCHER_LOCK_KEY)))

    def stuck_released(self, *, before: datetime, limit: int) -> list[Batch]:
        """Released batches not submitted since `before` (by release or by the last re-drive)."""
        b = t.batches
        last = func.coalesce(b.c.redriven_at, b.c.status_changed_at)
        query = select(Batch).where(b.c.status == BatchStatus.RELEASED, last < before).limit(limit)
        if self.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return list(self.session.scalars(query))

    def sizes(self, batch_ids: list[str]) -> dict[str, int]:
        j = t.print_jobs
        if not batch_ids:
            return {}
        return dict(self.session.execute(select(j.c.batch_id, func.count()).where(j.c.batch_id.in_(batch_ids))
                                         .group_by(j.c.batch_id)).all())


IN_FLIGHT = (JobStatus.BATCHED, JobStatus.SUBMITTED, JobStatus.QUEUED, JobStatus.PRINTING)


class PartnerRepository:
    """Partners as routing sees them: location, methods, capacity, free blanks, load, recent defect rate."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def exists(self, partner_id: str) -> bool:
        return self.session.scalar(select(func.count()).where(t.partners.c.id == partner_id)) == 1

    def capacity(self) -> dict[str, dict[str, float]]:
        rows = self.session.execute(select(t.partners.c.id, t.partners.c.capacity_per_hour)
                                    .where(t.partners.c.active))
        return {pid: {m: float(c) for m, c in (cap or {}).items()} for pid, cap in rows}

    def endpoint(self, partner_id: str) -> dict[str, Any]:
        row = self.session.execute(select(t.partners.c.id, t.partners.c.api_url)
                                   .where(t.partners.c.id == partner_id)).one()
        return {"id": row.id, "api_url": row.api_url}

    def views(self, skus: Iterable[str]) -> list[PartnerView]:
        p, s, j, i = t.partners, t.partner_stock, t.print_jobs, t.inspections
        skus = list(skus)
        free: dict[str, dict[str, int]] = {}
        for pid, sku, n in self.session.execute(select(s.c.partner_id, s.c.sku, s.c.on_hand - s.c.reserved)
                                                .where(s.c.sku.in_(skus))):
            free.setdefault(pid, {})[sku] = int(n)
        load: dict[str, dict[str, int]] = {}
        for pid, method, n in self.session.execute(select(j.c.partner_id, j.c.print_method, func.count())
                                                   .where(j.c.status.in_(IN_FLIGHT), j.c.partner_id.is_not(None))
                                                   .group_by(j.c.partner_id, j.c.print_method)):
            load.setdefault(pid, {})[method or ""] = int(n)
        verdicts: dict[str, list[int]] = {}
        for pid, failed in self.session.execute(select(j.c.partner_id, i.c.status == "failed")
                                                .join(i, i.c.job_id == j.c.id).order_by(i.c.created_at.desc())
                                                .limit(2000)):
            verdicts.setdefault(pid, []).append(int(bool(failed)))
        return [PartnerView(id=r.id, region=r.region, country=r.country, lat=r.lat, lon=r.lon,
                            print_methods=frozenset(r.print_methods), capacity_per_hour=dict(r.capacity_per_hour),
                            free_stock=free.get(r.id, {}), load_units=load.get(r.id, {}),
                            defect_rate=(sum(verdicts[r.id]) / len(verdicts[r.id])) if verdicts.get(r.id) else 0.0,
                            active=bool(r.active))
                for r in self.session.execute(select(p)).all()]


class InspectionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, inspection: Inspection) -> None:
        self.session.add(inspection)

    def get(self, inspection_id: str, *, lock: bool = False) -> Inspection | None:
        return get_aggregate(self.session, Inspection, t.inspections, inspection_id, lock=lock)

    def for_job(self, job_id: str) -> Inspection | None:
        return self.session.scalars(select(Inspection).where(t.inspections.c.job_id == job_id)).first()

    def verdicts_due(self, *, before: datetime) -> list[str]:
        """Inspections whose inspector's verdict was given before `before` and has not taken effect yet."""
        i = t.inspections
        return list(self.session.scalars(select(i.c.id).where(
            i.c.status == InspectionStatus.NEEDS_REVIEW, i.c.pending_verdict.is_not(None),
            i.c.decided_at <= before).order_by(i.c.decided_at)))

    def history(self, *, partner_id: str | None, line_id: str, recent: int = 200) -> dict[str, float]:
        """What spot checks weigh: prints of this template version and at this partner so far, and the
        partner's recent failure rate."""
        i, j, line = t.inspections, t.print_jobs, t.order_lines
        template = self.session.execute(select(line.c.template_key, line.c.template_version)
                                        .where(line.c.id == line_id)).one()
        version_prints = self.session.scalar(
            select(func.count()).select_from(i).join(j, j.c.id == i.c.job_id).join(line, line.c.id == j.c.line_id)
            .where(line.c.template_key == template.template_key,
                   line.c.template_version == template.template_version)) or 0
        partner = list(self.session.scalars(select(i.c.status).join(j, j.c.id == i.c.job_id)
                                            .where(j.c.partner_id == partner_id)
                                            .order_by(i.c.created_at.desc()).limit(recent)))
        failed = sum(1 for status in partner if status == "failed")
        return {"template_version_prints": int(version_prints), "partner_prints": len(partner),
                "partner_failure_rate": failed / len(partner) if partner else 0.0}


# ---- shipments (shipping and tracking stages) ----------------------------------------------------------------



class ShipmentRepository:
    """An order's parcel: found by order, by the carrier's shipment id (stored before the buy) or tracking code."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, shipment: Shipment) -> None:
        self.session.add(shipment)

    def _one(self, where, *, lock: bool) -> Shipment | None:
        query = select(Shipment).where(where).order_by(t.shipments.c.created_at.desc(), t.shipments.c.id.desc())
        if lock:
            query = query.with_for_update(of=t.shipments).execution_options(populate_existing=True)
        return self.session.scalars(query).first()

    def get(self, shipment_id: str, *, lock: bool = False) -> Shipment | None:
        return self._one(t.shipments.c.id == shipment_id, lock=lock)

    def for_order(self, order_id: str, *, lock: bool = False) -> Shipment | None:
        """The order's newest shipment (a reship makes a new one)."""
        return self._one(t.shipments.c.order_id == order_id, lock=lock)

    def by_carrier_id(self, carrier_shipment_id: str, *, lock: bool = False) -> Shipment | None:
        return self._one(t.shipments.c.carrier_shipment_id == carrier_shipment_id, lock=lock)

    def by_tracking_code(self, tracking_code: str, *, lock: bool = False) -> Shipment | None:
        return self._one(t.shipments.c.tracking_code == tracking_code, lock=lock)

    def silent(self, *, statuses: Iterable[str], before: datetime, scan_type: str, limit: int = 500) -> list[Shipment]:
        """Shipments in `statuses` whose last carrier scan (timeline rows of `scan_type`), or else their last
        status change, is older than `before`."""
        s, e = t.shipments, t.order_events
        last_scan = (select(func.max(e.c.at)).where(e.c.order_id == s.c.order_id, e.c.type == scan_type)
                     .scalar_subquery())
        query = (select(Shipment).where(s.c.status.in_(list(statuses)),
                                        func.coalesce(last_scan, s.c.status_changed_at) < before)
                 .order_by(s.c.status_changed_at).limit(limit))
        return list(self.session.scalars(query))
