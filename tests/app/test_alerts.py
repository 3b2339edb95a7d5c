"""Open alerts in the control room: raised by the real monitor, acknowledged by the roles allowed to, audited."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

import db
from core.monitors import default_thresholds
from core.policy import can_do
from core.services.monitor import run_monitor
from core.settings import Settings
from core.states import Role
from db import tables as t
from tests.app.conftest import STAFF
from tests.app.helpers import open_page, sign_in, texts

USERS = {Role.OPS_MANAGER: "olive", Role.MANAGER: "maya", Role.SUPPORT_AGENT: "sam", Role.QA_INSPECTOR: "quinn"}


@pytest.fixture
def stuck(engine, orders) -> dict[str, int]:
    """Run the real monitor on the dashboard's database: Ada's order has sat in rendering for 15 minutes
    (deadline 5) and Grace's in accepted for 5 (deadline 1), so two stuck alerts open. Returns key → id."""
    run_monitor(db.SqlUnitOfWork(db.make_session_factory(engine)), queues=lambda _window: [],
                now=datetime.now(UTC), defaults=default_thresholds(Settings()))
    with engine.connect() as conn:
        return {row.key: row.id for row in conn.execute(select(t.alerts.c.key, t.alerts.c.id))}


def control_room(app, role: Role):
    sign_in(app, USERS[role], STAFF[role]["password"])
    return open_page(app, "control_room")


def alert_row(engine, alert_id: int) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(select(t.alerts).where(t.alerts.c.id == alert_id)).one()._mapping)


def audit_rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(t.audit_log)
                                                       .where(t.audit_log.c.action == "alert.acknowledge"))]


def test_the_control_room_lists_open_alerts_with_severity_kind_message_and_since(app, stuck, orders):
    page = control_room(app, Role.OPS_MANAGER)

    assert not page.exception
    shown = texts(page)
    assert "Open alerts" in shown and "2 open, 2 critical. Each clears by itself when its condition ends." in shown
    assert ":red-badge[critical]" in shown and "stuck" in shown  # both past three deadlines
    assert any(t.startswith("1 order stuck in rendering") and orders.ada_number in t for t in shown)
    assert any(t.startswith("1 order stuck in accepted") and orders.grace_number in t for t in shown)
    assert sum(t.endswith(" ago") for t in shown) == 2  # since, for each
    assert {b.key for b in page.button if b.key.startswith("alerts.ack.")} == {f"alerts.ack.{i}"
                                                                               for i in stuck.values()}


@pytest.mark.parametrize("role", [Role.OPS_MANAGER, Role.MANAGER, Role.SUPPORT_AGENT])
def test_acknowledging_records_who_and_when_and_is_audited(app, engine, stuck, role):
    alert_id = stuck["order:rendering"]
    page = control_room(app, role)

    page.button(key=f"alerts.ack.{alert_id}").click().run()

    assert not page.exception and not page.error
    row = alert_row(engine, alert_id)
    assert row["acknowledged_by"] == USERS[role] and row["acknowledged_at"] is not None
    assert row["cleared_at"] is None  # acknowledged, still open until the order moves
    [audit] = audit_rows(engine)
    assert (audit["actor"], audit["target_type"], audit["target_id"]) == (USERS[role], "alert", str(alert_id))
    assert audit["after"]["acknowledged_by"] == USERS[role] and audit["after"]["key"] == "order:rendering"
    # the list now says who is on it, and offers no second acknowledgement
    assert any(t.startswith(f"{USERS[role]} · ") for t in texts(page))
    assert f"alerts.ack.{alert_id}" not in {b.key for b in page.button}
    assert f"alerts.ack.{stuck['order:accepted']}" in {b.key for b in page.button}


def test_a_qa_inspector_sees_alerts_but_cannot_acknowledge_them(app, engine, stuck):
    assert not can_do(Role.QA_INSPECTOR, "alert.acknowledge")
    page = control_room(app, Role.QA_INSPECTOR)

    assert not page.exception
    assert any("Your role can see alerts but not acknowledge them." in t for t in texts(page))
    assert not [b for b in page.button if b.key.startswith("alerts.ack.")]
    # and a forged request from their session is refused by the action itself
    page.session_state["alerts.acknowledge"] = stuck["order:rendering"]
    page.run()
    assert [e.value for e in page.error] == ["Your role can't do this, so nothing was changed. Ask a manager if you "
                                             "need it."]
    assert audit_rows(engine) == [] and alert_row(engine, stuck["order:rendering"])["acknowledged_by"] is None


def test_an_alert_that_cleared_before_the_click_is_refused_and_nothing_is_audited(app, engine, stuck):
    alert_id = stuck["order:accepted"]
    page = control_room(app, Role.OPS_MANAGER)
    # the condition ends (the monitor clears it) while the page is open
    uow = db.SqlUnitOfWork(db.make_session_factory(engine))
    with uow:
        uow.alerts.clear(kind="stuck", key="order:accepted", at=datetime.now(UTC))
        uow.commit()

    page.button(key=f"alerts.ack.{alert_id}").click().run()

    [error] = page.error
    assert error.value == (f"Alert {alert_id} is no longer open: its condition ended or support resolved it. "
                           "Nothing was changed: the list now shows the alerts still open.")
    assert audit_rows(engine) == [] and alert_row(engine, alert_id)["acknowledged_by"] is None
    assert f"alerts.ack.{alert_id}" not in {b.key for b in page.button}


def test_with_nothing_open_the_control_room_says_all_is_well(app):
    page = control_room(app, Role.MANAGER)

    assert not page.exception
    assert [s.value for s in page.success] == ["No open alerts: every stage is within its thresholds."]
