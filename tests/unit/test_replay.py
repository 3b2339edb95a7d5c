"""The replay console's rules: what a filter selects, what a dry run would replay, and that a replay repeated
finds nothing more to do; the audit log's diff and search rules, and that nothing can rewrite audit rows."""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dramatiq import Message
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, update
from sqlalchemy.exc import DatabaseError

import db
from core.audit import AuditQuery, AuditQueryInvalid, Change, diff
from core.commands import QUEUES
from core.replay import (
    DEFAULT_IN_FLIGHT,
    ItemKind,
    ReplayFilter,
    ReplayFilterInvalid,
    ReplayItem,
    dead_letter,
    failed_delivery,
    last_error,
    plan_replay,
    replayed_message,
    why_not_replayable,
)
from core.services import replay as service
from db import tables as t
from db.audit import AuditRepository

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ACTORS = ("render.render_asset", "production.route_order", "webhooks.apply_partner_event",
          "tracking.apply_carrier_event", "notify.send_notification")
ERRORS = ("StorageUnavailable: s3 down", "KeyError: 'job'", "unknown job", "unknown tracking code", "Timeout")
SOURCES = ("partner:acme", "partner:inkhaus", "carrier:easypost", "shopify")
STATUSES = ("rejected", "failed", "received", "processed", "ignored")


# ---- strategies -------------------------------------------------------------------------------------------

ages = st.integers(min_value=0, max_value=3 * 24 * 3600).map(lambda s: timedelta(seconds=s))


@st.composite
def items(draw) -> ReplayItem:
    age = draw(ages)
    if draw(st.booleans()):
        queue = draw(st.sampled_from(QUEUES))
        redis_id = draw(st.uuids()).hex
        return ReplayItem(key=f"dlq:{queue}:{redis_id}", kind=ItemKind.DEAD_LETTER, stage=queue,
                          actor=draw(st.sampled_from(ACTORS)), error=draw(st.sampled_from(ERRORS)),
                          failed_at=NOW - age, status="dead", summary="order_id='o-1'", queue=queue,
                          redis_id=redis_id, source=draw(st.none() | st.sampled_from(SOURCES)))
    inbox_id = draw(st.integers(min_value=1, max_value=10_000))
    source = draw(st.sampled_from(SOURCES))
    return ReplayItem(key=f"inbox:{inbox_id}", kind=ItemKind.WEBHOOK, stage=draw(st.sampled_from(QUEUES)),
                      actor=draw(st.sampled_from(ACTORS)), error=draw(st.sampled_from(ERRORS)),
                      failed_at=NOW - age, status=draw(st.sampled_from(STATUSES)), summary="job.status e-1",
                      source=source, inbox_id=inbox_id, last_attempt_at=NOW - draw(ages))


words = st.sampled_from(["", "render", "PARTNER", "apply", "unknown", "acme", "easypost", "storage", "zzz"])


@st.composite
def filters(draw) -> ReplayFilter:
    low = draw(st.none() | ages)
    high = draw(st.none() | ages)
    if low is not None and high is not None and low > high:
        low, high = high, low
    return ReplayFilter(kinds=frozenset(draw(st.sets(st.sampled_from(list(ItemKind)), min_size=1))),
                        stages=frozenset(draw(st.sets(st.sampled_from(QUEUES), max_size=3))),
                        actor=draw(words), error=draw(words), source=draw(words), min_age=low, max_age=high)


# ---- selection --------------------------------------------------------------------------------------------


@given(st.lists(items(), max_size=30), filters())
def test_a_dry_run_lists_each_matching_item_once_oldest_first_either_to_replay_or_with_a_reason(listed, wanted):
    # when the dry run plans the listed items
    plan = plan_replay(listed, wanted, now=NOW)
    # then it holds exactly the matching items, each once, replayable or skipped with a reason
    planned = [*plan.replay, *(item for item, _ in plan.skipped)]
    keys = [item.key for item in planned]
    assert len(keys) == len(set(keys))
    assert set(keys) == {item.key for item in listed if wanted.matches(item, now=NOW)}
    assert all(why_not_replayable(item, now=NOW) is None for item in plan.replay)
    assert all(reason for _, reason in plan.skipped)
    assert [i.failed_at for i in plan.replay] == sorted(i.failed_at for i in plan.replay)
    assert plan.count == len(plan.replay) == len(plan.dead_letters) + len(plan.webhooks)


