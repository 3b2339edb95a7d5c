"""Shared fixtures: settings with test keys, migrated+seeded databases (SQLite, PostgreSQL), real Redis."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import db
from adapters.passwords import hash_password
from core.commands import Address, CustomerDetails, LineRequest, PlaceOrder
from core.settings import Settings
from core.states import Channel, ShippingSpeed
from db.migrate import upgrade
from db.seed import seed

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("PRESSROOM_TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("PRESSROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_KEYS = {"PRESSROOM_PII_KEYS": "mH4p9sB5bZyK0gkq8Q2fC6a3V1xN7uT0rLwE9dYjS4o=",
             "PRESSROOM_BLIND_INDEX_KEY": "test-blind-index-key"}

MUG = "MUG-SUB-11OZ-WHT"  # a seeded SKU, stocked at several partners


def service_missing(what: str, error: Exception) -> None:
    """Integration tests fail in CI when a service is missing, and skip on a developer's machine."""
    message = f"{what} is not reachable ({type(error).__name__}: {error})"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def settings_for(database_url: str, **overrides) -> Settings:
    settings = Settings.from_env({**TEST_KEYS, "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL})
    return replace(settings, **overrides)


def migrated_and_seeded(url: str) -> None:
    upgrade(url)
    engine = db.make_engine(url)
    seed(engine, hash_password=hash_password)
    engine.dispose()


def mug_checkout(artwork_id: str, *, external_id: str | None = None, name: str = "Grace Hopper",
                 email: str = "grace@example.com") -> PlaceOrder:
    """A storefront checkout of one personalised mug (a seeded SKU), with a new external id unless one is given."""
    return PlaceOrder(channel=Channel.STOREFRONT, external_id=external_id or f"SF-{uuid.uuid4().hex[:10]}",
                      customer=CustomerDetails(name=name, email=email),
                      shipping_address=Address(name=name, line1="1 Navy Way", city="Arlington", region="VA",
                                               postal_code="22202", country="US"),
                      shipping_speed=ShippingSpeed.STANDARD,
                      lines=(LineRequest(sku=MUG, quantity=1, artwork_id=artwork_id, texts={"name": name.split()[0]}),))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'pressroom.db'}"
    migrated_and_seeded(url)
    return url


@pytest.fixture(scope="session")
def _seeded_sqlite_template(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("template") / "seeded.db"
    migrated_and_seeded(f"sqlite:///{path}")
    return str(path)


@pytest.fixture
def seeded_sqlite(_seeded_sqlite_template, tmp_path) -> str:
    """A fresh copy of a migrated and seeded SQLite database (argon2 hashing once per session)."""
    import shutil

    target = tmp_path / "pressroom.db"
    shutil.copy(_seeded_sqlite_template, target)
    return f"sqlite:///{target}"


def _admin_engine():
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_server() -> str:
    try:
        engine = _admin_engine()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:
        service_missing("PostgreSQL", error)
    return PG_URL


@pytest.fixture
def pg_url(pg_server) -> str:
    """A new, migrated and seeded PostgreSQL database for one test; dropped afterwards."""
    name = f"pressroom_t_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    migrated_and_seeded(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def redis_url() -> str:
    """The test Redis database, emptied before each test."""
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.flushdb()
    except Exception as error:
        service_missing("Redis", error)
    return REDIS_URL


def png_bytes(width: int, height: int, colour=(200, 40, 40)) -> bytes:
    """A real PNG of the given size (flat colour compresses to a few KB even when large)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


class ApiHarness:
    """The real FastAPI app on a seeded SQLite database, with Dramatiq's StubBroker as the broker."""

    def __init__(self, url: str, tmp_path, **overrides) -> None:
        from dramatiq.brokers.stub import StubBroker
        from fastapi.testclient import TestClient

        from adapters.broker import DramatiqBus
        from adapters.payments import SimPayments
        from api.deps import build_services
        from api.main import create_app
        from core.commands import QUEUES

        self.broker = StubBroker()
        for queue in QUEUES:
            self.broker.declare_queue(queue)
        self.payments = SimPayments()
        settings = settings_for(url, object_store_dir=str(tmp_path / "objects"), **overrides)
        self.services = build_services(settings, bus=DramatiqBus(self.broker), payments=self.payments)
        self.client = TestClient(create_app(self.services))

    def upload(self, data: bytes | None = None, **form) -> dict:
        response = self.client.post("/v1/artwork", files={"file": ("art.png", data or png_bytes(2400, 2400))},
                                    data=form)
        assert response.status_code == 201, response.text
        return response.json()

    def order_body(self, artwork_id: str, **changes) -> dict:
        body = {"external_id": f"SF-{uuid.uuid4().hex[:8]}", "channel": "storefront",
                "customer": {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0958"},
                "shipping_address": {"name": "Ada Lovelace", "line1": "12 Marylebone Rd", "city": "London",
                                     "region": "LND", "postal_code": "NW1 5LR", "country": "GB"},
                "shipping_speed": "standard",
                "lines": [{"sku": "TEE-DTG-BLK-M", "quantity": 1, "artwork_id": artwork_id,
                           "texts": {"headline": "Best Dad Ever"}}]}
        body.update(changes)
        return body

    def queued(self, queue: str = "render") -> list:
        return list(self.broker.queues[queue].queue)


@pytest.fixture
def api(seeded_sqlite, tmp_path) -> ApiHarness:
    harness = ApiHarness(seeded_sqlite, tmp_path)
    yield harness
    harness.services.engine.dispose()
