"""A QA inspector works the review queue in the browser: approves one print, rejects another with a reason."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from core.states import InspectionStatus, JobStatus, OrderStatus
from db import tables as t
from tests.browser.dashboard import open_page, pick, rerun, sign_in, toast, unfocus

pytestmark = pytest.mark.browser


def shown_order(page: Page) -> str:
    """The order number of the item on screen (the facts line under the pictures: "Order PR-… · SKU …")."""
    facts = page.get_by_role("main").get_by_text(re.compile(r"^Order PR-\w+ · SKU")).first
    return re.match(r"Order (PR-\w+)", facts.inner_text()).group(1)


def waiting_for_review(world) -> list[str]:
    """Order numbers of the items in the review queue, oldest first."""
    o, i = t.orders, t.inspections
    return [number for (number,) in world.rows(
        select(o.c.number).join(i, i.c.order_id == o.c.id)
        .where(i.c.status == InspectionStatus.NEEDS_REVIEW, i.c.pending_verdict.is_(None))
        .order_by(i.c.created_at))]


def inspection_of(world, number: str) -> tuple[str, str | None]:
    """Status and pending verdict of the order's first inspection (a reprint would get one of its own)."""
    o, i = t.orders, t.inspections
    return tuple(world.rows(select(i.c.status, i.c.pending_verdict).join(o, o.c.id == i.c.order_id)
                            .where(o.c.number == number).order_by(i.c.created_at).limit(1))[0])


def metric(page: Page, label: str, value: int) -> None:
    """The metric tile `label` shows exactly `value`."""
    tile = page.get_by_test_id("stMetric").filter(has_text=label)
    expect(tile).to_have_text(re.compile(rf"{label}\D*{value}\s*$"))


def test_an_inspector_approves_one_print_and_rejects_another_with_a_reason(page, world, shots):
    # given prints that the QA stage sent to a human, and quinn (QA inspector) on the review page
    sign_in(page, world.system.dashboard_url, "quinn", landing="qa_review")
    expect(page.get_by_role("heading", name="QA review", level=1)).to_be_visible()
    waiting = len(waiting_for_review(world))
    metric(page, "Waiting for review", waiting)
    expect(page.get_by_role("img").first).to_be_visible()  # the print file and the photo, side by side
    first = shown_order(page)
    assert first == waiting_for_review(world)[0], "the oldest item comes first"
    shots(page, "queue")

    # when she presses A (the Approve shortcut) on the first item
    unfocus(page)
    with rerun(page):
        page.keyboard.press("a")

    # then she is told it passes unless she undoes it, and the next item comes up
    toast(page, re.compile(r"Approved inspection .* passes QA"))
    shots(page, "approved")
    second = shown_order(page)
    assert second != first
    # and once the undo window is over the print has passed QA and its order goes on to shipping
    world.wait_for(f"{first}'s approval to take effect",
                   lambda: inspection_of(world, first)[0] == InspectionStatus.PASSED, timeout=30)
    world.wait_for(f"{first} past QA", lambda: world.order_status(first) in {
        OrderStatus.READY_TO_SHIP, OrderStatus.LABEL_CREATED, OrderStatus.SHIPPED}, timeout=30)

    # when she tries to reject the next item without a reason code (the X shortcut)
    unfocus(page)
    with rerun(page):
        page.keyboard.press("x")
    # then she is asked for one and nothing changes
    expect(page.get_by_role("alert").filter(has_text="reason code")).to_be_visible()
    assert inspection_of(world, second) == (InspectionStatus.NEEDS_REVIEW, None)
    shots(page, "reason-needed")

    # when she picks "ink blot" and clicks Reject
    pick(page, "Reason code", "ink blot")
    with rerun(page):
        page.get_by_role("button", name="Reject").click()

    # then the rejection is confirmed with its reason, and a reprint with that reason code is ordered
    toast(page, re.compile(r"Rejected inspection .*ink_blot"))
    shots(page, "rejected")
    world.wait_for(f"{second}'s rejection to take effect",
                   lambda: inspection_of(world, second)[0] == InspectionStatus.FAILED, timeout=30)
    o, j = t.orders, t.print_jobs
    jobs = world.rows(select(j.c.attempt, j.c.status, j.c.reason_code).join(o, o.c.id == j.c.order_id)
                      .where(o.c.number == second).order_by(j.c.attempt))
    assert [(attempt, reason) for attempt, _, reason in jobs] == [(1, None), (2, "ink_blot")]
    assert jobs[0].status == JobStatus.QA_FAILED

    # and the queue she sees is two items shorter, with two decided today
    open_page(page, "QA review")
    metric(page, "Waiting for review", waiting - 2)
    metric(page, "Decided today", 2)
    shots(page, "queue-after")
