"""The PII lifecycle on the database: key rotation, a customer's erasure (pseudonymised, objects deleted), export."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Engine, Table, Text, func, select, type_coerce, update
from sqlalchemy.orm import Session

from core.commands import Address
from core.erasable import qa_references_of
from core.errors import PressroomError
from core.events import Noted
from core.ports import ObjectStore
from core.states import OrderStatus
from db import tables as t
from db.repositories import event_row, insert_ignoring_duplicates
from db.types import EncryptedAddress, EncryptedText, keyring

log = logging.getLogger(__name__)

ERASURE_SOURCE = "privacy"
MIN_NEEDLE = 3  # shorter strings (a country code) are not scrubbed out of free text


# ---- key rotation ------------------------------------------------------------------------------------------


def encrypted_columns() -> dict[Table, list[str]]:
    """Every PII column of the schema (EncryptedText / EncryptedAddress), found from the metadata itself."""
    found: dict[Table, list[str]] = {}
    for table in t.metadata.sorted_tables:
        names = [c.name for c in table.columns if isinstance(c.type, EncryptedText | EncryptedAddress)]
        if names:
            found[table] = names
    return found


@dataclass(slots=True)
class RotationReport:
    """What one rotation pass did, per table and in total (values rotated, already current, unreadable)."""

    rows_seen: int = 0
    rows_rotated: int = 0
    rows_current: int = 0
    rows_unreadable: int = 0
    unreadable: list[str] = field(default_factory=list)  # "table:pk" (never a value)
    per_table: dict[str, dict[str, int]] = field(default_factory=dict)


def rotate_keys(engine: Engine, keys: tuple[str, ...], *, batch_size: int = 500,
                progress: Callable[[int], None] | None = None) -> RotationReport:
    """Re-encrypt every PII value with the first key; idempotent and resumable (current rows are skipped).

    Each batch commits on its own and writes a value only where it still holds the token read
    (compare-and-set), so a concurrent write is never overwritten and an interrupted run simply
    continues where it is run again. A value no key can read is counted and left as it is.

    Args:
        keys: the keyring, newest first (as `Settings.pii_keys`): the first encrypts, all decrypt.
        progress: called with the number of rows of each batch done (e.g. a tqdm bar's `update`).
    """
    if not keys:
        raise ValueError("at least one Fernet key is required")
    current = Fernet(keys[0].encode())
    every = MultiFernet([Fernet(k.encode()) for k in keys])
    report = RotationReport()
    for table, names in encrypted_columns().items():
        (pk,) = table.primary_key.columns
        raw = [type_coerce(table.c[name], Text).label(name) for name in names]
        counts = {"rows": 0, "rotated": 0, "unreadable": 0}
        last = None
        while True:
            query = select(pk, *raw).order_by(pk).limit(batch_size)
            if last is not None:
                query = query.where(pk > last)
            with engine.begin() as conn:
                rows = conn.execute(query).all()
                for row in rows:
                    changes, broken = {}, False
                    for name in names:
                        token = getattr(row, name)
                        if token is None:
                            continue
                        try:
                            current.decrypt(token.encode())
                            continue  # already under the current key
                        except InvalidToken:
                            pass
                        try:
                            changes[name] = every.rotate(token.encode()).decode()
                        except InvalidToken:
                            broken = True
                    if broken:
                        counts["unreadable"] += 1
                        report.unreadable.append(f"{table.name}:{row[0]}")
                    elif changes:
                        guard = [type_coerce(table.c[n], Text) == getattr(row, n) for n in changes]
                        done = conn.execute(update(table).where(pk == row[0], *guard)
                                            .values({n: type_coerce(v, Text) for n, v in changes.items()}))
                        counts["rotated"] += done.rowcount
                counts["rows"] += len(rows)
            if progress is not None and rows:
                progress(len(rows))
            if len(rows) < batch_size:
                break
            last = rows[-1][0]
        report.per_table[table.name] = counts
        report.rows_seen += counts["rows"]
        report.rows_rotated += counts["rotated"]
        report.rows_unreadable += counts["unreadable"]
    report.rows_current = report.rows_seen - report.rows_rotated - report.rows_unreadable
    log.info("key rotation: %s rows seen, %s rotated, %s unreadable", report.rows_seen, report.rows_rotated,
             report.rows_unreadable)
    return report


def count_pii_rows(engine: Engine) -> int:
    """How many rows hold PII columns (the rotation progress bar's total)."""
    with engine.connect() as conn:
        return sum(conn.scalar(select(func.count()).select_from(table)) or 0 for table in encrypted_columns())


# ---- erasure ------------------------------------------------------------------------------------------------


class CustomerNotFound(PressroomError):
    """No customer has that e-mail (never had one, or already erased: erasure replaces the blind index)."""

    code = "customer_not_found"


class OrdersStillOpen(PressroomError):
    """The customer has orders still on their way: erasing now would send a parcel to a pseudonym."""

    code = "orders_still_open"


CLOSED = frozenset({OrderStatus.DELIVERED, OrderStatus.CANCELLED, OrderStatus.FAILED})


@dataclass(frozen=True, slots=True, kw_only=True)
class ErasureReport:
    customer_ids: tuple[str, ...]
    orders: int
    inbox_bodies: int
    objects: int
    object_versions: int
    prepared_versions: int = 0  # versions of QA's prepared copies of their print files (`core.erasable`)


def pseudonym(customer_id: str) -> str:
    """The stable stand-in for an erased customer's PII: it says nothing about them, and is the same on a re-run."""
    return "erased-" + hashlib.sha256(customer_id.encode()).hexdigest()[:12]


def _customers(session: Session, email: str) -> list[Any]:
    c = t.customers
    return session.execute(select(c).where(c.c.email_hash == keyring().blind_index(email))
                           .order_by(c.c.created_at)).all()


def _needles(strings: Iterable[str | None]) -> list[str]:
    found = {s.strip() for s in strings if s and len(s.strip()) >= MIN_NEEDLE}
    return sorted(found, key=len, reverse=True)  # longest first: "Ada Lovelace" before "Ada"


def _scrub(value: Any, needles: list[str], stand_in: str) -> Any:
    """The JSON value with every occurrence of a needle (case-insensitive) replaced by the stand-in."""
    if isinstance(value, str):
        for needle in needles:
            value = re.sub(re.escape(needle), stand_in, value, flags=re.IGNORECASE)
        return value
    if isinstance(value, list):
        return [_scrub(v, needles, stand_in) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, needles, stand_in) for k, v in value.items()}
    return value


def _address_strings(address: Address | None) -> list[str]:
    if address is None:
        return []
    return [address.name, address.line1, address.line2, address.postal_code, address.city]


def _object_keys(session: Session, customer_ids: list[str], order_ids: list[str]) -> tuple[list[str], list[str]]:
    """Every stored object that holds this customer's PII and no one else's work, and the folders of copies
    derived from them: (keys, prefixes).

    Labels (the address), QA photos and heat-maps of their prints, the rendered print files and previews of
    personalised lines (their text), and the artwork they uploaded themselves (no designer) — unless another
    customer's line uses the same artwork or asset (then it is not theirs alone). The prefixes hold the prepared
    copies QA workers keep of those print files (`core.erasable`), of every code version.
    """
    if not order_ids:
        return [], []
    lines, orders = t.order_lines, t.orders
    own = session.execute(select(lines.c.artwork_id, lines.c.asset_id, lines.c.texts)
                          .where(lines.c.order_id.in_(order_ids))).all()
    others = select(lines.c.id).join(orders, orders.c.id == lines.c.order_id).where(
        orders.c.customer_id.not_in(customer_ids))
    keys: set[str] = set()
    artwork_ids = {r.artwork_id for r in own if r.artwork_id}
    shared_art = set(session.scalars(select(lines.c.artwork_id).where(
        lines.c.artwork_id.in_(artwork_ids), lines.c.id.in_(others))))
    private_art = set()
    for art in session.execute(select(t.artworks).where(t.artworks.c.id.in_(artwork_ids - shared_art),
                                                        t.artworks.c.designer_id.is_(None))):
        keys.add(art.storage_key)
        private_art.add(art.id)
    asset_ids = {r.asset_id for r in own if r.asset_id and (any((r.texts or {}).values())
                                                             or r.artwork_id in private_art)}
    shared_assets = set(session.scalars(select(lines.c.asset_id).where(
        lines.c.asset_id.in_(asset_ids), lines.c.id.in_(others))))
    prefixes: set[str] = set()
    for asset in session.execute(select(t.assets).where(t.assets.c.id.in_(asset_ids - shared_assets))):
        keys.update(k for k in (asset.print_file_key, asset.pdf_key, asset.preview_key) if k)
        if asset.sha256:
            prefixes.add(qa_references_of(asset.sha256))
    for shipment in session.execute(select(t.shipments.c.label_key).where(t.shipments.c.order_id.in_(order_ids))):
        if shipment.label_key:
            keys.add(shipment.label_key)
    keys.update(f"labels/{order_id}.png" for order_id in order_ids)  # stored before the shipment row knows it
    ins = t.inspections
    for row in session.execute(select(ins.c.photo_key, ins.c.heatmap_key, ins.c.aligned_key)
                               .where(ins.c.order_id.in_(order_ids))):
        keys.update(k for k in row if k)
    return sorted(keys), sorted(prefixes)


def erase_customer(engine: Engine, store: ObjectStore, *, email: str, actor: str, now: datetime,
                   include_open_orders: bool = False, batch_size: int = 500) -> ErasureReport:
    """Erase a customer's PII (an erasure request) and keep their order records, pseudonymised, for accounting.

    Objects go first (every version; QA's prepared copies of their print files too), then one transaction
    replaces the PII in the database: a crash between the two leaves the customer findable by e-mail, and
    running it again finishes the job.

    Args:
        include_open_orders: erase even while orders are not yet delivered, cancelled or failed (they can then
            no longer be shipped to the customer).

    Raises:
        CustomerNotFound: no customer has that e-mail (or they were already erased).
        OrdersStillOpen: some of their orders are still open and `include_open_orders` is not set; nothing changed.
    """
    session = Session(engine)
    try:
        found = _customers(session, email)
        if not found:
            raise CustomerNotFound("no customer has that e-mail address (already erased, or never ordered)")
        customer_ids = [c.id for c in found]
        o = t.orders
        open_orders = [r.number for r in session.execute(
            select(o.c.number).where(o.c.customer_id.in_(customer_ids), o.c.status.not_in(list(CLOSED)))
            .order_by(o.c.placed_at))]
        if open_orders and not include_open_orders:
            raise OrdersStillOpen(f"{len(open_orders)} order(s) of this customer are still open "
                                  f"({', '.join(open_orders[:10])}): cancel them or wait for delivery, or erase "
                                  "anyway (they can then no longer be shipped)")
        order_ids = list(session.scalars(select(t.orders.c.id).where(t.orders.c.customer_id.in_(customer_ids))
                                         .order_by(t.orders.c.placed_at)))
        keys, prefixes = _object_keys(session, customer_ids, order_ids)
    finally:
        session.close()
    versions = sum(store.delete_all_versions(key) for key in keys)
    prepared = sum(store.delete_prefix(prefix) for prefix in prefixes)
    with Session(engine) as session, session.begin():
        found = _customers(session, email)
        if not found:
            raise CustomerNotFound("no customer has that e-mail address (erased meanwhile)")
        orders = session.execute(select(t.orders).where(t.orders.c.customer_id.in_([c.id for c in found]))).all()
        order_ids = [o.id for o in orders]
        line_rows = session.execute(select(t.order_lines.c.id, t.order_lines.c.texts)
                                    .where(t.order_lines.c.order_id.in_(order_ids))).all()
        # Distinctive strings tell which shared rows (webhook bodies, idempotent responses) are about them; in
        # rows that are theirs, the parts too (a shop splits first and last name) and their custom texts go.
        addresses = [c.address_enc for c in found] + [o.shipping_address_enc for o in orders]
        names = [s for s in [c.name_enc for c in found] + [a.name for a in addresses if a] if s]
        identifying = _needles([*names, email.strip(), *(s for c in found for s in (c.email_enc, c.phone_enc)),
                                *(s for a in addresses if a for s in (a.line1, a.line2))])
        markers = identifying + order_ids
        needles = _needles([*identifying, *(part for n in names for part in n.split()),
                            *(s for a in addresses for s in _address_strings(a)),
                            *(str(v) for line in line_rows for v in (line.texts or {}).values())])
        stand_in = pseudonym(found[0].id)
        for customer in found:
            name = pseudonym(customer.id)
            session.execute(update(t.customers).where(t.customers.c.id == customer.id).values(
                name_enc=name, email_enc=f"{name}@erased.invalid", phone_enc=None, address_enc=None,
                email_hash=keyring().blind_index(f"{name}@erased.invalid"), email_opt_out=True, sms_opt_out=True,
                erased_at=customer.erased_at or now))
        for order in orders:
            kept = order.shipping_address_enc
            session.execute(update(t.orders).where(t.orders.c.id == order.id).values(
                shipping_address_enc=Address(name=stand_in, line1=stand_in, city="erased", postal_code="",
                                             country=kept.country if kept else "")))
        for line in line_rows:
            if line.texts:
                session.execute(update(t.order_lines).where(t.order_lines.c.id == line.id)
                                .values(texts={k: stand_in for k in line.texts}))
        _scrub_rows(session, t.order_events, t.order_events.c.order_id.in_(order_ids), ("payload",), needles,
                    stand_in)
        _scrub_rows(session, t.notifications, t.notifications.c.order_id.in_(order_ids),
                    ("subject", "preview", "error"), needles, stand_in)
        _scrub_rows(session, t.alerts, t.alerts.c.order_id.in_(order_ids), ("message", "details"), needles,
                    stand_in)
        _scrub_rows(session, t.idempotency_keys, None, ("response",), needles, stand_in, only_mentioning=markers)
        inbox = _scrub_inbox(session, markers, needles, stand_in, batch_size=batch_size)
        at = now
        for order_id in order_ids:
            insert_ignoring_duplicates(session, t.order_events, [event_row(Noted(
                order_id=order_id, at=at, source=f"user:{actor}", kind="customer.erased",
                key=f"customer-erased:{order_id}", details={"objects_deleted": len(keys)}))], "dedupe_key")
        for customer in found:
            session.execute(t.audit_log.insert().values(
                at=at, actor=actor, action="customer.erase", target_type="customer", target_id=customer.id,
                order_id=None, before=None,
                after={"orders": len(order_ids), "objects": len(keys), "object_versions": versions,
                       "prepared_versions": prepared, "inbox_bodies": inbox}))
    log.info("erased customer %s: %s orders kept pseudonymised, %s objects (%s versions), %s prepared copies of "
             "%s print files, %s inbox bodies", ",".join(customer_ids), len(order_ids), len(keys), versions,
             prepared, len(prefixes), inbox)
    return ErasureReport(customer_ids=tuple(customer_ids), orders=len(order_ids), inbox_bodies=inbox,
                         objects=len(keys), object_versions=versions, prepared_versions=prepared)


def _mentions(text: str, markers: list[str]) -> bool:
    lowered = text.lower()
    return any(m.lower() in lowered for m in markers)


def _scrub_rows(session: Session, table: Table, where, columns: tuple[str, ...], needles: list[str],
                stand_in: str, *, only_mentioning: list[str] | None = None) -> None:
    """Scrub the rows `where` selects (their own), or those of all that mention one of `only_mentioning`."""
    if not needles:
        return
    (pk,) = table.primary_key.columns
    query = select(pk, *(table.c[c] for c in columns))
    for row in session.execute(query.where(where) if where is not None else query).all():
        if only_mentioning is not None and not _mentions(
                json.dumps([getattr(row, c) for c in columns], default=str, ensure_ascii=False), only_mentioning):
            continue
        changes = {}
        for column in columns:
            value = getattr(row, column)
            if value is not None and (scrubbed := _scrub(value, needles, stand_in)) != value:
                changes[column] = scrubbed
        if changes:
            session.execute(update(table).where(pk == row[0]).values(changes))


def _scrub_inbox(session: Session, markers: list[str], needles: list[str], stand_in: str, *,
                 batch_size: int) -> int:
    """Webhook bodies (shop orders, carrier events) that mention the customer, with their PII replaced."""
    if not markers:
        return 0
    w = t.webhook_inbox
    changed, last = 0, 0
    while True:
        rows = session.execute(select(w.c.id, w.c.body).where(w.c.id > last).order_by(w.c.id)
                               .limit(batch_size)).all()
        for row in rows:
            try:
                parsed = json.loads(row.body)
            except ValueError:
                parsed = row.body
            # Matched on the parsed text too: JSON may escape a value (non-ASCII, quotes) in the raw body.
            readable = json.dumps(parsed, ensure_ascii=False)
            if not (_mentions(row.body, markers) or _mentions(readable, markers)):
                continue
            if isinstance(parsed, str):
                body = _scrub(row.body, needles, stand_in)
            else:
                scrubbed = _scrub(parsed, needles, stand_in)
                body = row.body if scrubbed == parsed else json.dumps(scrubbed)
                body = _scrub(body, needles, stand_in)  # and whatever the raw text holds escaped
            if body == row.body:
                continue
            session.execute(update(w).where(w.c.id == row.id).values(body=body))
            changed += 1
        if len(rows) < batch_size:
            return changed
        last = rows[-1].id


# ---- export -------------------------------------------------------------------------------------------------


def export_customer(engine: Engine, *, email: str) -> dict[str, Any]:
    """Everything we hold about a customer (access request), decrypted, as a JSON-ready document.

    Raises:
        CustomerNotFound: no customer has that e-mail.
    """
    with Session(engine) as session:
        found = _customers(session, email)
        if not found:
            raise CustomerNotFound("no customer has that e-mail address")
        ids = [c.id for c in found]
        o = t.orders
        orders = session.execute(select(o).where(o.c.customer_id.in_(ids)).order_by(o.c.placed_at)).all()
        order_ids = [r.id for r in orders]
        lines = session.execute(select(t.order_lines).where(t.order_lines.c.order_id.in_(order_ids))
                                .order_by(t.order_lines.c.order_id, t.order_lines.c.line_no)).all()
        n = t.notifications
        sent = session.execute(select(n).where(n.c.order_id.in_(order_ids)).order_by(n.c.created_at)).all()
        e = t.order_events
        events = session.execute(select(e).where(e.c.order_id.in_(order_ids)).order_by(e.c.at, e.c.id)).all()
        s = t.shipments
        shipments = session.execute(select(s).where(s.c.order_id.in_(order_ids)).order_by(s.c.created_at)).all()
    return {
        "customers": [{"id": c.id, "name": c.name_enc, "email": c.email_enc, "phone": c.phone_enc,
                       "address": c.address_enc.as_dict() if c.address_enc else None,
                       "email_opt_out": c.email_opt_out, "sms_opt_out": c.sms_opt_out,
                       "created_at": _iso(c.created_at), "erased_at": _iso(c.erased_at)} for c in found],
        "orders": [{
            "number": r.number, "channel": r.channel, "external_id": r.external_id, "status": str(r.status),
            "hold_reason": str(r.hold_reason) if r.hold_reason else None,
            "shipping_speed": str(r.shipping_speed), "shipping_address": r.shipping_address_enc.as_dict(),
            "total_cents": r.total_cents, "currency": r.currency, "placed_at": _iso(r.placed_at),
            "lines": [{"line_no": x.line_no, "sku": x.sku, "quantity": x.quantity, "texts": x.texts,
                       "unit_price_cents": x.unit_price_cents} for x in lines if x.order_id == r.id],
            "shipments": [{"status": str(x.status), "carrier": x.carrier, "service": x.service,
                           "tracking_code": x.tracking_code} for x in shipments if x.order_id == r.id],
            "notifications": [{"milestone": x.milestone, "channel": x.channel, "status": x.status,
                               "subject": x.subject, "sent_at": _iso(x.sent_at)}
                              for x in sent if x.order_id == r.id],
            "timeline": [{"at": _iso(x.at), "type": x.type, "source": x.source, "details": x.payload}
                         for x in events if x.order_id == r.id],
        } for r in orders],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


__all__ = ["CustomerNotFound", "ErasureReport", "OrdersStillOpen", "RotationReport", "count_pii_rows",
           "encrypted_columns", "erase_customer", "export_customer", "pseudonym", "rotate_keys"]
