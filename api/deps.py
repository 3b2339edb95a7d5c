"""The API's composition root: settings, database, broker and adapters, built once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from sqlalchemy import Engine

import db
from adapters.broker import DramatiqBus, make_broker
from adapters.ids import TimeOrderedIds
from adapters.objectstore import make_object_store
from adapters.payments import SimPayments
from core.ports import Ids, MessageBus, ObjectStore, Payments
from core.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    bus: MessageBus
    payments: Payments
    store: ObjectStore
    redis: redis.Redis | None
    ids: Ids = field(default_factory=TimeOrderedIds)

    def __post_init__(self) -> None:
        self.session_factory = db.make_session_factory(self.engine)

    def uow(self) -> db.SqlUnitOfWork:
        return db.SqlUnitOfWork(self.session_factory, self.bus)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)


def build_services(settings: Settings | None = None, *, bus: MessageBus | None = None,
                   payments: Payments | None = None) -> Services:
    settings = settings or Settings.from_env(os.environ)
    db.configure(settings)
    client = None
    if bus is None:
        bus = DramatiqBus(make_broker(settings))
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    return Services(settings=settings, engine=db.make_engine(settings.database_url, pool_size=20), bus=bus,
                    payments=payments or SimPayments(decline_rate=settings.payment_decline_rate),
                    store=make_object_store(settings), redis=client)
