"""The dashboard's population queries stay bounded at any volume and still say what the pages need: orders per
state, the batch builder's open work and the partner panel, on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, update

from db import queries as q
from db import tables as t
from tests.integration.metrics_data import DAY2, NOW, History, at


def set_status(engine, order_id: str, status: str, when) -> None:
    with engine.begin() as conn:
        conn.execute(update(t.orders).where(t.orders.c.id == order_id).values(status=status, status_changed_at=when))


def test_open_states_count_every_order_and_final_states_only_the_recent_ones(engine):
    # given two open orders (one accepted long ago), one delivered today and one delivered two days ago
    h = History(engine)
    old, new = h.order("PR-OLD", at(DAY2, 1) - timedelta(days=30)), h.order("PR-NEW", at(DAY2, 9))
    done_today, done_before = h.order("PR-D1", at(DAY2, 2)), h.order("PR-D2", at(DAY2, 3) - timedelta(days=3))
    set_status(engine, new, "qa", at(DAY2, 10))
    set_status(engine, done_today, "delivered", at(DAY2, 20))
    set_status(engine, done_before, "delivered", NOW - timedelta(days=2))
    # when the control room reads orders per state with a one-day window for final states
    frame = q.orders_per_status(engine, finished_since=NOW - timedelta(days=1)).set_index("status")["orders"]
    # then the open ones are all there, whatever their age, and only today's delivery
    assert (frame["accepted"], frame["qa"], frame["delivered"], frame["cancelled"]) == (1, 1, 1, 0)
    assert old and len(frame) == 12


def add_jobs(engine, order_id: str, specs: list[tuple[str, str, float, str | None]]) -> list[str]:
    """Routed jobs of one group for one order: (id, status, priority, batch id)."""
    with engine.begin() as conn:
        for n, (job_id, status, priority, batch_id) in enumerate(specs):
            conn.execute(insert(t.print_jobs).values(
                id=job_id, order_id=order_id, line_id=f"lin_{order_id.removeprefix('ord_')}", unit_index=n,
                status=status, attempt=1, priority=priority, partner_id="acme-columbus", product_type="tee",
                print_method="dtg", region="us-east", batch_id=batch_id, created_at=at(DAY2, 8),
                status_changed_at=at(DAY2, 8), version=1))
    return [spec[0] for spec in specs]


def test_the_batch_builder_reads_stored_batches_whole_and_each_groups_most_urgent_unbatched_jobs(engine):
    # given an open batch of 3 jobs and 12 unbatched jobs of the same group, priorities 0..11
    order = History(engine).order("PR-B1", at(DAY2, 7))
    with engine.begin() as conn:
        conn.execute(insert(t.batches).values(id="bat_1", partner_id="acme-columbus", product_type="tee",
                                              print_method="dtg", region="us-east", status="open", target_size=5,
                                              created_at=at(DAY2, 8), status_changed_at=at(DAY2, 8), version=1))
    in_batch = add_jobs(engine, order, [(f"job_b{n}", "batched", 1.0, "bat_1") for n in range(3)])
    add_jobs(engine, order, [(f"job_l{p:02d}", "pending", float(p), None) for p in range(12)])
    # when the batch builder reads its open work, five unbatched jobs per group at most
    groups = q.unbatched_per_group(engine)
    jobs = q.open_jobs(engine, per_group=5, groups=groups)
    # then the group is counted whole, the stored batch comes whole, and the five most urgent loose jobs follow
    assert groups == {("acme-columbus", "tee", "dtg", "us-east"): 12}
    assert [j["id"] for j in jobs if j["batch_id"]] == in_batch
    assert [j["id"] for j in jobs if not j["batch_id"]] == [f"job_l{p:02d}" for p in (7, 8, 9, 10, 11)]
    assert (jobs[0]["batch_status"], jobs[0]["batch_target"], jobs[0]["order_number"]) == ("open", 5, "PR-B1")


def test_the_partner_panel_judges_starts_from_the_jobs_stamps(engine):
    # given four acme jobs submitted in the last day: started after 1 h (on time), after 5 h (late), not started
    # for 6 h (late, and the lag), not started for 1 h (waiting); and one submitted two days ago (outside)
    order = History(engine).order("PR-P1", at(DAY2, 1))
    now = NOW
    stamps = [("printed", now - timedelta(hours=8), now - timedelta(hours=7)),
              ("printed", now - timedelta(hours=7), now - timedelta(hours=2)),
              ("queued", now - timedelta(hours=6), None),
              ("submitted", now - timedelta(hours=1), None),
              ("qa_passed", now - timedelta(days=2), now - timedelta(days=2) + timedelta(hours=9))]
    ids = add_jobs(engine, order, [(f"job_p{n}", status, 0.0, None) for n, (status, _, _) in enumerate(stamps)])
    with engine.begin() as conn:
        for job_id, (_, submitted, started) in zip(ids, stamps, strict=True):
            conn.execute(update(t.print_jobs).where(t.print_jobs.c.id == job_id)
                         .values(submitted_at=submitted, started_at=started))
    # when the control room reads the panel with a 4-hour start target over the last day
    panel = q.partner_panel(engine, now=now, start_sla=timedelta(hours=4), window=timedelta(days=1))
    acme = panel.set_index("partner").loc["acme-columbus"]
    # then 1 of 3 decided started on time, one still waits within the target, and the lag is the 6-hour job's
    assert (acme["on_time"], acme["decided"], acme["waiting"]) == (pytest.approx(1 / 3), 3, 1)
    assert acme["lag_s"] == pytest.approx(6 * 3600) and acme["in_flight"] == 2
