"""Staff batch actions on SQLite through the real pipeline: hold, release, split, merge, reprioritise, rules."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dramatiq import Message
from sqlalchemy import select

from core.commands import SubmitBatch, actor_name
from core.errors import PressroomError
from core.production import BatchingError, PriorityWeights, ProductionSettingsInvalid
from core.services import batches as b
from core.services.production import ProductionRules, batch_ready_jobs, route_order
from core.services.render import render_order
from core.states import BatchStatus, JobStatus
from db import queries as q
from db import tables as t
from tests.conftest import ApiHarness, png_bytes

ADDRESSES = {
    "GB": {"name": "Ada Lovelace", "line1": "12 Marylebone Rd", "city": "London", "region": "LND",
           "postal_code": "NW1 5LR", "country": "GB"},
    "DE": {"name": "Grace Hopper", "line1": "Unter den Linden 1", "city": "Berlin", "postal_code": "10117",
           "country": "DE"},
}
TEXTS = {"MUG": {"name": "Ada"}, "CASE": {"initials": "AL"}}
ARTWORK = {"MUG": (2400, 1200), "CASE": (1200, 2400)}
# (name, sku, quantity, country, shipping speed). Mugs to the UK and to Germany both go to Berlin's
# sublimation line but batch apart (destination region); the phone case goes to Toronto's UV line.
ORDERS = (
    ("uk_express", "MUG-SUB-11OZ-WHT", 1, "GB", "express"),
    ("uk_standard", "MUG-SUB-11OZ-WHT", 2, "GB", "standard"),
    ("de_high_value", "MUG-SUB-15OZ-WHT", 8, "DE", "standard"),  # 8 × 19.00 ≥ the 150.00 high-value mark
    ("uk_case", "CASE-UV-IP15", 1, "GB", "standard"),
)
UK_MUGS, DE_MUGS, UK_CASES = ("spree-berlin", "mug", "sublimation", "uk"), ("spree-berlin", "mug", "sublimation",
                                                                             "eu"), ("maple-toronto", "phone_case",
                                                                                     "uv", "uk")
ACTOR = "olive"


def place_and_route(api: ApiHarness, orders=ORDERS) -> dict[str, str]:
    """Orders placed over HTTP, rendered and routed by the real services: name → order id."""
    artwork = {kind: api.upload(png_bytes(*size, colour=(30, 90, 200)))["id"] for kind, size in ARTWORK.items()}
    placed = {}
    for name, sku, quantity, country, speed in orders:
        kind = sku.split("-")[0]
        body = api.order_body(artwork[kind], shipping_speed=speed, shipping_address=ADDRESSES[country])
        body["lines"][0].update(sku=sku, quantity=quantity, texts=TEXTS[kind])
        response = api.client.post("/v1/orders", json=body)
        assert response.status_code == 201, response.text
        placed[name] = response.json()["id"]
    svc = api.services
    for order_id in placed.values():
        rendered = render_order(order_id, uow=svc.uow(), store=svc.store, now=svc.now, clock=time.perf_counter)
        assert rendered == "rendered"
        assert route_order(order_id, uow=svc.uow(), now=svc.now(), rules=ProductionRules()) == "routed"
    return placed


@dataclass
class Shop:
    api: ApiHarness
    orders: dict[str, str]

    def uow(self):
        return self.api.services.uow()

    def batch(self, *, now: datetime | None = None, rules: ProductionRules = ProductionRules()) -> list[str]:
        return batch_ready_jobs(self.uow(), now=now or datetime.now(UTC), rules=rules,
                                new_id=self.api.services.ids.new)

    def kw(self, **extra):
        return {"uow": self.uow(), "actor": ACTOR, "at": datetime.now(UTC), "new_id": self.api.services.ids.new} | extra

    def rows(self, statement):
        with self.api.services.engine.connect() as conn:
            return conn.execute(statement).all()

    def batches_of(self, group: tuple[str, str, str, str]) -> list:
        bt = t.batches
        return self.rows(select(bt).where(bt.c.partner_id == group[0], bt.c.product_type == group[1],
                                          bt.c.print_method == group[2], bt.c.region == group[3])
                         .order_by(bt.c.created_at, bt.c.id))

    def batch_of(self, group) -> str:
        [row] = [row for row in self.batches_of(group) if row.status in (BatchStatus.OPEN, BatchStatus.HELD)]
        return row.id

    def jobs_in(self, batch_id: str) -> list[str]:
        return sorted(row.id for row in self.rows(select(t.print_jobs.c.id).where(t.print_jobs.c.batch_id == batch_id)))

    def status(self, batch_id: str) -> str:
        return self.rows(select(t.batches.c.status).where(t.batches.c.id == batch_id))[0][0]

    def submit_messages(self) -> list:
        messages = [Message.decode(data) for data in self.api.queued(SubmitBatch.QUEUE)]
        return [m for m in messages if m.actor_name == actor_name(SubmitBatch)]

    def audit(self, action: str) -> list:
        a = t.audit_log
        return self.rows(select(a).where(a.c.action == action).order_by(a.c.id))

    def staff_events(self) -> list:
        e = t.order_events
        return self.rows(select(e).where(e.c.type == "staff.action").order_by(e.c.id))


@pytest.fixture(scope="module")
def _routed(_seeded_sqlite_template, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("batch_actions")
    path = folder / "routed.db"
    shutil.copy(_seeded_sqlite_template, path)
    api = ApiHarness(f"sqlite:///{path}", folder)
    placed = place_and_route(api)
    api.services.engine.dispose()
    return path, placed


@pytest.fixture
def shop(_routed, tmp_path) -> Shop:
    """Four routed orders, batched now into three open batches (none full, none old)."""
    path = tmp_path / "shop.db"
    shutil.copy(_routed[0], path)
    api = ApiHarness(f"sqlite:///{path}", tmp_path)
    shop = Shop(api=api, orders=_routed[1])
    assert shop.batch() == []
    yield shop
    api.services.engine.dispose()


# ---- hold and release ------------------------------------------------------------------------------------------


def test_a_held_batch_is_not_released_automatically_even_once_it_is_old(shop):
    # given the UK mugs' batch held, and the German mugs' batch left open
    held, open_ = shop.batch_of(UK_MUGS), shop.batch_of(DE_MUGS)
    b.hold_batch(held, **shop.kw())
    # when the batcher runs two hours later, long past the longest wait
    released = shop.batch(now=datetime.now(UTC) + timedelta(hours=2))
    # then the open batch went on age, the held one did not
    assert open_ in released and held not in released
    assert shop.status(held) == BatchStatus.HELD
    assert {m.kwargs["batch_id"] for m in shop.submit_messages()} == set(released)


def test_a_held_batch_takes_no_new_jobs(shop):
    held = shop.batch_of(UK_MUGS)
    b.hold_batch(held, **shop.kw())

    extra = place_and_route(shop.api, (("late_mug", "MUG-SUB-11OZ-WHT", 1, "GB", "standard"),))
    shop.batch()

    late_jobs = shop.rows(select(t.print_jobs.c.batch_id).where(t.print_jobs.c.order_id == extra["late_mug"]))
    assert late_jobs[0].batch_id != held
    assert shop.status(late_jobs[0].batch_id) == BatchStatus.OPEN


def test_releasing_a_batch_defers_exactly_one_submit_batch_message_sent_after_commit(shop):
    batch_id = shop.batch_of(UK_MUGS)

    b.release_batch(batch_id, **shop.kw())

    assert shop.status(batch_id) == BatchStatus.RELEASED
    [message] = shop.submit_messages()
    assert message.kwargs == {"batch_id": batch_id}
    assert message.queue_name == "production"


def test_a_held_batch_can_be_released_by_hand(shop):
    batch_id = shop.batch_of(UK_MUGS)
    b.hold_batch(batch_id, **shop.kw())

    b.release_batch(batch_id, **shop.kw())

    assert shop.status(batch_id) == BatchStatus.RELEASED
    assert len(shop.submit_messages()) == 1


def test_releasing_twice_is_refused_and_sends_nothing_more(shop):
    batch_id = shop.batch_of(UK_MUGS)
    b.release_batch(batch_id, **shop.kw())

    with pytest.raises(BatchingError, match="is released: only an open or held batch can be released. "
                                            "It has already gone to spree-berlin"):
        b.release_batch(batch_id, **shop.kw())

    assert len(shop.submit_messages()) == 1
    assert len(shop.audit(b.RELEASE)) == 1


def test_holding_twice_is_refused_and_audited_once(shop):
    batch_id = shop.batch_of(UK_MUGS)
    b.hold_batch(batch_id, **shop.kw())

    with pytest.raises(BatchingError, match="only an open batch can be held"):
        b.hold_batch(batch_id, **shop.kw())

    assert shop.submit_messages() == []
    assert len(shop.audit(b.HOLD)) == 1


# ---- split, merge, reprioritise -------------------------------------------------------------------------------


def test_split_moves_the_tail_to_a_new_open_batch_of_the_same_group_and_keeps_every_job(shop):
    # given the German mugs' batch of 8 jobs
    batch_id = shop.batch_of(DE_MUGS)
    before = shop.jobs_in(batch_id)
    [original] = [row for row in shop.batches_of(DE_MUGS) if row.id == batch_id]
    # when it is split keeping the first 3
    new_id = b.split_batch(batch_id, 3, policy=ProductionRules().batching, **shop.kw())
    # then 3 stay, 5 move to a new open batch of the same group that keeps the original's opening time
    kept, moved = shop.jobs_in(batch_id), shop.jobs_in(new_id)
    assert (len(kept), len(moved)) == (3, 5)
    assert Counter(kept + moved) == Counter(before)
    [new] = [row for row in shop.batches_of(DE_MUGS) if row.id == new_id]
    assert new.status == BatchStatus.OPEN and new.created_at == original.created_at
    assert new.target_size == original.target_size
    statuses = {row.status for row in shop.rows(select(t.print_jobs.c.status)
                                                .where(t.print_jobs.c.batch_id.in_([batch_id, new_id])))}
    assert statuses == {JobStatus.BATCHED}


def test_splitting_keeps_the_most_urgent_jobs_in_front(shop):
    batch_id = shop.batch_of(UK_MUGS)  # the express mug and two standard ones
    express_job = shop.rows(select(t.print_jobs.c.id).where(t.print_jobs.c.order_id == shop.orders["uk_express"]))

    new_id = b.split_batch(batch_id, 1, policy=ProductionRules().batching, **shop.kw())

    assert shop.jobs_in(batch_id) == [express_job[0].id]
    assert len(shop.jobs_in(new_id)) == 2


@pytest.mark.parametrize("at_index", [0, 8, 9, -1])
def test_a_split_that_would_leave_an_empty_batch_is_refused(shop, at_index):
    batch_id = shop.batch_of(DE_MUGS)

    with pytest.raises(BatchingError, match="would leave an empty batch"):
        b.split_batch(batch_id, at_index, policy=ProductionRules().batching, **shop.kw())

    assert len(shop.batches_of(DE_MUGS)) == 1 and len(shop.jobs_in(batch_id)) == 8
    assert shop.audit(b.SPLIT) == []


def test_merge_moves_every_job_into_the_first_batch_and_cancels_the_second(shop):
    batch_id = shop.batch_of(DE_MUGS)
    everything = shop.jobs_in(batch_id)
    tail = b.split_batch(batch_id, 5, policy=ProductionRules().batching, **shop.kw())

    b.merge_batches(batch_id, tail, policy=ProductionRules().batching, **shop.kw())

    assert shop.jobs_in(batch_id) == everything
    assert shop.jobs_in(tail) == []
    assert shop.status(tail) == BatchStatus.CANCELLED
    assert shop.status(batch_id) == BatchStatus.OPEN


def test_merging_batches_of_different_groups_is_refused_and_changes_nothing(shop):
    uk, de = shop.batch_of(UK_MUGS), shop.batch_of(DE_MUGS)

    with pytest.raises(BatchingError, match="same partner, product type, print method and destination region"
                                            ".*differ in region uk vs eu"):
        b.merge_batches(uk, de, policy=ProductionRules().batching, **shop.kw())

    assert len(shop.jobs_in(uk)) == 3 and len(shop.jobs_in(de)) == 8
    assert shop.status(de) == BatchStatus.OPEN
    assert shop.audit(b.MERGE) == [] and shop.staff_events() == []


def test_merging_a_batch_with_itself_is_refused(shop):
    uk = shop.batch_of(UK_MUGS)

    with pytest.raises(BatchingError, match="cannot be merged with itself"):
        b.merge_batches(uk, uk, policy=ProductionRules().batching, **shop.kw())


def test_a_merge_over_the_largest_batch_is_refused(shop):
    batch_id = shop.batch_of(DE_MUGS)
    tail = b.split_batch(batch_id, 4, policy=ProductionRules().batching, **shop.kw())
    small = replace(ProductionRules().batching, min_size=2, max_size=6)

    with pytest.raises(BatchingError, match="largest allowed is 6"):
        b.merge_batches(batch_id, tail, policy=small, **shop.kw())


@pytest.mark.parametrize("action", ["split", "merge", "reprioritise", "hold"])
def test_a_batch_that_has_gone_to_its_partner_cannot_be_changed(shop, action):
    # given the German mugs split in two, and the first half released
    batch_id = shop.batch_of(DE_MUGS)
    other = b.split_batch(batch_id, 4, policy=ProductionRules().batching, **shop.kw())
    b.release_batch(batch_id, **shop.kw())
    before = shop.jobs_in(batch_id)
    # when staff try to change the released batch, they are told why not
    policy = ProductionRules().batching
    attempt = {"split": lambda: b.split_batch(batch_id, 2, policy=policy, **shop.kw()),
               "merge": lambda: b.merge_batches(other, batch_id, policy=policy, **shop.kw()),
               "reprioritise": lambda: b.reprioritise_batch(batch_id, 50.0, **shop.kw()),
               "hold": lambda: b.hold_batch(batch_id, **shop.kw())}[action]
    with pytest.raises(BatchingError, match=f"Batch {batch_id} is released: .*It has already gone to spree-berlin"):
        attempt()
    # then nothing moved
    assert shop.jobs_in(batch_id) == before and shop.status(batch_id) == BatchStatus.RELEASED
    assert len(shop.jobs_in(other)) == 4


def test_reprioritise_gives_every_job_of_the_batch_the_same_priority(shop):
    batch_id = shop.batch_of(DE_MUGS)

    b.reprioritise_batch(batch_id, 42.5, **shop.kw())

    priorities = {row.priority for row in shop.rows(select(t.print_jobs.c.priority)
                                                    .where(t.print_jobs.c.batch_id == batch_id))}
    assert priorities == {42.5}


def test_a_priority_that_is_not_a_number_is_refused(shop):
    with pytest.raises(BatchingError, match="ordinary number"):
        b.reprioritise_batch(shop.batch_of(DE_MUGS), float("nan"), **shop.kw())


def test_an_unknown_batch_is_not_found_with_a_sentence(shop):
    with pytest.raises(PressroomError, match="There is no batch bat_nope"):
        b.hold_batch("bat_nope", **shop.kw())


# ---- every action is audited and on the timeline ------------------------------------------------------------------


ACTIONS = {
    b.HOLD: lambda shop, batch_id: b.hold_batch(batch_id, **shop.kw()),
    b.RELEASE: lambda shop, batch_id: b.release_batch(batch_id, **shop.kw()),
    b.SPLIT: lambda shop, batch_id: b.split_batch(batch_id, 1, policy=ProductionRules().batching, **shop.kw()),
    b.REPRIORITISE: lambda shop, batch_id: b.reprioritise_batch(batch_id, 30.0, **shop.kw()),
}


@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_action_writes_one_audit_row_and_a_staff_action_on_each_affected_orders_timeline(shop, action):
    # given the UK mugs' batch: jobs of two orders
    batch_id = shop.batch_of(UK_MUGS)
    orders = {shop.orders["uk_express"], shop.orders["uk_standard"]}
    # when an ops manager acts on it
    ACTIONS[action](shop, batch_id)
    # then one audit row says who, when, what, on which batch, from what to what
    [row] = shop.audit(action)
    assert (row.actor, row.target_type, row.target_id) == (ACTOR, "batch", batch_id)
    assert row.at is not None and row.before["jobs"] and row.after is not None
    assert row.before != row.after
    # and each affected order's timeline has one staff.action line by the user
    events = shop.staff_events()
    assert {e.order_id for e in events} == orders and len(events) == len(orders)
    assert {e.source for e in events} == {f"user:{ACTOR}"}
    assert {e.payload["action"] for e in events} == {action}
    assert all(batch_id in e.payload["note"] for e in events)


def test_a_merge_is_audited_with_both_batches_before_and_after(shop):
    batch_id = shop.batch_of(DE_MUGS)
    tail = b.split_batch(batch_id, 2, policy=ProductionRules().batching, **shop.kw())

    b.merge_batches(batch_id, tail, policy=ProductionRules().batching, **shop.kw())

    [row] = shop.audit(b.MERGE)
    assert row.before["from"]["size"] == 6 and row.after["into"]["size"] == 8
    assert row.after["from"] == {"status": "cancelled", "target_size": row.before["from"]["target_size"],
                                 "size": 0, "jobs": []}
    assert {e.order_id for e in shop.staff_events() if e.payload["action"] == b.MERGE} == {
        shop.orders["de_high_value"]}


# ---- production rules: stored, loaded, previewed, applied -----------------------------------------------------


def open_jobs(shop) -> list[b.OpenJob]:
    return [b.OpenJob(**row) for row in q.open_jobs(shop.api.services.engine)]


def preview(shop, proposed: ProductionRules, current: ProductionRules = ProductionRules(), *, now=None):
    engine = shop.api.services.engine
    return b.preview_rules(open_jobs(shop), current=current, proposed=proposed,
                           partners_capacity=q.partner_capacity(engine), load=q.line_load(engine),
                           now=now or datetime.now(UTC))


def test_until_rules_are_saved_the_defaults_are_in_force(shop):
    defaults = ProductionRules(batching=replace(ProductionRules().batching, max_wait=timedelta(minutes=20)))

    assert b.load_production_rules(shop.uow(), defaults=defaults) == defaults


def test_saved_rules_are_loaded_back_and_audited(shop):
    rules = ProductionRules(priority=PriorityWeights(express=25.0, age_per_hour=1.0),
                            batching=replace(ProductionRules().batching, max_wait=timedelta(minutes=45), max_size=80))

    b.save_production_rules(rules, start_sla=timedelta(hours=3), **shop.kw())

    assert b.load_production_rules(shop.uow()) == rules
    [row] = shop.audit(b.EDIT_RULES)
    assert (row.actor, row.target_type, row.target_id, row.before) == (ACTOR, "settings", b.RULES_KEY, None)
    assert row.after["priority"]["express"] == 25.0 and row.after["batching"]["max_wait_s"] == 2700
    assert b.start_sla_from_document(row.after) == timedelta(hours=3)


def test_a_stored_rule_missing_a_field_keeps_that_fields_default(shop):
    with shop.api.services.engine.begin() as conn:
        conn.execute(t.settings.insert().values(key=b.RULES_KEY, value={"priority": {"express": 4}},
                                                updated_at=datetime.now(UTC), updated_by="test"))

    rules = b.load_production_rules(shop.uow())

    assert rules.priority == PriorityWeights(express=4.0)
    assert rules.batching == ProductionRules().batching and rules.routing == ProductionRules().routing


def test_unreadable_stored_rules_say_how_to_fix_them(shop):
    with shop.api.services.engine.begin() as conn:
        conn.execute(t.settings.insert().values(key=b.RULES_KEY, value={"batching": {"min_size": "many"}},
                                                updated_at=datetime.now(UTC), updated_by="test"))

    with pytest.raises(ProductionSettingsInvalid, match="save them again from the batch builder"):
        b.load_production_rules(shop.uow())


def test_unchanged_rules_move_no_predicted_start(shop):
    shifts = preview(shop, ProductionRules())

    assert len(shifts) == 12  # every open job: 3 + 8 mugs and a phone case
    assert all(s.before is not None and s.shift == timedelta(0) for s in shifts)


def test_lowering_the_express_weight_lets_the_high_value_order_go_first_on_the_shared_line(shop):
    # given the express UK mug and the high-value German mugs on Berlin's sublimation line, both batches
    # opened together (so both release on age together): express goes first with the default weights
    low = ProductionRules(priority=PriorityWeights(express=1.0))
    # when the preview lowers the express weight below the high-value one
    shifts = {s.job_id: s for s in preview(shop, low)}
    # then the express mug starts later and every German mug earlier; the other line does not move
    jobs = {row.id: row.order_id for row in shop.rows(select(t.print_jobs.c.id, t.print_jobs.c.order_id))}
    of = {name: [shifts[j] for j, o in jobs.items() if o == order_id] for name, order_id in shop.orders.items()}
    assert all(s.shift > timedelta(0) for s in of["uk_express"])
    assert all(s.shift < timedelta(0) for s in of["de_high_value"])
    assert all(s.shift == timedelta(0) for s in of["uk_case"])


def test_applying_rules_changes_open_work_exactly_as_the_preview_showed(shop):
    # given a preview of a lower express weight and a shorter longest wait
    low = ProductionRules(priority=PriorityWeights(express=1.0),
                          batching=replace(ProductionRules().batching, max_wait=timedelta(minutes=10)))
    now = datetime.now(UTC)
    predicted = {s.job_id: s.after for s in preview(shop, low, now=now)}
    # when the rules are saved
    saved = b.save_production_rules(low, **shop.kw(at=now))
    # then the work as now stored predicts exactly the previewed starts
    assert {s.job_id: s.before for s in preview(shop, low, current=low, now=now)} == predicted
    # and only the express job was re-scored (9 points down), so only its order's timeline says so
    assert (saved.rescored_jobs, saved.retargeted_batches) == (1, 0)
    express = shop.rows(select(t.print_jobs.c.priority).where(t.print_jobs.c.order_id == shop.orders["uk_express"]))
    assert express[0].priority < 3.0
    assert [e.order_id for e in shop.staff_events()] == [shop.orders["uk_express"]]


def test_a_new_batch_policy_resizes_open_batches_but_not_held_ones(shop):
    held = shop.batch_of(UK_MUGS)
    b.hold_batch(held, **shop.kw())
    small = ProductionRules(batching=replace(ProductionRules().batching, min_size=2,
                                             capacity_window=timedelta(minutes=5)))

    saved = b.save_production_rules(small, **shop.kw())

    targets = {row.id: row.target_size for row in shop.rows(select(t.batches))}
    assert targets[shop.batch_of(DE_MUGS)] == 5  # 60 per hour × 5 minutes
    assert targets[held] == 30  # unchanged: 60 per hour × the default 30 minutes
    assert saved.retargeted_batches == 2 and saved.rescored_jobs == 0
    # and the batcher now releases the German mugs on size
    assert shop.batch_of(DE_MUGS) in shop.batch(rules=small)

