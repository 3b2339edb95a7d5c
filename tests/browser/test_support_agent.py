"""A support agent in the browser: finds an order by its tracking number, and cancels another before the gate."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from core.states import JobStatus, OrderStatus
from db import tables as t
from tests.browser.dashboard import click, open_expander, sign_in, toast, type_into

pytestmark = pytest.mark.browser


def search(page, term: str) -> None:
    type_into(page, "Find an order", term)


def test_a_support_agent_finds_an_order_by_tracking_number_and_cancels_another_before_the_gate(page, world, shots):
    # given sam (support agent) on the order timeline
    sign_in(page, world.system.dashboard_url, "sam", landing="order_timeline")
    expect(page.get_by_role("heading", name="Order timeline", level=1)).to_be_visible()
    main = page.get_by_role("main")

    # when he types a parcel's tracking number into the search box
    code, number = next(iter(world.tracked.items()))
    search(page, code)
    # then that order is found, with its parcel, its jobs and its timeline
    expect(main.get_by_text("1 order(s) found")).to_be_visible()
    expect(main.get_by_role("radiogroup")).to_contain_text(number)
    expect(main).to_contain_text(code)
    expect(main.get_by_role("heading", name="Timeline", exact=True)).to_be_visible()
    shots(page, "found-by-tracking-number")

    # when he looks for an order still waiting for production and tries to cancel it without saying why
    search(page, world.cancellable)
    expect(main.get_by_role("radiogroup")).to_contain_text(world.cancellable)
    open_expander(page, "Cancel this order")
    click(page, page.get_by_role("button", name="Cancel order"))
    # then he is asked why, and nothing changes
    expect(main.get_by_role("alert").filter(has_text="Say why")).to_be_visible()
    assert world.order_status(world.cancellable) == OrderStatus.READY_FOR_PRODUCTION
    shots(page, "reason-needed")

    # when he gives the reason and cancels
    open_expander(page, "Cancel this order")
    type_into(page, "Why", "the customer asked by phone")
    open_expander(page, "Cancel this order")
    click(page, page.get_by_role("button", name="Cancel order"))

    # then the order is cancelled, its job with it, the cancel button is gone, and the audit log says who and why
    toast(page, "The order is cancelled")
    shots(page, "cancelled")
    assert world.order_status(world.cancellable) == OrderStatus.CANCELLED
    o, j = t.orders, t.print_jobs
    jobs = world.rows(select(j.c.status).join(o, o.c.id == j.c.order_id).where(o.c.number == world.cancellable))
    assert [status for (status,) in jobs] == [JobStatus.CANCELLED]
    expect(main.get_by_role("radiogroup")).to_contain_text(re.compile("cancelled", re.IGNORECASE))
    expect(page.get_by_role("button", name="Cancel order")).to_have_count(0)
    a = t.audit_log
    audit = world.rows(select(a.c.actor, a.c.after).join(o, o.c.id == a.c.order_id)
                       .where(a.c.action == "order.cancel", o.c.number == world.cancellable))
    assert [(actor, after["reason"]) for actor, after in audit] == [("sam", "the customer asked by phone")]
