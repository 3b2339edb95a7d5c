"""The metric rules: nearest-rank percentiles, rates, statuses against targets, budgets and reprint cost."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from core.metrics import (
    METRIC_BY_KEY,
    METRICS,
    BadRange,
    BadTarget,
    Compare,
    MetricScope,
    PartnerFacts,
    Status,
    Target,
    Unit,
    nearest_rank,
    percentile,
    percentile_result,
    rate,
    reprint_cost,
    scorecard,
    share_result,
    stage_of,
    status_of,
    submission_budget_s,
    targets_from,
)
from core.notifications import NotificationStatus
from core.settings import DEFAULT_DEADLINES_S, DEFAULT_METRIC_TARGETS
from core.states import OrderStatus

values = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=60)
pcts = st.integers(min_value=1, max_value=100)
SEVERITY = {Status.MET: 0, Status.AT_RISK: 1, Status.MISSED: 2}


@st.composite
def targets(draw) -> Target:
    compare = draw(st.sampled_from(list(Compare)))
    goal = draw(st.floats(min_value=0, max_value=1000, allow_nan=False))
    gap = draw(st.floats(min_value=0, max_value=100, allow_nan=False))
    return Target(compare=compare, goal=goal, warn=goal + gap if compare == Compare.AT_LEAST else goal - gap)


# ---- percentiles --------------------------------------------------------------------------------------


@given(values, pcts)
def test_a_percentile_is_always_one_of_the_observed_values(sample, pct):
    assert percentile(sample, pct) in sample


@given(values, pcts)
def test_at_least_pct_percent_of_values_are_at_or_below_the_percentile(sample, pct):
    p = percentile(sample, pct)
    assert sum(v <= p for v in sample) >= math.ceil(pct * len(sample) / 100)
    assert sum(v < p for v in sample) < math.ceil(pct * len(sample) / 100)  # and it is the smallest such value


@given(values, pcts, pcts)
def test_a_higher_percentile_is_never_lower(sample, a, b):
    low, high = sorted((a, b))
    assert percentile(sample, low) <= percentile(sample, high)


@given(st.integers(min_value=1, max_value=10_000), pcts)
def test_nearest_rank_is_the_ceiling_of_pct_of_n(n, pct):
    assert nearest_rank(pct, n) == math.ceil(pct * n / 100 - 1e-9) and 1 <= nearest_rank(pct, n) <= n


def test_percentile_examples_and_bad_input():
    assert percentile([10.0 * i for i in range(1, 21)], 95) == 190.0  # rank 19 of 20
    assert percentile([10.0 * i for i in range(1, 21)] + [500.0], 95) == 200.0  # rank 20 of 21
    assert percentile([], 95) is None
    with pytest.raises(ValueError):
        nearest_rank(0, 10)
    with pytest.raises(ValueError):
        nearest_rank(101, 10)
    with pytest.raises(ValueError):
        nearest_rank(50, 0)


# ---- rates --------------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=10_000))
def test_a_rate_is_a_share_between_0_and_1_or_none_without_trials(a, b):
    hits, trials = min(a, b), max(a, b)
    share = rate(hits, trials)
    if trials == 0:
        assert share is None
    else:
        assert 0.0 <= share <= 1.0 and share * trials == pytest.approx(hits)


@pytest.mark.parametrize("hits, trials", [(3, 2), (-1, 5), (1, -1)])
def test_a_rate_refuses_impossible_counts(hits, trials):
    with pytest.raises(ValueError):
        rate(hits, trials)


# ---- statuses -----------------------------------------------------------------------------------------


@given(targets(), st.floats(min_value=-10, max_value=2000, allow_nan=False),
       st.floats(min_value=-10, max_value=2000, allow_nan=False))
def test_moving_a_value_the_wrong_way_never_improves_its_status(target, a, b):
    better, worse = (min(a, b), max(a, b)) if target.compare != Compare.AT_LEAST else (max(a, b), min(a, b))
    assert SEVERITY[status_of(worse, target)] >= SEVERITY[status_of(better, target)]


@given(targets(), st.floats(min_value=-10, max_value=2000, allow_nan=False))
def test_met_and_at_risk_values_keep_the_goal_and_missed_ones_break_it(target, value):
    keeps = {Compare.BELOW: value < target.goal, Compare.AT_MOST: value <= target.goal,
             Compare.AT_LEAST: value >= target.goal}[target.compare]
    assert (status_of(value, target) != Status.MISSED) == keeps


def test_status_examples_for_the_guides_targets():
    ts = targets_from(None, DEFAULT_METRIC_TARGETS)
    assert status_of(0.005, ts["validation_errors"]) == Status.MET
    assert status_of(0.009, ts["validation_errors"]) == Status.AT_RISK
    assert status_of(0.01, ts["validation_errors"]) == Status.MISSED  # "< 1 %": 1 % itself misses
    assert status_of(1.0, ts["asset_generation"]) == Status.MET
    assert status_of(0.999, ts["asset_generation"]) == Status.MISSED  # no at-risk band below 100 %
    assert status_of(0.96, ts["on_time_start"]) == Status.AT_RISK
    assert status_of(0.95, ts["on_time_start"]) == Status.AT_RISK  # "≥ 95 %" keeps it at exactly 95 %
    assert status_of(0.94, ts["on_time_start"]) == Status.MISSED
    assert status_of(None, ts["defect_rate"]) == Status.NO_DATA
    assert status_of(float("nan"), ts["defect_rate"]) == Status.NO_DATA


def test_targets_read_as_people_say_them():
    ts = targets_from(None, DEFAULT_METRIC_TARGETS)
    assert ts["validation_errors"].text(Unit.SHARE) == "< 1 %"
    assert ts["on_time_start"].text(Unit.SHARE) == "≥ 95 %"
    assert ts["defect_rate"].text(Unit.SHARE) == "< 0.50 %"
    assert ts["retrieval_latency_p95"].text(Unit.MS) == "< 200 ms"
    assert ts["queue_lag_p95"].text(Unit.SECONDS) == "< 5.0 min"


def test_every_metric_has_a_default_target_and_a_how_it_is_computed():
    assert set(METRIC_BY_KEY) == set(DEFAULT_METRIC_TARGETS)
    assert all(m.how and m.numerator and m.denominator for m in METRICS)


def test_a_stored_document_overrides_the_defaults_key_by_key():
    ts = targets_from({"defect_rate": {"goal": 0.01, "warn": 0.008}}, DEFAULT_METRIC_TARGETS)
    assert (ts["defect_rate"].goal, ts["defect_rate"].compare) == (0.01, Compare.BELOW)
    assert ts["validation_errors"].goal == 0.01  # untouched


@pytest.mark.parametrize("document, complaint", [
    ({"uptime": {"goal": 1}}, "no metric called 'uptime'"),
    ({"defect_rate": {"compare": "roughly"}}, "needs compare"),
    ({"defect_rate": {"goal": "half"}}, "needs compare"),
    ({"defect_rate": {"goal": 0.005, "warn": 0.01}}, "must not be above its goal"),
    ({"on_time_start": {"goal": 0.95, "warn": 0.9}}, "must not be below its goal"),
])
def test_a_bad_target_document_is_refused_with_the_reason(document, complaint):
    with pytest.raises(BadTarget, match=complaint):
        targets_from(document, DEFAULT_METRIC_TARGETS)


# ---- results ------------------------------------------------------------------------------------------


def test_a_share_result_carries_its_counts_and_status_into_the_table_row():
    result = share_result(METRIC_BY_KEY["defect_rate"], 2, 400, targets_from(None, DEFAULT_METRIC_TARGETS)
                          ["defect_rate"])
    row = result.row()
    assert (row["value"], row["target"], row["status"]) == ("0.50 %", "< 0.50 %", "missed")
    assert (row["numerator"], row["denominator"]) == (2, 400)
    assert row["counts"] == "2 items failed of 400 items inspected"


def test_a_percentile_result_names_the_worst_group_and_its_rank():
    target = targets_from(None, DEFAULT_METRIC_TARGETS)["queue_lag_p95"]
    result = percentile_result(METRIC_BY_KEY["queue_lag_p95"],
                               {"qa": {"n": 2, "p95": 5.0}, "render": {"n": 4, "p95": 400.0}}, 95, target)
    assert (result.value, result.numerator, result.denominator, result.detail) == (400.0, 4, 4, "worst: render")
    assert result.status == Status.MISSED
    empty = percentile_result(METRIC_BY_KEY["queue_lag_p95"], {}, 95, target)
    assert (empty.value, empty.status) == (None, Status.NO_DATA)


# ---- budgets, stages, cost, scorecards, scope ---------------------------------------------------------


def test_the_start_budget_is_the_stage_deadlines_before_the_gate_and_a_reprint_skips_rendering():
    assert submission_budget_s(1, DEFAULT_DEADLINES_S) == 60 + 300 + 2700
    assert submission_budget_s(3, DEFAULT_DEADLINES_S) == 2700
    with pytest.raises(ValueError):
        submission_budget_s(0, DEFAULT_DEADLINES_S)


@given(st.dictionaries(st.sampled_from(list(OrderStatus)), st.floats(min_value=0, max_value=1e6), min_size=0))
def test_a_reprint_budget_never_exceeds_a_first_print_budget(overrides):
    deadlines = dict(DEFAULT_DEADLINES_S) | overrides
    assert submission_budget_s(2, deadlines) <= submission_budget_s(1, deadlines)


def test_stage_of_reads_order_status_events_only():
    assert stage_of("order.received") == OrderStatus.ACCEPTED
    assert stage_of("order.qa") == OrderStatus.QA
    assert stage_of("job.printed") is None and stage_of("order.bogus") is None and stage_of("note.added") is None


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(min_value=0, max_value=500), max_size=8),
       st.dictionaries(st.text(min_size=1, max_size=8), st.none() | st.integers(min_value=0, max_value=10_000),
                       max_size=8))
def test_reprint_cost_is_units_times_base_cost_with_unknown_costs_counted_apart(reprints, costs):
    cost = reprint_cost(reprints, costs)
    assert cost.units == sum(reprints.values())
    assert cost.cents == sum(n * costs[sku] for sku, n in reprints.items() if costs.get(sku) is not None)
    assert cost.unpriced_units == sum(n for sku, n in reprints.items() if costs.get(sku) is None)


def test_reprint_cost_refuses_negative_figures():
    with pytest.raises(ValueError):
        reprint_cost({"A": -1}, {"A": 100})
    with pytest.raises(ValueError):
        reprint_cost({"A": 1}, {"A": -100})


def test_a_scorecard_row_gives_rates_statuses_reasons_and_cost():
    ts = targets_from(None, DEFAULT_METRIC_TARGETS)
    facts = PartnerFacts(partner_id="acme", name="Acme", submitted=10, on_time=9, start_decided=10, inspected=8,
                         failed=2, failures_by_reason={"ink_blot": 1, "colour_shift": 1},
                         reprints_by_sku={"TEE": 2})
    row = scorecard(facts, base_cost_cents={"TEE": 900}, targets=ts)
    assert (row["volume"], row["on_time_start"], row["on_time_status"]) == (10, 0.9, "missed")
    assert (row["defect_rate"], row["defect_status"]) == (0.25, "missed")
    assert row["defects_by_reason"] == "colour_shift 1; ink_blot 1" and row["defect_rate_ink_blot"] == 0.125
    assert (row["reprints"], row["reprint_cost_cents"]) == (2, 1800)
    idle = scorecard(PartnerFacts(partner_id="idle", name="Idle"), base_cost_cents={}, targets=ts)
    assert (idle["on_time_status"], idle["defect_status"]) == ("no data", "no data")


def test_a_scope_must_be_utc_and_end_after_it_starts():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(BadRange, match="pick an end date"):
        MetricScope(start=start, end=start - timedelta(days=1))
    with pytest.raises(ValueError):
        MetricScope(start=start.replace(tzinfo=None), end=start.replace(tzinfo=None) + timedelta(days=1))


@given(targets())
def test_generated_targets_are_valid_and_a_warn_line_past_the_goal_is_not(target):
    assume(target.goal > 0)
    wrong = target.goal * 0.5 if target.compare == Compare.AT_LEAST else target.goal * 1.5 + 1
    with pytest.raises(BadTarget):
        Target(compare=target.compare, goal=target.goal, warn=wrong)


def test_the_read_side_counts_the_outcomes_the_workers_actually_record():
    # db.metrics finds render and label outcomes by the workers' timeline source: a renamed source would
    # silently empty those metrics, so the names are held together here.
    from core.services import render, shipping
    from db import metrics as read_side

    assert (read_side.RENDER_SOURCE, read_side.SHIPPING_SOURCE) == (render.SOURCE, shipping.SOURCE)
    assert set(read_side.NOTIFICATION_DUE) < {str(status) for status in NotificationStatus}