@given(st.lists(items(), max_size=30), filters(), words, st.sampled_from(["actor", "error", "source"]))
def test_narrowing_a_filter_never_selects_more(listed, wanted, word, field):
    # given a filter, and the same filter with one more text constraint
    narrower = replace(wanted, **{field: word}) if not getattr(wanted, field) else wanted
    # then the narrower one selects a subset
    broad = {i.key for i in plan_replay(listed, wanted, now=NOW).replay}
    narrow = {i.key for i in plan_replay(listed, narrower, now=NOW).replay}
    assert narrow <= broad


@given(st.lists(items(), max_size=30), filters(), st.data())
def test_choosing_items_replays_only_chosen_ones_that_the_filter_also_selects(listed, wanted, data):
    chosen = data.draw(st.sets(st.sampled_from([i.key for i in listed] + ["inbox:0"])) if listed else st.just(set()))
    every = {i.key for i in plan_replay(listed, wanted, now=NOW).replay}
    picked = {i.key for i in plan_replay(listed, wanted, now=NOW, chosen=chosen).replay}
    assert picked == every & chosen


@given(st.lists(items(), max_size=30), filters())
def test_replaying_a_selection_again_finds_nothing_to_do(listed, wanted):
    # given the dry run of a selection
    plan = plan_replay(listed, wanted, now=NOW)
    chosen = [i.key for i in plan.replay]
    # when it is replayed: dead letters leave the dead letters, webhooks are re-opened and re-driven now
    replayed = {i.key for i in plan.replay}
    after = [replace(i, status="received", error="not applied yet", last_attempt_at=NOW)
             if i.key in replayed and i.kind == ItemKind.WEBHOOK else i
             for i in listed if not (i.key in replayed and i.kind == ItemKind.DEAD_LETTER)]
    # then a replay of the same selection, even a minute later, would do nothing
    later = NOW + DEFAULT_IN_FLIGHT / 2
    assert plan_replay(after, wanted, now=later, chosen=chosen).replay == ()


@given(items())
def test_what_is_replayable(item):
    reason = why_not_replayable(item, now=NOW)
    if item.kind == ItemKind.DEAD_LETTER:
        assert reason is None
    elif item.source == "shopify":
        assert "not applied by a worker" in reason
    elif item.status in ("rejected", "failed"):
        assert reason is None
    elif item.status == "received":
        assert (reason is None) == (NOW - item.last_attempt_at >= DEFAULT_IN_FLIGHT)
    else:
        assert reason == f"already {item.status}"


def test_text_filters_match_anywhere_in_any_case_and_ages_count_from_the_failure():
    item = ReplayItem(key="dlq:render:1", kind=ItemKind.DEAD_LETTER, stage="render", actor="render.render_asset",
                      error="StorageUnavailable: bucket gone", failed_at=NOW - timedelta(minutes=30), status="dead",
                      summary="", source=None)
    assert ReplayFilter(actor="RENDER_ASSET", error="storageunavailable").matches(item, now=NOW)
    assert ReplayFilter(min_age=timedelta(minutes=30), max_age=timedelta(minutes=30)).matches(item, now=NOW)
    assert not ReplayFilter(min_age=timedelta(minutes=31)).matches(item, now=NOW)
    assert not ReplayFilter(stages=frozenset({"qa"})).matches(item, now=NOW)
    assert not ReplayFilter(source="acme").matches(item, now=NOW)  # no source: a partner filter leaves it out
    assert not ReplayFilter(kinds=frozenset({ItemKind.WEBHOOK})).matches(item, now=NOW)


