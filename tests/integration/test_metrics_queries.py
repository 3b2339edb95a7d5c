"""The metrics page's figures, read by db.metrics from a hand-counted history on PostgreSQL (and SQLite):
every number equals the count on paper, and the date and partner filters move exactly the ones they should."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from core.metrics import MetricScope, Status, percentile, targets_from
from core.settings import DEFAULT_DEADLINES_S, DEFAULT_METRIC_TARGETS
from db import metrics as m
from db import tables as t
from tests.integration.metrics_data import DAY1, DAY2, NOW, A, B, History, at, build

TARGETS = targets_from(None, DEFAULT_METRIC_TARGETS)


@pytest.fixture
def story(engine):
    return build(engine)


def figures(engine, *, start=DAY1, end=NOW, partner=None) -> dict:
    scope = MetricScope(start=start, end=end, partner_id=partner)
    results = m.success_metrics(engine, scope, now=NOW, targets=TARGETS, deadlines_s=DEFAULT_DEADLINES_S)
    return {r.spec.key: r for r in results}


def counts(result) -> tuple:
    return result.numerator, result.denominator


def test_each_success_metric_equals_the_hand_count_over_the_whole_range(engine, story):
    f = figures(engine)
    assert counts(f["validation_errors"]) == (3, 13)  # 3 refused checkouts (one had two reasons) + 10 orders
    assert f["validation_errors"].status == Status.MISSED  # 23 % is not below 1 %
    assert counts(f["asset_generation"]) == (9, 10) and f["asset_generation"].status == Status.MISSED
    assert f["retrieval_latency_p95"].value == 200.0 and counts(f["retrieval_latency_p95"]) == (20, 21)
    assert f["retrieval_latency_p95"].status == Status.MISSED  # 200 ms is not below 200 ms
    assert f["queue_lag_p95"].value == 400.0 and f["queue_lag_p95"].detail == "worst: render"
    assert counts(f["queue_lag_p95"]) == (4, 4) and f["queue_lag_p99"].value == 400.0
    assert counts(f["on_time_start"]) == (3, 6)  # j1, j3, j5 in time; j2 late; j4 and the last reprint overdue
    assert counts(f["defect_rate"]) == (2, 4)
    assert counts(f["label_success"]) == (3, 4)
    assert counts(f["notification_delivery"]) == (2, 4)  # sent 2 of sent + failed + unknown
    assert f["notification_delivery"].detail == "failed 1, unknown 1; not due: sending 1, skipped_opt_out 1"


def test_the_date_filter_keeps_only_the_first_day(engine, story):
    f = figures(engine, end=DAY2)
    assert counts(f["validation_errors"]) == (2, 8)
    assert counts(f["asset_generation"]) == (6, 6) and f["asset_generation"].status == Status.MET
    assert f["retrieval_latency_p95"].value == 190.0 and f["retrieval_latency_p95"].status == Status.AT_RISK
    assert counts(f["on_time_start"]) == (2, 4)
    assert counts(f["defect_rate"]) == (1, 3)
    assert counts(f["label_success"]) == (0, 0) and f["label_success"].status == Status.NO_DATA
    second = figures(engine, start=DAY2)
    assert counts(second["validation_errors"]) == (1, 5) and counts(second["label_success"]) == (3, 4)
    assert counts(second["notification_delivery"]) == (0, 0)


def test_the_partner_filter_narrows_production_metrics_and_leaves_pre_routing_ones_whole(engine, story):
    acme, pacific = figures(engine, partner=A), figures(engine, partner=B)
    for key in ("validation_errors", "asset_generation", "retrieval_latency_p95", "queue_lag_p95"):
        assert counts(acme[key]) == counts(figures(engine)[key])  # decided before any partner is chosen
    assert counts(acme["on_time_start"]) == (2, 3) and counts(pacific["on_time_start"]) == (1, 2)
    assert counts(acme["defect_rate"]) == (2, 3) and counts(pacific["defect_rate"]) == (0, 1)
    assert counts(acme["label_success"]) == (2, 2) and counts(pacific["label_success"]) == (1, 2)
    assert counts(acme["notification_delivery"]) == (2, 3) and counts(pacific["notification_delivery"]) == (0, 1)


def test_partner_scorecards_count_volume_on_time_defects_by_reason_and_price_reprints(engine, story):
    scope = MetricScope(start=DAY1, end=NOW)
    cards = {c["partner"]: c for c in m.partner_scorecards(engine, scope, now=NOW, targets=TARGETS,
                                                            deadlines_s=DEFAULT_DEADLINES_S)}
    acme = cards[A]
    assert (acme["volume"], acme["started_in_time"], acme["start_decided"]) == (3, 2, 3)
    assert (acme["failed"], acme["inspected"]) == (2, 3)
    assert acme["defects_by_reason"] == "colour_shift 1; misregistration 1"
    assert acme["defect_rate_misregistration"] == pytest.approx(1 / 3)
    assert (acme["reprints"], acme["reprint_cost_cents"], acme["unpriced_reprints"]) == (2, 1800, 0)
    pacific = cards[B]
    assert (pacific["volume"], pacific["started_in_time"], pacific["start_decided"]) == (1, 1, 2)
    assert (pacific["failed"], pacific["inspected"], pacific["reprints"]) == (0, 1, 0)
    assert cards["spree-berlin"]["volume"] == 0 and cards["spree-berlin"]["on_time_start"] is None
    only_acme = m.partner_scorecards(engine, MetricScope(start=DAY2, end=NOW, partner_id=A), now=NOW,
                                     targets=TARGETS, deadlines_s=DEFAULT_DEADLINES_S)
    assert [(c["partner"], c["volume"], c["failed"], c["reprints"]) for c in only_acme] == [(A, 1, 1, 2)]


def test_a_variant_without_a_base_cost_is_counted_as_unpriced_not_as_free(engine, story):
    with engine.begin() as conn:
        conn.execute(t.variants.update().where(t.variants.c.sku == "TEE-DTG-BLK-S").values(base_cost_cents=None))
    [acme] = m.partner_scorecards(engine, MetricScope(start=DAY1, end=NOW, partner_id=A), now=NOW,
                                  targets=TARGETS, deadlines_s=DEFAULT_DEADLINES_S)
    assert (acme["reprints"], acme["reprint_cost_cents"], acme["unpriced_reprints"]) == (2, 0, 2)


def test_trends_bucket_the_same_trials_by_day_and_by_hour(engine, story):
    scope = MetricScope(start=DAY1, end=NOW)
    by_day = m.trend(engine, m.checkout_trials(scope), "day")
    assert [(r["hits"], r["trials"]) for r in by_day] == [(2, 8), (1, 5)]
    by_hour = m.trend(engine, m.checkout_trials(scope), "hour")
    assert [(r["hits"], r["trials"]) for r in by_hour] == [(0, 6), (2, 2), (1, 1), (0, 4)]
    latency = m.percentiles(engine, m.bucketed(m.retrieval_values(scope), "day"), groups=("bucket", "grp"))
    assert [(row["n"], row["p95"]) for row in latency] == [(20, 190.0), (1, 500.0)]


def test_drill_downs_list_the_failing_rows_with_their_order_numbers(engine, story):
    scope = MetricScope(start=DAY1, end=NOW)
    [held] = m.failed_events(engine, scope, source=m.RENDER_SOURCE)
    assert (held["order_number"], held["reason"], held["note"]) == ("PR-10", "render_failed",
                                                                  "line 1: template is gone")
    late = m.outcomes(engine, m.on_time_trials(scope, now=NOW, deadlines_s=DEFAULT_DEADLINES_S), hit=0)
    assert sorted(r["order_number"] for r in late) == ["PR-1", "PR-2", "PR-4"]
    failed = m.outcomes(engine, m.defect_trials(scope), hit=1)
    assert [(r["order_number"], r["ref"]) for r in failed] == [("PR-1", "colour_shift"), ("PR-1", "misregistration")]
    assert len(m.rejected_checkouts(engine, scope)) == 4  # one row per reason
    [undelivered_unknown, undelivered_failed] = m.failed_notifications(engine, scope)
    assert (undelivered_failed["order_number"], undelivered_failed["error"]) == ("PR-2", "smtp said no")
    assert undelivered_unknown["status"] == "unknown"
    assert [r["value"] for r in m.slowest(engine, m.retrieval_values(scope), above=200.0)] == [500.0, 200.0]
    reprinted = m.reprints(engine, scope)
    assert [(r["order_number"], r["partner"], r["reason"], r["base_cost_cents"]) for r in reprinted] == [
        ("PR-1", A, "colour_shift", 900), ("PR-1", A, "misregistration", 900)]


def test_stage_latency_measures_each_stay_until_the_next_status_or_now(engine):
    # given two orders' timelines: one moved on, one still rendering at NOW
    h = History(engine)
    first, second = h.order("PR-91", at(DAY1, 10)), h.order("PR-92", at(DAY1, 10))
    h.event(first, at(DAY1, 10), "order.received", "api")
    h.event(first, at(DAY1, 10, 0, 30), "order.rendering", "worker:render")
    h.event(first, at(DAY1, 10, 2, 30), "order.ready_for_production", "worker:render")
    h.event(first, at(DAY1, 10, 5), "order.cancelled", "user:alice")  # final: no stay measured
    h.event(first, at(DAY1, 10, 6), "note.added", "user:alice")  # not a status: ignored
    h.event(second, at(DAY1, 11), "order.received", "api")
    h.event(second, at(DAY1, 11, 0, 10), "order.rendering", "worker:render")
    # when the stages are measured at NOW
    rows = {r["stage"]: r for r in m.stage_latency(engine, MetricScope(start=DAY1, end=NOW), now=NOW)}
    # then accepted stays were 30 s and 10 s, rendering 120 s and (NOW − 11:00:10), ready 150 s
    assert list(rows) == ["accepted", "rendering", "ready_for_production"]
    assert (rows["accepted"]["n"], rows["accepted"]["p50"], rows["accepted"]["p95"]) == (2, 10.0, 30.0)
    still = (NOW - at(DAY1, 11, 0, 10)).total_seconds()
    assert rows["rendering"]["p50"] == pytest.approx(120.0) and rows["rendering"]["p99"] == pytest.approx(still)
    assert rows["ready_for_production"]["p95"] == pytest.approx(150.0)
    [slowest, *_] = m.slowest_stays(engine, MetricScope(start=DAY1, end=NOW), now=NOW)
    assert (slowest["order_number"], slowest["stage"]) == ("PR-92", "rendering")
    # and a partner with none of these orders sees no stays
    assert m.stage_latency(engine, MetricScope(start=DAY1, end=NOW, partner_id=A), now=NOW) == []


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=40))
def test_sql_percentiles_equal_core_nearest_rank_for_any_sample(engine, values):
    # given retrieval times written to the database
    with engine.begin() as conn:
        conn.execute(delete(t.asset_retrievals))
        conn.execute(insert(t.asset_retrievals), [
            {"at": DAY1 + timedelta(seconds=i), "asset_id": "a", "file": "print.png", "ms": float(v), "bytes": 1}
            for i, v in enumerate(values)])
    # then the SQL percentiles are the ones core computes over the same values
    [row] = m.percentiles(engine, m.retrieval_values(MetricScope(start=DAY1, end=NOW)))
    assert row["n"] == len(values)
    for pct in (50, 95, 99):
        assert row[f"p{pct}"] == percentile([float(v) for v in values], pct)
