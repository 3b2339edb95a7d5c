"""The workers' composition root: settings, database, broker and adapters for every actor in this process."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

import redis

import db
from adapters.broker import DramatiqBus, make_broker
from adapters.ids import TimeOrderedIds
from adapters.objectstore import make_object_store
from core.ports import ObjectStore
from core.sampling import SpotCheckPolicy
from core.services.batches import defaults_from, load_production_rules
from core.services.production import ProductionRules, batch_ready_jobs
from core.settings import Settings
from core.signing import signed_asset_path

if TYPE_CHECKING:  # imported where used: a worker boots without httpx, QA's numpy and OpenCV
    from adapters.partners import PartnerClient, PartnerEndpoint
    from core.services.qa import QaRules

log = logging.getLogger(__name__)


class Container:
    """Built once per process; actors ask it for a fresh unit of work per message."""

    def __init__(self, settings: Settings, *, prometheus: bool = False) -> None:
        self.settings = settings
        db.configure(settings)
        self.broker = make_broker(settings, prometheus=prometheus)
        self.bus = DramatiqBus(self.broker)
        self.ids = TimeOrderedIds()

    @cached_property
    def engine(self):
        return db.make_engine(self.settings.database_url)

    @cached_property
    def session_factory(self):
        return db.make_session_factory(self.engine)

    @cached_property
    def store(self) -> ObjectStore:
        return make_object_store(self.settings)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url, socket_timeout=5)

    @cached_property
    def partners(self) -> PartnerClient:
        from adapters.partners import PartnerClient

        return PartnerClient(self.redis, rate_per_s=self.settings.partner_rate_per_s,
                             timeout_s=self.settings.partner_timeout_s)

    def partner_endpoint(self, partner_id: str) -> PartnerEndpoint:
        """Where and how to call a partner: its stored URL (or the sim's) and its API key."""
        from adapters.partners import PartnerEndpoint

        with self.uow() as uow:
            stored = uow.partners.endpoint(partner_id)
        return PartnerEndpoint(partner_id=partner_id, base_url=self.settings.partner_url(partner_id, stored["api_url"]),
                               api_key=self.settings.partner_api_key(partner_id))

    def production_rules(self) -> ProductionRules:
        """The weights and batch policy ops managers tune in the batch builder (settings' defaults until then)."""
        return load_production_rules(self.uow(), defaults=defaults_from(self.settings))

    def qa_rules(self) -> QaRules:
        """Spot checks, attempts and the inspectors' undo window; rate, tolerances and flags as managers stored
        them, read on every call (per job), so a change applies from the next print."""
        from core.services.admin import load_qa_rules
        from core.services.qa import QaRules

        spot_checks = SpotCheckPolicy(first_n_new=self.settings.qa_review_first_prints)
        return load_qa_rules(self.uow(), defaults=QaRules(undo_window_s=self.settings.qa_undo_window_s,
                                                          spot_checks=spot_checks))

    def print_file_url(self, asset_id: str) -> str:
        """A week-long signed link a partner downloads the print file from."""
        expires = int(self.now().timestamp()) + 7 * 24 * 3600
        return self.settings.api_url + signed_asset_path(self.settings.asset_url_secret, asset_id, "print.png",
                                                         expires=expires)

    def partner_callback_url(self, partner_id: str) -> str:
        return f"{self.settings.api_url}/webhooks/partners/{partner_id}"

    def run_batcher(self) -> list[str]:
        return batch_ready_jobs(self.uow(), now=self.now(), rules=self.production_rules(), new_id=self.ids.new)

    def uow(self) -> db.SqlUnitOfWork:
        return db.SqlUnitOfWork(self.session_factory, self.bus)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)


_container: Container | None = None


def container() -> Container:
    """The process's container, created on first use from the environment."""
    global _container
    if _container is None:
        settings = Settings.from_env(os.environ)
        _container = Container(settings, prometheus=os.environ.get("PRESSROOM_PROMETHEUS", "1") == "1")
        if int(os.environ.get("PRESSROOM_LAG_SAMPLES", "0")) > 0:  # stage lag for the lag benchmark (workers/lag.py)
            from workers.lag import StageLag

            _container.broker.add_middleware(StageLag(_container.redis,
                                                      keep=int(os.environ["PRESSROOM_LAG_SAMPLES"])))
    return _container
