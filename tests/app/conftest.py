"""Dashboard fixtures: a migrated, seeded SQLite database with real orders; an AppTest of the entrypoint."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import Engine, insert, update
from streamlit.testing.v1 import AppTest

import db
from adapters.ids import TimeOrderedIds
from adapters.passwords import hash_password
from adapters.payments import SimPayments
from core.commands import Address, CustomerDetails, LineRequest, PlaceOrder
from core.events import StatusChanged
from core.services.intake import place_order
from core.settings import Settings
from core.states import Channel, Entity, ShippingSpeed
from db import tables as t
from db.migrate import upgrade
from db.repositories import event_row
from db.seed import SEED_DATA, seed

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "app" / "streamlit_app.py"
KEYS = {"PRESSROOM_PII_KEYS": "mH4p9sB5bZyK0gkq8Q2fC6a3V1xN7uT0rLwE9dYjS4o=",
        "PRESSROOM_BLIND_INDEX_KEY": "dashboard-test-blind-index-key"}
STAFF = {user["role"]: user for user in json.loads((SEED_DATA / "staff.json").read_text())}
TRACKING = "1Z999AA10123456784"


@dataclass(frozen=True)
class PlacedOrders:
    """What the template database holds, so tests can search for it."""

    ada_id: str
    ada_number: str
    ada_email: str
    ada_external_id: str
    grace_id: str
    grace_number: str


def _order(external_id: str, name: str, email: str) -> PlaceOrder:
    return PlaceOrder(
        channel=Channel.STOREFRONT, external_id=external_id,
        customer=CustomerDetails(name=name, email=email),
        shipping_address=Address(name=name, line1="12 Marylebone Rd", city="London", postal_code="NW1 5LR",
                                 country="GB"),
        shipping_speed=ShippingSpeed.EXPRESS,
        lines=(LineRequest(sku="TEE-DTG-BLK-M", quantity=2, artwork_id="art_dashboard_test",
                           texts={"headline": "Best Dad Ever"}),))


def _fill(url: str) -> PlacedOrders:
    """Seed, then place two orders through the real intake service and add what the scheduler would write."""
    upgrade(url)
    engine = db.make_engine(url)
    seed(engine, hash_password=hash_password)
    db.configure(Settings.from_env({**KEYS, "DATABASE_URL": url}))
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(insert(t.artworks).values(
            id="art_dashboard_test", sha256="0" * 64, width=6000, height=6000, source_format="PNG", bytes=1,
            storage_key="artwork/test.png", created_at=now - timedelta(minutes=10)))
    uow = db.SqlUnitOfWork(db.make_session_factory(engine))
    payments, ids = SimPayments(), TimeOrderedIds()
    placed = {}
    for external_id, name, email, minutes_ago in (("SF-1001", "Ada Lovelace", "Ada.Lovelace@Example.com", 20),
                                                  ("SF-1002", "Grace Hopper", "grace@example.com", 5)):
        result = place_order(_order(external_id, name, email), uow=uow, payments=payments, ids=ids,
                             now=now - timedelta(minutes=minutes_ago), source="channel:storefront",
                             max_quantity=100)
        placed[external_id] = result.order
    ada = placed["SF-1001"]
    _add_history(engine, ada.id, now)
    engine.dispose()
    return PlacedOrders(ada_id=ada.id, ada_number=ada.number, ada_email="Ada.Lovelace@Example.com",
                        ada_external_id="SF-1001", grace_id=placed["SF-1002"].id,
                        grace_number=placed["SF-1002"].number)


def _add_history(engine: Engine, order_id: str, now: datetime) -> None:
    """A later status change and a shipment for the first order; queue samples and a refused checkout."""
    started = now - timedelta(minutes=15)
    rendering = StatusChanged(order_id=order_id, at=started, source="worker:render", entity=Entity.ORDER,
                              entity_id=order_id, from_status="accepted", to_status="rendering", version=2)
    with engine.begin() as conn:
        conn.execute(update(t.orders).where(t.orders.c.id == order_id)
                     .values(status="rendering", status_changed_at=started, version=2))
        conn.execute(insert(t.order_events).values(**event_row(rendering)))
        conn.execute(insert(t.shipments).values(id="shp_dashboard_test", order_id=order_id, status="pending",
                                                tracking_code=TRACKING, created_at=started,
                                                status_changed_at=started, version=1))
        conn.execute(insert(t.queue_samples), [
            {"at": now - timedelta(seconds=s), "queue": "render", "depth": d, "delayed": 0, "dead": 0,
             "oldest_age_s": float(d)} for s, d in ((30, 4), (20, 6), (10, 3))])
        conn.execute(insert(t.intake_rejections), [
            {"at": now - timedelta(minutes=3), "channel": "storefront", "code": code}
            for code in ("artwork_missing", "address_incomplete")])


@pytest.fixture(scope="session")
def _dashboard_template(tmp_path_factory) -> tuple[Path, PlacedOrders]:
    path = tmp_path_factory.mktemp("dashboard") / "template.db"
    return path, _fill(f"sqlite:///{path}")


@pytest.fixture
def orders(_dashboard_template) -> PlacedOrders:
    return _dashboard_template[1]


@pytest.fixture
def database_url(_dashboard_template, tmp_path, monkeypatch) -> str:
    """A fresh copy of the template database, named in DATABASE_URL as the dashboard's bootstrap reads it."""
    target = tmp_path / "t.db"
    shutil.copy(_dashboard_template[0], target)
    url = f"sqlite:///{target}"
    for name, value in {**KEYS, "DATABASE_URL": url}.items():
        monkeypatch.setenv(name, value)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield url
    st.cache_resource.clear()  # disposes the engine (on_release)
    st.cache_data.clear()


@pytest.fixture
def engine(database_url) -> Engine:
    """A test-side engine on the same database, for arranging and checking rows."""
    test_engine = db.make_engine(database_url)
    yield test_engine
    test_engine.dispose()


@pytest.fixture
def app(database_url) -> AppTest:
    return AppTest.from_file(str(ENTRYPOINT), default_timeout=30).run()
