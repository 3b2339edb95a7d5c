"""Imperative mapping of core's aggregates onto the tables, so the domain stays plain Python."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.orm import registry, relationship

from core.model import Batch, Customer, Inspection, Order, OrderLine, PrintJob, Shipment
from db import tables as t
from db.types import keyring

mapper_registry = registry(metadata=t.metadata)
_started = False


def start_mappers() -> None:
    """Map once per process (idempotent)."""
    global _started
    if _started:
        return
    _started = True
    mapper_registry.map_imperatively(Customer, t.customers, properties={
        "name": t.customers.c.name_enc,
        "email": t.customers.c.email_enc,
        "phone": t.customers.c.phone_enc,
        "address": t.customers.c.address_enc,
        "_email_hash": t.customers.c.email_hash,
    })
    mapper_registry.map_imperatively(OrderLine, t.order_lines)
    versioned = {"version_id_generator": False}
    mapper_registry.map_imperatively(Order, t.orders, version_id_col=t.orders.c.version, **versioned, properties={
        "customer": relationship(Customer, lazy="joined"),
        "shipping_address": t.orders.c.shipping_address_enc,
        "lines": relationship(OrderLine, order_by=t.order_lines.c.line_no, cascade="all, delete-orphan",
                              lazy="selectin"),
    })
    # Many-to-one links that are never assigned: they exist so the flush inserts parents before children
    # (the unit of work orders inserts by mapper relationships, and these rows carry foreign keys).
    parents = {
        PrintJob: {"_order": relationship(Order), "_line": relationship(OrderLine), "_batch": relationship(Batch)},
        Inspection: {"_job": relationship(PrintJob)},
        Shipment: {"_order": relationship(Order)},
    }
    for cls, table in ((Batch, t.batches), (PrintJob, t.print_jobs), (Inspection, t.inspections),
                       (Shipment, t.shipments)):
        mapper_registry.map_imperatively(cls, table, version_id_col=table.c.version, **versioned,
                                         properties=parents.get(cls, {}))


@event.listens_for(Customer, "before_insert", propagate=True)
@event.listens_for(Customer, "before_update", propagate=True)
def _blind_index(mapper, connection, customer: Customer) -> None:
    """Keep the e-mail's keyed hash in step with the encrypted e-mail, so search never decrypts."""
    customer._email_hash = keyring().blind_index(customer.email)
