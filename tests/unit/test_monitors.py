"""Monitor rules: per-stage thresholds decide which alerts are open, monotonically; alerts clear exactly when
their condition ends, and never the exception inbox's."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.commands import QUEUES
from core.monitors import (
    MONITOR_KINDS,
    Condition,
    Limit,
    Measurements,
    MonitorKind,
    MonitorSettingsInvalid,
    QueueMeasure,
    QueueThresholds,
    Severity,
    SilentParcel,
    StuckItem,
    Thresholds,
    default_thresholds,
    evaluate,
    plan_alerts,
    thresholds_from_document,
    thresholds_to_document,
)
from core.settings import Settings
from core.states import JobStatus, OrderStatus

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DEFAULTS = default_thresholds(Settings())
RANK = {None: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
INBOX_KINDS = ("address", "carrier", "notification", "change_request")

# ---- strategies -------------------------------------------------------------------------------------------

levels = st.integers(0, 5_000).map(float)  # whole seconds: timedelta keeps microseconds only


@st.composite
def limits(draw) -> Limit:
    warning = draw(levels)
    return Limit(warning=warning, critical=warning + draw(levels))


@st.composite
def thresholds(draw) -> Thresholds:
    queues = {q: QueueThresholds(depth=draw(limits()), oldest_age_s=draw(limits()), dead_lettered=draw(limits()))
              for q in QUEUES}
    return Thresholds(queues=MappingProxyType(queues),
                      orders=MappingProxyType({s: draw(limits()) for s in DEFAULTS.orders}),
                      jobs=MappingProxyType({s: draw(limits()) for s in DEFAULTS.jobs}),
                      silent_parcel_days=draw(limits()), error_window_s=900.0)


@st.composite
def raised(draw, base: Thresholds) -> Thresholds:
    """`base` with every limit moved up (or kept) by its own amount."""
    def up(limit: Limit) -> Limit:
        warning = limit.warning + draw(levels)
        return Limit(warning=warning, critical=max(warning, limit.critical + draw(levels)))

    return Thresholds(
        queues=MappingProxyType({q: QueueThresholds(depth=up(t.depth), oldest_age_s=up(t.oldest_age_s),
                                                    dead_lettered=up(t.dead_lettered))
                                 for q, t in base.queues.items()}),
        orders=MappingProxyType({s: up(limit) for s, limit in base.orders.items()}),
        jobs=MappingProxyType({s: up(limit) for s, limit in base.jobs.items()}),
        silent_parcel_days=up(base.silent_parcel_days), error_window_s=base.error_window_s)


ages = st.floats(min_value=0, max_value=20_000, allow_nan=False)
queue_measures = st.builds(QueueMeasure, queue=st.sampled_from(QUEUES), depth=st.integers(0, 10_000),
                           oldest_age_s=st.none() | ages, dead_lettered=st.integers(0, 50))
stuck_items = st.builds(
    lambda entity, n, status, age: StuckItem(entity=entity, id=f"{entity}-{n}", label=f"PR-{n}", status=str(status),
                                             since=NOW - timedelta(seconds=age)),
    st.sampled_from(["order"]), st.integers(0, 30), st.sampled_from(list(DEFAULTS.orders)), ages,
) | st.builds(
    lambda n, status, age: StuckItem(entity="job", id=f"job-{n}", label=f"PR-{n} #1", status=str(status),
                                     since=NOW - timedelta(seconds=age)),
    st.integers(0, 30), st.sampled_from(list(DEFAULTS.jobs)), ages)
silent_parcels = st.builds(
    lambda n, days: SilentParcel(order_id=f"ord-{n}", label=f"PR-{n}", tracking_code=f"1Z{n:04d}",
                                 last_heard_at=NOW - timedelta(days=days)),
    st.integers(0, 30), st.floats(min_value=0, max_value=30, allow_nan=False))
measurements = st.builds(Measurements, queues=st.lists(queue_measures, max_size=10, unique_by=lambda m: m.queue)
                         .map(tuple), stuck=st.lists(stuck_items, max_size=20, unique_by=lambda i: i.id).map(tuple),
                         silent=st.lists(silent_parcels, max_size=8, unique_by=lambda p: p.order_id).map(tuple))


# ---- the evaluator ----------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.data(), measurements)
def test_raising_any_threshold_never_opens_an_alert_nor_raises_a_severity(data, measured):
    # given two threshold sets, the second at least as high as the first everywhere
    low = data.draw(thresholds())
    high = data.draw(raised(low))
    # when both judge the same measurements
    strict, lenient = evaluate(measured, low, now=NOW), evaluate(measured, high, now=NOW)
    # then the higher thresholds open a subset, each no more severe
    assert set(lenient) <= set(strict)
    for ident, condition in lenient.items():
        assert RANK[condition.severity] <= RANK[strict[ident].severity]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_every_queue_is_judged_by_its_own_thresholds(data):
    # given different limits for every stage queue
    limits_by_queue = data.draw(thresholds())
    for queue in QUEUES:
        own = limits_by_queue.queues[queue]
        at_limit = QueueMeasure(queue=queue, depth=int(own.depth.warning), oldest_age_s=own.oldest_age_s.warning,
                                dead_lettered=int(own.dead_lettered.warning))
        above = QueueMeasure(queue=queue, depth=int(own.depth.warning) + 1, oldest_age_s=own.oldest_age_s.warning + 1,
                             dead_lettered=int(own.dead_lettered.warning) + 1)
        # when the queue sits exactly at its warning levels, nothing opens; one above each, all three open
        assert evaluate(Measurements(queues=(at_limit,)), limits_by_queue, now=NOW) == {}
        opened = evaluate(Measurements(queues=(above,)), limits_by_queue, now=NOW)
        assert set(opened) == {("queue_depth", queue), ("queue_age", queue), ("error_rate", queue)}


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_every_order_and_job_status_is_judged_by_its_own_deadline(data):
    limits_by_stage = data.draw(thresholds())
    for entity, table in (("order", limits_by_stage.orders), ("job", limits_by_stage.jobs)):
        for status, limit in table.items():
            # given one item exactly at its status's deadline and one a second past it
            on_time = StuckItem(entity=entity, id="a", label="PR-1", status=str(status),
                                since=NOW - timedelta(seconds=limit.warning))
            late = replace(on_time, id="b", label="PR-2", since=NOW - timedelta(seconds=limit.warning + 1))
            # then only the late one is stuck, under that status's key
            assert evaluate(Measurements(stuck=(on_time,)), limits_by_stage, now=NOW) == {}
            [condition] = evaluate(Measurements(stuck=(on_time, late)), limits_by_stage, now=NOW).values()
            assert (condition.kind, condition.key) == (MonitorKind.STUCK, f"{entity}:{status}")
            assert condition.details["ids"] == ["b"] and "PR-2" in condition.message


def test_default_thresholds_watch_every_stage_queue_and_every_deadline():
    assert set(DEFAULTS.queues) == set(QUEUES)
    assert set(DEFAULTS.orders) == set(Settings().stage_deadlines_s)
    assert set(DEFAULTS.jobs) == set(Settings().job_deadlines_s)
    # the stuck warning is exactly the stage deadline the reconciler re-drives at
    assert DEFAULTS.orders[OrderStatus.RENDERING].warning == Settings().stage_deadlines_s[OrderStatus.RENDERING]
    assert DEFAULTS.silent_parcel_days.warning == Settings().no_scan_days


def test_stuck_orders_of_one_status_make_one_alert_naming_the_oldest_first_and_critical_past_three_deadlines():
    deadline = DEFAULTS.orders[OrderStatus.ACCEPTED].warning
    items = tuple(StuckItem(entity="order", id=f"o{n}", label=f"PR-{n}", status="accepted",
                            since=NOW - timedelta(seconds=deadline + n)) for n in range(1, 8))
    [warning] = evaluate(Measurements(stuck=items), DEFAULTS, now=NOW).values()
    assert warning.severity is Severity.WARNING and warning.details["count"] == 7
    assert warning.message.startswith("7 orders stuck in accepted") and "PR-7, PR-6" in warning.message
    assert "and 2 more" in warning.message
    very_late = replace(items[0], id="old", label="PR-OLD", since=NOW - timedelta(seconds=3 * deadline + 1))
    [critical] = evaluate(Measurements(stuck=(*items, very_late)), DEFAULTS, now=NOW).values()
    assert critical.severity is Severity.CRITICAL and critical.details["ids"][0] == "old"


def test_a_status_without_a_deadline_is_never_stuck():
    # on hold and shipped wait on people and carriers: the exception inbox and silent-parcel monitor watch them
    items = tuple(StuckItem(entity="order", id=s, label=s, status=s, since=NOW - timedelta(days=30))
                  for s in ("on_hold", "shipped", "delivered", "cancelled"))
    assert evaluate(Measurements(stuck=items), DEFAULTS, now=NOW) == {}


def test_a_parcel_silent_past_the_days_opens_one_alert():
    days = DEFAULTS.silent_parcel_days.warning
    quiet = SilentParcel(order_id="o1", label="PR-1", tracking_code="1Z1", last_heard_at=NOW - timedelta(days=days))
    lost = replace(quiet, order_id="o2", label="PR-2", tracking_code="1Z2",
                   last_heard_at=NOW - timedelta(days=days, hours=1))
    assert evaluate(Measurements(silent=(quiet,)), DEFAULTS, now=NOW) == {}
    [alert] = evaluate(Measurements(silent=(quiet, lost)), DEFAULTS, now=NOW).values()
    assert (alert.kind, alert.key, alert.severity) == (MonitorKind.SILENT_PARCEL, "shipments", Severity.WARNING)
    assert "PR-2 (1Z2)" in alert.message and alert.details["order_ids"] == ["o2"]


def test_a_queue_without_its_own_thresholds_is_still_watched():
    only_render = replace(DEFAULTS, queues=MappingProxyType({"render": DEFAULTS.queues["render"]}))
    flood = QueueMeasure(queue="brand_new_stage", depth=10_000, oldest_age_s=None, dead_lettered=0)
    [alert] = evaluate(Measurements(queues=(flood,)), only_render, now=NOW).values()
    assert (alert.kind, alert.key, alert.severity) == (MonitorKind.QUEUE_DEPTH, "brand_new_stage", Severity.CRITICAL)


# ---- reconciling open alerts ------------------------------------------------------------------------------

monitor_idents = st.sampled_from([(k, q) for k in ("queue_depth", "queue_age", "error_rate") for q in QUEUES[:3]]
                                 + [("stuck", "order:accepted"), ("stuck", "job:printed"),
                                    ("silent_parcel", "shipments")])
inbox_idents = st.tuples(st.sampled_from(INBOX_KINDS), st.sampled_from(["o1", "o2", "o3"]))


def _condition(ident, severity, message) -> Condition:
    return Condition(kind=MonitorKind(ident[0]), key=ident[1], severity=severity, message=message)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(monitor_idents, st.tuples(st.sampled_from(list(Severity)),
                                                          st.sampled_from(["a", "b"])), max_size=8),
                min_size=1, max_size=8),
       st.sets(inbox_idents, max_size=4))
def test_an_alert_clears_exactly_when_its_condition_ends_and_the_inbox_is_never_touched(steps, inbox):
    # given exception-inbox alerts already open
    store: dict[tuple[str, str], tuple[str, str]] = {ident: ("warning", "support must act") for ident in inbox}
    previous: set[tuple[str, str]] = set()
    for step in steps:
        conditions = {ident: _condition(ident, severity, message) for ident, (severity, message) in step.items()}
        # when the monitor reconciles this step's conditions against what is open
        plan = plan_alerts(store, conditions)
        for condition in (*plan.raise_, *plan.update):
            store[condition.ident] = (str(condition.severity), condition.message)
        for ident in plan.clear:
            del store[ident]
        # then it raised exactly the new ones, cleared exactly the ended ones, and the inbox is as it was
        assert {c.ident for c in plan.raise_} == set(conditions) - previous
        assert set(plan.clear) == previous - set(conditions)
        assert {i for i in store if i[0] in MONITOR_KINDS} == set(conditions)
        assert all(store[i] == ("warning", "support must act") for i in inbox)
        assert {c.ident for c in plan.update} <= previous
        # and a second reconcile with nothing changed does nothing
        assert plan_alerts(store, conditions) == type(plan)()
        previous = set(conditions)


def test_a_changed_severity_or_message_is_an_update_not_a_new_alert():
    ident = ("queue_depth", "render")
    store = {ident: ("warning", "old words")}
    plan = plan_alerts(store, {ident: _condition(ident, Severity.CRITICAL, "old words")})
    assert (plan.raise_, plan.clear, [c.ident for c in plan.update]) == ((), (), [ident])


# ---- thresholds as data -----------------------------------------------------------------------------------


def test_stored_thresholds_override_only_what_they_name():
    document = {"queues": {"render": {"depth": {"warning": 5}}}, "orders": {"accepted": {"warning": 10,
                                                                                        "critical": 20}},
                "silent_parcel_days": {"warning": 1, "critical": 2}, "error_window_s": 60}
    stored = thresholds_from_document(document, defaults=DEFAULTS)
    assert stored.queues["render"].depth == Limit(warning=5, critical=DEFAULTS.queues["render"].depth.critical)
    assert stored.queues["render"].oldest_age_s == DEFAULTS.queues["render"].oldest_age_s
    assert stored.queues["qa"] == DEFAULTS.queues["qa"]
    assert stored.orders[OrderStatus.ACCEPTED] == Limit(warning=10, critical=20)
    assert stored.orders[OrderStatus.RENDERING] == DEFAULTS.orders[OrderStatus.RENDERING]
    assert stored.jobs[JobStatus.PRINTED] == DEFAULTS.jobs[JobStatus.PRINTED]
    assert (stored.silent_parcel_days, stored.error_window_s) == (Limit(warning=1, critical=2), 60.0)


@settings(max_examples=50, deadline=None)
@given(thresholds())
def test_thresholds_survive_being_stored_and_read_back(any_thresholds):
    document = thresholds_to_document(any_thresholds)
    assert thresholds_from_document(document, defaults=DEFAULTS) == any_thresholds


@pytest.mark.parametrize(("document", "words"), [
    ({"queues": {"render": {"depth": {"warning": "lots"}}}}, "queues.render.depth"),
    ({"queues": {"render": {"depth": {"warning": -1}}}}, "at least 0"),
    ({"orders": {"accepted": {"warning": 100, "critical": 50}}}, "must not be below"),
    ({"orders": {"teleporting": {"warning": 1, "critical": 2}}}, "unknown stage 'teleporting'"),
    ({"jobs": {"printed": 600}}, "jobs.printed"),
    ({"error_window_s": 0}, "error_window_s"),
    ({"silent_parcel_days": {"warning": float("nan")}}, "silent_parcel_days"),
])
def test_a_threshold_that_cannot_work_is_refused_with_where_and_why(document, words):
    with pytest.raises(MonitorSettingsInvalid) as refused:
        thresholds_from_document(document, defaults=DEFAULTS)
    assert words in refused.value.message
