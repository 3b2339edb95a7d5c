"""The QA stage on SQLite: real inspections of sim photos pass, fail into reprints, or go to a human."""

from __future__ import annotations

import io
import time
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
from dramatiq import Message
from PIL import Image
from sqlalchemy import select

from core.errors import NotAllowed
from core.sampling import SpotCheckPolicy, sample_for_review, spot_check_reason
from core.services.qa import QaRules, apply_due_verdicts, decide, inspect_job, undo_verdict
from core.services.reconcile import reconcile
from core.services.render import render_order
from core.states import InspectionStatus, JobStatus, OrderStatus
from db import tables as t
from sims.camera import photograph
from tests.unit.test_render_stage import place

NO_SPOT_CHECKS = QaRules(spot_checks=SpotCheckPolicy(rate=0.0, first_n_new=0))


def printed_order(api, references=None) -> tuple[str, str]:
    """An order rendered (its print file prepared into `references`, as the render worker does, if given), at a
    partner and printed (moved through the domain's own transitions)."""
    svc = api.services
    order_id = place(api)
    render_order(order_id, uow=svc.uow(), store=svc.store, now=svc.now, clock=time.perf_counter,
                 references=references)
    with svc.uow() as uow:
        order = uow.orders.get(order_id)
        [job] = uow.jobs.for_order(order_id)
        job.partner_id, job.photo_url = "acme-columbus", "http://partner.test/photo"
        for status in (JobStatus.BATCHED, JobStatus.SUBMITTED, JobStatus.PRINTED):
            job.advance(status, at=svc.now(), source="test")
        order.advance(OrderStatus.IN_PRODUCTION, at=svc.now(), source="test")
        order.advance(OrderStatus.QA, at=svc.now(), source="test")
        uow.commit()
        return order_id, job.id


def camera(api, job_id: str, defect: str | None, seed: int = 3):
    """The partner sim's camera photographing the job's real print file (flattened on the white mug)."""
    svc = api.services

    def fetch(_partner_id: str, _url: str) -> bytes:
        with svc.uow() as uow:
            asset = uow.assets.for_line(uow.jobs.get(job_id).line_id)
        printed = np.asarray(Image.open(io.BytesIO(svc.store.get(asset["print_file_key"]))).convert("RGB"))
        photo, _truth = photograph(printed, rng=np.random.default_rng(seed), defect=defect, dpi=asset["dpi"])
        out = io.BytesIO()
        Image.fromarray(photo).save(out, format="JPEG", quality=92)
        return out.getvalue()

    return fetch


def run(api, job_id: str, defect: str | None, rules: QaRules = NO_SPOT_CHECKS) -> str:
    svc = api.services
    return inspect_job(job_id, uow=svc.uow(), store=svc.store, fetch_photo=camera(api, job_id, defect),
                       new_id=svc.ids.new, now=svc.now, rules=rules)


def statuses(api, order_id: str):
    with api.services.engine.connect() as conn:
        order = conn.execute(select(t.orders.c.status, t.orders.c.hold_reason).where(t.orders.c.id == order_id)).one()
        jobs = conn.execute(select(t.print_jobs.c.status, t.print_jobs.c.attempt, t.print_jobs.c.reason_code)
                            .where(t.print_jobs.c.order_id == order_id).order_by(t.print_jobs.c.attempt)).all()
    return order, [tuple(j) for j in jobs]


def test_a_good_print_passes_and_the_order_is_ready_to_ship(api):
    order_id, job_id = printed_order(api)
    assert run(api, job_id, defect=None) == "passed"
    order, jobs = statuses(api, order_id)
    assert order.status == OrderStatus.READY_TO_SHIP and jobs == [(JobStatus.QA_PASSED, 1, None)]
    with api.services.engine.connect() as conn:
        inspection = conn.execute(select(t.inspections)).one()
    assert inspection.status == InspectionStatus.PASSED
    assert api.services.store.get(inspection.heatmap_key)[:2] == b"\xff\xd8"  # stored next to the photo