@pytest.mark.parametrize("low, high, says", [(10, 5, "above the maximum"), (-1, None, "can't be negative"),
                                             (None, -2, "can't be negative")])
def test_a_contradictory_age_filter_is_refused_with_a_reason(low, high, says):
    with pytest.raises(ReplayFilterInvalid, match=says):
        ReplayFilter(min_age=None if low is None else timedelta(minutes=low),
                     max_age=None if high is None else timedelta(minutes=high))


# ---- dead letters and webhook rows as items -------------------------------------------------------------


def test_a_dead_letter_reads_its_actor_arguments_retries_and_last_error_from_the_dramatiq_message():
    message = Message(queue_name="render.DQ", actor_name="render.render_asset", args=(), kwargs={"order_id": "o-7"},
                      options={"retries": 3, "traceback": "Traceback…\n  File x\nStorageUnavailable: s3 down\n",
                               "redis_message_id": "r-1", "eta": 1, "max_retries": 2}).asdict()
    item = dead_letter("render", "r-1", message, dead_at=NOW)
    assert (item.key, item.stage, item.actor, item.retries) == ("dlq:render:r-1", "render", "render.render_asset", 3)
    assert item.error == "StorageUnavailable: s3 down"
    assert item.summary == "order_id='o-7'"
    assert last_error(None) == "no error recorded (it failed on its only try)"


def test_a_replayed_message_keeps_its_id_and_arguments_on_its_stage_queue_with_fresh_retries():
    message = Message(queue_name="render.DQ", actor_name="render.render_asset", args=(), kwargs={"order_id": "o-7"},
                      options={"retries": 3, "traceback": "boom", "redis_message_id": "r-1", "eta": 1,
                               "requeue_timestamp": 5, "max_retries": 2}).asdict()
    again = replayed_message(message, queue="render", redis_id="r-2", at_ms=1_000)
    assert again["message_id"] == message["message_id"] and again["kwargs"] == {"order_id": "o-7"}
    assert again["queue_name"] == "render" and again["message_timestamp"] == 1_000
    assert again["options"] == {"max_retries": 2, "redis_message_id": "r-2", "replays": 1, "replayed_at": 1_000}
    assert replayed_message(again, queue="render", redis_id="r-3", at_ms=2_000)["options"]["replays"] == 2
    assert Message(**again).kwargs == {"order_id": "o-7"}  # still a message Dramatiq decodes


@pytest.mark.parametrize("source, stage, actor", [("partner:acme", "webhooks", "webhooks.apply_partner_event"),
                                                  ("carrier:easypost", "tracking", "tracking.apply_carrier_event")])
def test_a_failed_webhook_is_listed_under_the_command_the_api_sends_for_it(source, stage, actor):
    row = {"id": 4, "source": source, "event_id": "e-1", "topic": "job.status", "status": "rejected",
           "error": "unknown job", "received_at": NOW - timedelta(hours=1), "processed_at": NOW - timedelta(minutes=59),
           "redriven_at": None}
    item = failed_delivery(row)
    assert (item.key, item.stage, item.actor, item.error) == ("inbox:4", stage, actor, "unknown job")
    assert item.failed_at == NOW - timedelta(minutes=59)
    unapplied = failed_delivery(row | {"status": "received", "error": None, "processed_at": None})
    assert (unapplied.error, unapplied.failed_at) == ("not applied yet", NOW - timedelta(hours=1))


# ---- audit: the diff, the search, append-only ---------------------------------------------------------------

json_values = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
documents = st.dictionaries(st.sampled_from("abcde"), json_values | st.dictionaries(st.sampled_from("xy"),
                                                                                   json_values, max_size=2),
                            max_size=5)


@given(documents, documents)
def test_a_diff_names_every_field_once_and_rebuilds_after_from_before(before, after):
    changes = diff(before, after)
    assert [c.field for c in changes] == sorted({c.field for c in changes})
    rebuilt = {c.field: c.before for c in changes if c.change != Change.ADDED}
    for c in changes:
        if c.change == Change.REMOVED:
            del rebuilt[c.field]
        elif c.change in (Change.ADDED, Change.CHANGED):
            rebuilt[c.field] = c.after
    assert rebuilt == {c.field: c.after for c in diff({}, after)}
    assert all(c.change == Change.SAME for c in diff(before, before))


