"""The two first pages as staff use them: the control room's live tiles, and support's order search."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from core.states import Role
from db import tables as t
from tests.app.conftest import STAFF, TRACKING
from tests.app.helpers import open_page, sign_in, texts, unescaped


@pytest.fixture
def support(app):
    sign_in(app, "sam", STAFF[Role.SUPPORT_AGENT]["password"])
    return open_page(app, "order_timeline")


def search(at, term: str):
    return at.text_input(key="timeline.query").input(term).run()


def timeline_lines(at) -> list[str]:
    return [unescaped(md.value) for md in at.markdown if md.value.startswith("**")]


def test_support_finds_an_order_by_email_and_reads_its_timeline_newest_first(support, orders):
    search(support, orders.ada_email.upper())

    assert not support.exception
    [results] = support.radio
    assert [unescaped(option).split(" · ")[0] for option in results.options] == [orders.ada_number]
    [header] = [text for text in texts(support) if text.startswith(orders.ada_number)]
    assert header.endswith(":blue-badge[rendering]")
    lines = timeline_lines(support)
    assert lines[0].startswith("**order.rendering** — Order accepted → rendering")
    assert lines[-1].startswith(f"**order.received** — Order {orders.ada_number} received from storefront")
    assert any("by channel:storefront" in caption for caption in texts(support))


@pytest.mark.parametrize("term", ["number_lower", "number", "external_id", "tracking", "order_id"])
def test_support_finds_the_same_order_by_any_of_its_handles(support, orders, term):
    handle = {"number_lower": orders.ada_number.lower(), "number": orders.ada_number,
              "external_id": orders.ada_external_id, "tracking": TRACKING, "order_id": orders.ada_id}[term]

    search(support, f"  {handle} ")

    [results] = support.radio
    assert [unescaped(option).split(" · ")[0] for option in results.options] == [orders.ada_number]
    assert support.session_state["timeline.selected"] == orders.ada_id


def test_an_email_finds_every_order_of_that_customer_and_only_theirs(support, orders):
    search(support, "grace@example.com")

    [results] = support.radio
    assert [unescaped(option).split(" · ")[0] for option in results.options] == [orders.grace_number]


def test_a_search_that_matches_nothing_says_what_to_try(support):
    search(support, "nobody@example.com")

    assert not support.radio
    assert "No order matches" in support.info[0].value


def test_the_order_header_shows_lines_and_jobs(support, orders):
    search(support, orders.ada_number)

    metrics = {metric.label: metric.value for metric in support.metric}
    assert metrics["Customer"] == "Ada Lovelace"
    assert metrics["Shipping"] == "express"
    lines, jobs, shipments = support.dataframe
    assert list(lines.value["SKU"]) == ["TEE-DTG-BLK-M"]
    assert list(lines.value["texts"]) == ["headline: Best Dad Ever"]
    assert len(jobs.value) == 2  # two units, one print job each
    assert list(shipments.value["tracking"]) == [TRACKING]


def test_the_control_room_shows_states_queues_intake_and_refusals(app):
    sign_in(app, "quinn", STAFF[Role.QA_INSPECTOR]["password"])

    assert not app.exception
    assert len(app.get("plotly_chart")) == 3  # orders by state, intake per minute, refusal reasons
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Accepted (last hour)"] == "2"
    assert metrics["Refused (last hour)"] == "1"  # one checkout refused for two reasons
    [queues] = app.dataframe
    assert queues.value.loc[0, ["queue", "depth", "delayed", "dead"]].tolist() == ["render", 3, 0, 0]
    assert list(queues.value.loc[0, "depth trend"]) == [4, 6, 3]  # oldest first, newest last


def test_the_control_room_asks_about_the_scheduler_when_there_are_no_samples(app, engine):
    with engine.begin() as conn:
        conn.execute(delete(t.queue_samples))

    sign_in(app, "olive", STAFF[Role.OPS_MANAGER]["password"])

    assert "No samples yet — is the scheduler running?" in [info.value for info in app.info]