def test_an_ink_blot_fails_and_a_reprint_is_routed_with_its_reason_and_the_next_attempt(api):
    order_id, job_id = printed_order(api)
    assert run(api, job_id, defect="ink_blot") == "failed"
    order, jobs = statuses(api, order_id)
    assert order.status == OrderStatus.IN_PRODUCTION
    assert jobs == [(JobStatus.QA_FAILED, 1, None), (JobStatus.PENDING, 2, "ink_blot")]
    assert [m for m in api.queued("production") if b"production.route_order" in m]


def test_running_the_inspection_twice_is_harmless(api):
    _order_id, job_id = printed_order(api)
    run(api, job_id, defect=None)
    assert run(api, job_id, defect=None) == "skipped"


def test_after_the_last_attempt_fails_the_order_goes_on_hold_with_an_alert(api):
    order_id, job_id = printed_order(api)
    assert run(api, job_id, defect="ink_blot", rules=replace(NO_SPOT_CHECKS, max_attempts=1)) == "failed"
    order, jobs = statuses(api, order_id)
    assert (order.status, order.hold_reason) == (OrderStatus.ON_HOLD, "reprints_exhausted") and len(jobs) == 1
    with api.services.engine.connect() as conn:
        assert conn.execute(select(t.alerts.c.kind, t.alerts.c.severity)).one() == ("qa", "critical")


def awaiting_review(api) -> tuple[str, str]:
    """An order whose printed item waits for an inspector (no photo came back, so a human must look)."""
    order_id, job_id = printed_order(api)
    svc = api.services
    with svc.uow() as uow:
        uow.jobs.get(job_id).photo_url = None
        uow.commit()
    assert inspect_job(job_id, uow=svc.uow(), store=svc.store, fetch_photo=camera(api, job_id, None),
                       new_id=svc.ids.new, now=svc.now, rules=QaRules()) == "review"
    with svc.engine.connect() as conn:
        return order_id, conn.scalar(select(t.inspections.c.id))


def test_a_photo_the_partner_no_longer_has_goes_to_an_inspector_instead_of_retrying(api):
    order_id, job_id = printed_order(api)
    svc = api.services
    assert inspect_job(job_id, uow=svc.uow(), store=svc.store, fetch_photo=lambda _partner, _url: None,
                       new_id=svc.ids.new, now=svc.now, rules=NO_SPOT_CHECKS) == "review"
    with svc.engine.connect() as conn:
        inspection = conn.execute(select(t.inspections)).one()
        timeline = conn.scalars(select(t.order_events.c.payload).where(t.order_events.c.order_id == order_id)).all()
    assert inspection.status == InspectionStatus.NEEDS_REVIEW
    assert any("no longer has a photo" in str(payload) for payload in timeline)  # the inspector sees why
    order, jobs = statuses(api, order_id)
    assert order.status == OrderStatus.QA and jobs == [(JobStatus.PRINTED, 1, None)]


WINDOW = QaRules().undo_window_s


def verdicts_take_effect(api, *, after_s: float = WINDOW + 1) -> int:
    """The scheduler's beat, `after_s` seconds from now."""
    svc = api.services
    return apply_due_verdicts(uow=svc.uow(), now=svc.now() + timedelta(seconds=after_s), new_id=svc.ids.new,
                              rules=QaRules())


def give(api, inspection_id: str, *, approve: bool, reason: str | None = None, user: str = "quinn") -> str:
    svc = api.services
    return decide(inspection_id, approve=approve, reason=reason, user=user, uow=svc.uow(), now=svc.now())


def undo(api, inspection_id: str, *, after_s: float = 1.0, user: str = "quinn") -> str:
    svc = api.services
    return undo_verdict(inspection_id, user=user, uow=svc.uow(), now=svc.now() + timedelta(seconds=after_s),
                        rules=QaRules())


def inspection_row(api, inspection_id: str):
    with api.services.engine.connect() as conn:
        i = t.inspections
        return conn.execute(select(i.c.status, i.c.pending_verdict, i.c.decided_by)
                            .where(i.c.id == inspection_id)).one()


