"""An ops manager in the browser: releases a waiting batch, then changes a priority weight and applies it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from core.services.batches import EDIT_RULES, RULES_KEY
from core.states import BatchStatus, OrderStatus
from db import tables as t
from tests.browser.dashboard import open_expander, open_page, rerun, sign_in, toast

pytestmark = pytest.mark.browser
GONE = {BatchStatus.RELEASED, BatchStatus.SUBMITTED, BatchStatus.IN_PROGRESS, BatchStatus.DONE}


def stored_rules(world) -> dict:
    return world.scalar(select(t.settings.c.value).where(t.settings.c.key == RULES_KEY))


def rule_edits(world) -> list[tuple[str, float | None, float]]:
    """Who changed the production rules, with the express weight before and after, oldest first."""
    a = t.audit_log
    rows = world.rows(select(a.c.actor, a.c.before, a.c.after).where(a.c.action == EDIT_RULES).order_by(a.c.id))
    return [(actor, (before or {}).get("priority", {}).get("express"), after["priority"]["express"])
            for actor, before, after in rows]


def test_an_ops_manager_releases_a_waiting_batch_and_changes_a_priority_weight(page, world, shots):
    # given a batch that would wait a day to fill, and olive (ops manager) on the batch builder
    assert world.scalar(select(t.batches.c.status).where(t.batches.c.id == world.batch_id)) == BatchStatus.OPEN
    sign_in(page, world.system.dashboard_url, "olive", landing="batch_builder")
    expect(page.get_by_role("heading", name="Batch builder", level=1)).to_be_visible()
    batch = page.get_by_test_id("stExpander").filter(has_text=world.batch_id)
    expect(batch).to_contain_text("open")
    shots(page, "batches")

    # when she opens that batch and clicks "Release now"
    open_expander(page, world.batch_id)
    with rerun(page):
        batch.get_by_role("button", name="Release now").click()

    # then she is told it is on its way, and its orders pass the production gate at the partner
    toast(page, f"Batch {world.batch_id} is released")
    shots(page, "released")
    world.wait_for("the released batch at its partner", lambda: world.scalar(
        select(t.batches.c.status).where(t.batches.c.id == world.batch_id)) in GONE, timeout=30)
    for number in world.batch_orders:
        world.wait_for(f"{number} in production", lambda number=number: world.order_status(number) not in {
            OrderStatus.READY_FOR_PRODUCTION}, timeout=30)
    # and the batch is no longer offered for action
    open_page(page, "Batch builder")
    expect(page.get_by_test_id("stExpander").filter(has_text=world.batch_id)).to_have_count(0)

    # when she moves the express-shipping weight up two steps with the arrow keys
    before = float(stored_rules(world)["priority"]["express"])
    edits_before = rule_edits(world)
    slider = page.get_by_role("slider", name=re.compile("^Express shipping"))
    after = before + 2 * float(slider.get_attribute("step"))
    slider.focus()
    with rerun(page):
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
    expect(slider).to_have_value(f"{after:g}")
    shots(page, "weight-moved")
    # then nothing is saved until she applies
    assert float(stored_rules(world)["priority"]["express"]) == before

    # when she clicks "Apply these rules"
    with rerun(page):
        page.get_by_role("button", name="Apply these rules").click()

    # then the new weight is in force, stored by her, and her change is in the audit log
    toast(page, "Production rules saved")
    shots(page, "applied")
    assert float(stored_rules(world)["priority"]["express"]) == after
    assert world.scalar(select(t.settings.c.updated_by).where(t.settings.c.key == RULES_KEY)) == "olive"
    assert rule_edits(world) == edits_before + [("olive", before, after)]