def test_a_diff_of_a_status_change_shows_the_field_that_moved():
    assert [(c.field, c.change, c.before, c.after) for c in diff({"status": "open", "size": 3},
                                                                 {"status": "held", "size": 3})] == [
        ("size", Change.SAME, 3, 3), ("status", Change.CHANGED, "open", "held")]
    assert [(c.field, c.change) for c in diff(None, {"verdict": "approve"})] == [("verdict", Change.ADDED)]


@settings(max_examples=50)
@given(st.integers(min_value=0, max_value=500), st.integers(min_value=1, max_value=50))
def test_audit_pages_cover_every_row_once(total, page_size):
    query = AuditQuery(page_size=page_size)
    pages = query.pages(total)
    offsets = [AuditQuery(page=p, page_size=page_size).offset for p in range(1, pages + 1)]
    assert offsets == list(range(0, max(total, 1), page_size))[:pages] and pages >= 1


def test_an_audit_search_whose_range_ends_before_it_starts_is_refused():
    with pytest.raises(AuditQueryInvalid, match="ends before it starts"):
        AuditQuery(since=NOW, until=NOW - timedelta(days=1))
    with pytest.raises(AuditQueryInvalid):
        AuditQuery(page=0)


def test_the_audit_repository_can_only_add_rows():
    public = {name for name, _ in inspect.getmembers(AuditRepository, inspect.isfunction) if not name.startswith("_")}
    assert public == {"record"}
    source = inspect.getsource(AuditRepository)
    assert "update(" not in source and "delete(" not in source