def test_an_inspector_approves_an_item_and_the_order_is_ready_to_ship_with_the_verdict_audited(api):
    order_id, inspection_id = awaiting_review(api)
    give(api, inspection_id, approve=True)
    order, _ = statuses(api, order_id)
    assert order.status == OrderStatus.QA, "the verdict waits out its undo window"
    assert verdicts_take_effect(api, after_s=WINDOW - 1) == 0

    assert verdicts_take_effect(api) == 1
    order, _ = statuses(api, order_id)
    assert order.status == OrderStatus.READY_TO_SHIP
    with api.services.engine.connect() as conn:
        assert conn.execute(select(t.audit_log.c.actor, t.audit_log.c.action)).all() == [("quinn", "qa.approve")]
    with pytest.raises(NotAllowed):
        give(api, inspection_id, approve=False, reason="ink_blot")
    assert verdicts_take_effect(api) == 0, "applying twice changes nothing"


def test_an_inspector_rejection_needs_a_reason_code_and_orders_a_reprint(api):
    order_id, inspection_id = awaiting_review(api)
    with pytest.raises(NotAllowed):
        give(api, inspection_id, approve=False, reason="ugly")
    give(api, inspection_id, approve=False, reason="colour_shift")
    verdicts_take_effect(api)
    _, jobs = statuses(api, order_id)
    assert jobs == [(JobStatus.QA_FAILED, 1, None), (JobStatus.PENDING, 2, "colour_shift")]


def test_an_inspector_undoes_a_slip_inside_the_window_and_the_item_is_back_in_the_queue(api):
    order_id, inspection_id = awaiting_review(api)
    give(api, inspection_id, approve=False, reason="ink_blot")

    assert undo(api, inspection_id) == "undone"

    assert tuple(inspection_row(api, inspection_id)) == (InspectionStatus.NEEDS_REVIEW, None, None)
    assert verdicts_take_effect(api) == 0
    _, jobs = statuses(api, order_id)
    assert jobs == [(JobStatus.PRINTED, 1, None)], "no reprint was ordered"
    with api.services.engine.connect() as conn:
        assert [a for (a,) in conn.execute(select(t.audit_log.c.action).order_by(t.audit_log.c.id))] == [
            "qa.reject", "qa.undo"]
        kinds = [k for (k,) in conn.execute(select(t.order_events.c.type).where(
            t.order_events.c.type.like("qa.verdict%")).order_by(t.order_events.c.id))]
    assert kinds == ["qa.verdict_given", "qa.verdict_undone"]
    give(api, inspection_id, approve=True)
    verdicts_take_effect(api)
    order, _ = statuses(api, order_id)
    assert order.status == OrderStatus.READY_TO_SHIP, "the item can be decided again after an undo"


def test_undo_is_refused_after_the_window_by_someone_else_or_with_nothing_to_undo(api):
    _, inspection_id = awaiting_review(api)
    with pytest.raises(NotAllowed, match="no verdict"):
        undo(api, inspection_id)
    give(api, inspection_id, approve=True)
    with pytest.raises(NotAllowed, match="Only quinn"):
        undo(api, inspection_id, user="maya")
    with pytest.raises(NotAllowed, match="window has passed"):
        undo(api, inspection_id, after_s=WINDOW + 1)
    verdicts_take_effect(api)
    with pytest.raises(NotAllowed, match="already taken effect"):
        undo(api, inspection_id)
    assert inspection_row(api, inspection_id).status == InspectionStatus.PASSED


def test_the_first_prints_of_a_new_template_version_or_partner_go_to_an_inspector():
    policy = SpotCheckPolicy(rate=0.0, first_n_new=5)
    common = {"job_id": "j", "verdict": "pass", "policy": policy, "partner_failure_rate": 0.0}
    assert spot_check_reason(prints_of_template_version=4, prints_at_partner=99, **common) == "new_template"
    assert spot_check_reason(prints_of_template_version=99, prints_at_partner=0, **common) == "new_partner"
    assert spot_check_reason(prints_of_template_version=5, prints_at_partner=5, **common) is None


