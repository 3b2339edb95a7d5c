"""The unit of work: one transaction, the timeline written inside it, stage messages sent after it."""

from __future__ import annotations

import logging
import threading
import weakref

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from core.commands import StageCommand
from core.errors import Conflict
from core.model import Aggregate
from core.ports import MessageBus
from db import repositories as r
from db import tables as t
from db.admin import (
    FeatureFlagRepository,
    PartnerSettingsRepository,
    ProhibitedWordRepository,
    StaffRepository,
)
from db.audit import AuditRepository, SettingsRepository
from db.monitoring import MonitorReader
from db.notifications import NotificationRepository

log = logging.getLogger(__name__)
_SEEN = "pressroom.seen"  # Session.info key: the unit of work's list of aggregates to keep alive until commit
_watched: weakref.WeakSet[sessionmaker] = weakref.WeakSet()
_watching = threading.Lock()


def _see(session, obj) -> None:
    seen = session.info.get(_SEEN)
    if seen is not None and isinstance(obj, Aggregate):
        seen.append(obj)


def _watch(session_factory: sessionmaker) -> None:
    """Listen once per session factory: a listener added to each new Session instance cost ~0.25 ms apiece in
    SQLAlchemy's event registry (about 1 ms of a checkout's CPU with two units of work)."""
    if session_factory in _watched:
        return
    with _watching:
        if session_factory not in _watched:
            event.listen(session_factory, "loaded_as_persistent", _see)
            event.listen(session_factory, "transient_to_pending", _see)
            event.listen(session_factory, "detached_to_persistent", _see)  # rows inserted by hand, then attached
            _watched.add(session_factory)


class SqlUnitOfWork:
    """`with uow: …; uow.commit()` — leaving the block without commit rolls back (the default).

    On commit, every event the touched aggregates recorded goes to `order_events` in the same transaction
    (duplicates by dedupe key are absorbed); deferred stage commands are sent only once the commit is
    durable, so a message never points at a state that was rolled back.
    """

    def __init__(self, session_factory: sessionmaker, bus: MessageBus | None = None) -> None:
        self.session_factory = session_factory
        self.bus = bus
        self._deferred: list[StageCommand] = []
        _watch(session_factory)

    def __enter__(self) -> SqlUnitOfWork:
        self.session = self.session_factory()
        self._deferred = []
        # The identity map holds objects weakly: an aggregate loaded in a helper and already autoflushed
        # could be garbage-collected before commit, taking its unwritten events with it. Keep them alive.
        self._seen: list[Aggregate] = []
        self.session.info[_SEEN] = self._seen
        self.orders = r.OrderRepository(self.session)
        self.jobs = r.JobRepository(self.session)
        self.customers = r.CustomerRepository(self.session)
        self.catalogue = r.CatalogueReader(self.session)
        self.artworks = r.ArtworkRepository(self.session)
        self.stock = r.StockRepository(self.session)
        self.idempotency = r.IdempotencyRepository(self.session)
        self.rejections = r.RejectionRepository(self.session)
        self.timeline = r.TimelineRepository()
        self.inbox = r.InboxRepository(self.session)
        self.queue_samples = r.QueueSampleRepository(self.session)
        self.templates = r.TemplateRepository(self.session)
        self.assets = r.AssetRepository(self.session)
        self.alerts = r.AlertRepository(self.session)
        self.variants = r.VariantReader(self.session)
        self.batches = r.BatchRepository(self.session)
        self.partners = r.PartnerRepository(self.session)
        self.inspections = r.InspectionRepository(self.session)
        self.audit = AuditRepository(self.session)
        self.settings_store = SettingsRepository(self.session)
        self.notifications = NotificationRepository(self.session)
        self.shipments = r.ShipmentRepository(self.session)
        self.monitoring = MonitorReader(self.session)
        self.partner_settings = PartnerSettingsRepository(self.session)
        self.prohibited_words = ProhibitedWordRepository(self.session)
        self.flags = FeatureFlagRepository(self.session)
        self.staff = StaffRepository(self.session)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.session.rollback()
        self.session.close()
        if isinstance(exc, IntegrityError | StaleDataError):
            # a statement a repository executed itself (a multi-row or combined INSERT) lost a race on a unique
            # key: the same Conflict as at flush or commit, so the caller's answer to a concurrent writer applies
            raise Conflict(f"Concurrent update: {type(exc).__name__}") from exc

    def defer(self, command: StageCommand) -> None:
        """Send `command` after the commit succeeds (dropped on rollback)."""
        self._deferred.append(command)

    def commit(self) -> None:
        """Write the timeline, commit, then send deferred messages.

        Raises:
            Conflict: a unique key or an aggregate's version was taken by a concurrent writer.
        """
        try:
            self._write_pending()
            self.session.commit()
        except (IntegrityError, StaleDataError) as error:
            self.session.rollback()
            raise Conflict(f"Concurrent update: {type(error).__name__}") from error
        deferred, self._deferred = self._deferred, []
        if not deferred:
            return
        if self.bus is None:
            for command in deferred:
                log.warning("no message bus: %s for %s not sent", type(command).__name__, command.kwargs())
            return
        send_many = getattr(self.bus, "send_many", None)  # one round trip for several (adapters.broker)
        if send_many is not None and len(deferred) > 1:
            try:
                failed = send_many(deferred)
            except Exception as error:
                failed = [(command, error) for command in deferred]
            for command, error in failed:  # the commit stands; the reconciler re-drives what these would have
                log.error("could not send %s %s; the reconciler will re-drive it", type(command).__name__,
                          command.kwargs(), exc_info=error)
            return
        for command in deferred:
            try:
                self.bus.send(command)
            except Exception:  # the commit stands; the reconciler re-drives what this message would have
                log.exception("could not send %s %s; the reconciler will re-drive it",
                              type(command).__name__, command.kwargs())

    def flush(self) -> None:
        """Write what is pending (rows and the timeline) without committing: a service that takes a contended
        row lock writes everything else first, so it holds that lock only until the commit.

        Raises:
            Conflict: as `commit` (the transaction is rolled back).
        """
        try:
            self._write_pending()
        except (IntegrityError, StaleDataError) as error:
            self.session.rollback()
            raise Conflict(f"Concurrent update: {type(error).__name__}") from error

    def _write_pending(self) -> None:
        self.session.flush()
        events = list(self.timeline.pending)
        self.timeline.pending.clear()
        for obj in self._seen:
            if obj.events:
                events.extend(obj.events)
                obj.events.clear()
        r.insert_ignoring_duplicates(self.session, t.order_events, [r.event_row(e) for e in events], "dedupe_key")

    def rollback(self) -> None:
        self.session.rollback()
        self._deferred = []