def test_no_code_path_updates_or_deletes_audit_rows():
    # every module of ours that names the audit table only inserts into it or selects from it
    writes = re.compile(r"(update|delete)\(\s*(t\.)?audit_log|audit_log\.(update|delete)\(|"
                        r"(UPDATE|DELETE\s+FROM)\s+audit_log", re.IGNORECASE)
    offenders = []
    for folder in ("core", "db", "app", "api", "workers", "adapters", "pages"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            text = path.read_text()
            ast.parse(text)
            if writes.search(text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


@pytest.mark.parametrize("statement", ["update", "delete"])
def test_the_database_refuses_to_change_or_remove_an_audit_row(sqlite_url, statement):
    # given a migrated SQLite database holding one audit row
    engine = db.make_engine(sqlite_url)
    a = t.audit_log
    with engine.begin() as conn:
        conn.execute(insert(a).values(at=NOW, actor="olga", action="batch.hold", target_type="batch", target_id="b1",
                                      order_id=None, before={"status": "open"}, after={"status": "held"}))
    # when anything tries to rewrite or remove it, then the database refuses and the row stays as written
    change = update(a).values(actor="mallory") if statement == "update" else a.delete()
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(change)
    with engine.connect() as conn:
        assert conn.execute(a.select()).one().actor == "olga"
    engine.dispose()


# ---- the service, on a real database, with a fake dead-letter store --------------------------------------


class FakeDeadLetters:
    """The DeadLetterStore port in memory: letters listed until replayed; `taken` ones another console took."""

    def __init__(self, letters: list[ReplayItem], *, taken: frozenset[str] = frozenset()) -> None:
        self.letters = {letter.key: letter for letter in letters}
        self.taken = taken
        self.replayed: list[str] = []

    def dead_letters(self) -> list[ReplayItem]:
        return list(self.letters.values())

    def replay(self, item: ReplayItem, *, at: datetime) -> bool:
        if self.letters.pop(item.key, None) is None or item.key in self.taken:
            return False
        self.replayed.append(item.key)
        return True


@pytest.fixture
def store(seeded_sqlite):
    """A unit of work on a migrated, seeded SQLite database whose deferred messages go to a StubBroker."""
    from dramatiq.brokers.stub import StubBroker

    from adapters.broker import DramatiqBus
    from tests.conftest import settings_for

    db.configure(settings_for(seeded_sqlite))
    engine = db.make_engine(seeded_sqlite)
    broker = StubBroker()
    for queue in QUEUES:
        broker.declare_queue(queue)
    yield engine, lambda: db.SqlUnitOfWork(db.make_session_factory(engine), DramatiqBus(broker)), broker
    engine.dispose()


def _rejected_partner_event(engine, *, partner: str = "inkhaus") -> int:
    with engine.begin() as conn:
        conn.execute(insert(t.webhook_inbox).values(
            source=f"partner:{partner}", event_id="evt_1", topic="job.status", body="{}",
            received_at=NOW - timedelta(hours=2), processed_at=NOW - timedelta(hours=2), status="rejected",
            error="unknown job"))
        return conn.execute(t.webhook_inbox.select()).one().id


def _letter(actor: str, kwargs: dict, *, queue: str, n: int = 1) -> ReplayItem:
    message = Message(queue_name=queue, actor_name=actor, args=(), kwargs=kwargs, options={"retries": 10}).asdict()
    return dead_letter(queue, f"r-{n}", message, dead_at=NOW - timedelta(hours=1))


def test_a_dead_letter_that_applies_a_webhook_carries_that_webhooks_partner(store):
    engine, uow, _ = store
    inbox_id = _rejected_partner_event(engine)
    letters = FakeDeadLetters([_letter("webhooks.apply_partner_event", {"inbox_id": inbox_id}, queue="webhooks"),
                               _letter("render.render_asset", {"order_id": "o-1"}, queue="render", n=2)])
    plan = service.dry_run(uow(), letters, ReplayFilter(source="inkhaus"), now=NOW)
    assert sorted(i.key for i in plan.replay) == ["dlq:webhooks:r-1", f"inbox:{inbox_id}"]


def test_a_replay_audits_first_then_moves_dead_letters_and_reports_those_already_gone(store):
    # given a rejected partner webhook and two dead letters, one of which another console replays meanwhile
    engine, uow, broker = store
    inbox_id = _rejected_partner_event(engine)
    letters = FakeDeadLetters([_letter("render.render_asset", {"order_id": "o-1"}, queue="render"),
                               _letter("render.render_asset", {"order_id": "o-2"}, queue="render", n=2)],
                              taken=frozenset({"dlq:render:r-2"}))
    # when the ops manager replays everything
    outcome = service.replay(uow(), letters, ReplayFilter(), actor="olive", now=NOW, new_id=lambda p: f"{p}_1")
    # then one dead letter moved, one was gone, the webhook was re-opened and its apply command queued
    assert (outcome.run_id, outcome.dead_letters, outcome.gone) == ("rpl_1", ("dlq:render:r-1",), ("dlq:render:r-2",))
    assert outcome.webhooks == (f"inbox:{inbox_id}",)
    with engine.connect() as conn:
        row = conn.execute(t.webhook_inbox.select()).one()
        [audited] = conn.execute(t.audit_log.select()).all()
    assert (row.status, row.error, row.redriven_at) == ("received", None, NOW)
    assert [(m.actor_name, m.kwargs) for m in map(Message.decode, broker.queues["webhooks"].queue)] == [
        ("webhooks.apply_partner_event", {"inbox_id": inbox_id})]
    # and the audit row names all three (what was selected), with the counts
    assert (audited.actor, audited.action, audited.target_id) == ("olive", "replay.run", "rpl_1")
    assert audited.after == {"dead_letters": 2, "webhooks": 1, "skipped": 0}
    # and a second replay at once finds nothing: the webhook is being applied, the letters are gone
    again = service.replay(uow(), letters, ReplayFilter(), actor="olive", now=NOW + timedelta(seconds=30),
                           new_id=lambda p: f"{p}_2")
    assert (again.count, again.run_id) == (0, None)
    with engine.connect() as conn:
        assert len(conn.execute(t.audit_log.select()).all()) == 1