def test_hashed_sampling_is_reproducible_and_close_to_its_rate():
    picks = [sample_for_review(f"job_{i}", rate=0.015, seed="s") for i in range(20_000)]
    assert picks == [sample_for_review(f"job_{i}", rate=0.015, seed="s") for i in range(20_000)]
    assert 0.012 < sum(picks) / len(picks) < 0.018


def test_a_partner_that_failed_a_lot_recently_gets_more_spot_checks():
    policy = SpotCheckPolicy(rate=0.01, first_n_new=0)

    def share(failure_rate: float) -> float:
        return sum(spot_check_reason(job_id=f"j{i}", verdict="pass", policy=policy, prints_of_template_version=99,
                                     prints_at_partner=99, partner_failure_rate=failure_rate) == "sampled"
                   for i in range(20_000)) / 20_000

    assert share(0.2) > 3 * share(0.0)


def test_every_borderline_verdict_goes_to_a_human_and_automatic_fails_are_not_sampled():
    policy = SpotCheckPolicy(rate=1.0, first_n_new=0)
    kwargs = {"policy": policy, "prints_of_template_version": 99, "prints_at_partner": 99, "partner_failure_rate": 0}
    assert spot_check_reason(job_id="a", verdict="review", **kwargs) == "borderline"
    assert spot_check_reason(job_id="a", verdict="fail", **kwargs) is None


def test_a_printed_job_whose_inspection_message_was_lost_is_sent_to_qa_again_once(api):
    # given a printed job whose InspectJob never reached a worker (Redis flushed or restarted)
    order_id, job_id = printed_order(api)
    deadlines, now = api.services.settings.stage_deadlines_s, api.services.now()

    def redrive(after: timedelta) -> list[dict]:
        before = len(api.queued("qa"))
        reconcile(api.services.uow(), now=now + after, deadlines_s=deadlines, inspect_after_s=600)
        return [Message.decode(m).kwargs for m in api.queued("qa")[before:]]

    # when the reconciler runs before QA's deadline, then after it, then again at once
    assert redrive(timedelta(minutes=5)) == []
    assert redrive(timedelta(minutes=11)) == [{"job_id": job_id}]
    assert redrive(timedelta(minutes=11, seconds=1)) == []
    # then the job is inspected, the order moves on, and an inspected job is never sent again
    assert run(api, job_id, defect=None) == "passed"
    assert statuses(api, order_id)[0].status == OrderStatus.READY_TO_SHIP
    assert redrive(timedelta(days=1)) == []


def test_the_partners_plain_jpeg_is_stored_as_it_came_and_one_with_camera_metadata_without_it(api):
    svc = api.services
    inspections = {}
    for name, with_exif in (("plain", False), ("exif", True)):
        _order_id, job_id = printed_order(api)
        sent = camera(api, job_id, defect=None)("acme-columbus", "http://partner.test/photo")
        if with_exif:
            exif = Image.Exif()
            exif[0x010F] = "PhotoStation 3000"  # the camera's make: the partner's metadata, not ours to keep
            out = io.BytesIO()
            Image.open(io.BytesIO(sent)).save(out, format="JPEG", quality=92, exif=exif.tobytes())
            sent = out.getvalue()
        inspect_job(job_id, uow=svc.uow(), store=svc.store, fetch_photo=lambda _p, _u, sent=sent: sent,
                    new_id=svc.ids.new, now=svc.now, rules=NO_SPOT_CHECKS)
        with svc.engine.connect() as conn:
            photo_key = conn.execute(select(t.inspections.c.photo_key)
                                     .where(t.inspections.c.job_id == job_id)).scalar_one()
        inspections[name] = (sent, svc.store.get(photo_key))
    sent, stored = inspections["plain"]
    assert stored == sent
    sent, stored = inspections["exif"]
    assert stored != sent and stored[:2] == b"\xff\xd8"
    assert not Image.open(io.BytesIO(stored)).getexif()
