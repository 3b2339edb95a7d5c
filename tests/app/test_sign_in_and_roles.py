"""Sign-in and roles through the real entrypoint: each role reaches exactly its pages; refusals, lockout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from app.auth import REFUSED
from app.navigation import SPECS
from core.policy import PAGES
from core.settings import Settings
from core.states import Role
from db import tables as t
from tests.app.conftest import ROOT, STAFF
from tests.app.helpers import PAGES_DIR, open_page, reachable_pages, sign_in

# Written out by hand, not read from core.policy: if the policy drifts, these tests say so.
EXPECTED_PAGES = {
    Role.QA_INSPECTOR: {"control_room"},
    Role.OPS_MANAGER: {"control_room", "order_timeline"},
    Role.SUPPORT_AGENT: {"control_room", "order_timeline"},
    Role.MANAGER: {"control_room", "order_timeline"},
}
LOCKOUT_AFTER = Settings().login_attempts_before_lockout


def expected_pages(role: Role) -> set[str]:
    """The hand-written pages above, plus pages added later, which follow the policy table."""
    later = {page for page, roles in PAGES.items() if page not in {"control_room", "order_timeline"}
             and role in roles}
    return EXPECTED_PAGES[role] | later


def audit_actions(engine, username: str) -> list[tuple[str, dict | None]]:
    a = t.audit_log
    with engine.connect() as conn:
        return [(row.action, row.after) for row in conn.execute(
            select(a.c.action, a.c.after).where(a.c.actor == username, a.c.target_type == "staff_user")
            .order_by(a.c.id))]


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_each_role_reaches_exactly_the_pages_it_may_view(app, role):
    user = STAFF[role]

    sign_in(app, user["username"], user["password"])

    assert not app.exception
    assert app.session_state["auth.user"] == user["username"]
    assert [title.value for title in app.title] == ["Control room"]  # the landing page
    assert reachable_pages(app) == expected_pages(role)
    for page in expected_pages(role):
        open_page(app, page)
        assert not app.exception, page
        assert not app.error, page
        assert app.title[0].value == SPECS[page].title


def test_every_policy_page_has_a_file_and_a_navigation_entry():
    assert set(PAGES) <= {path.stem for path in PAGES_DIR.glob("*.py")}
    assert set(PAGES) <= set(SPECS)


def test_a_wrong_password_shows_the_one_refusal_and_no_pages(app, engine):
    sign_in(app, "sam", "not-sams-password")

    assert [error.value for error in app.error] == [REFUSED]
    assert "auth.user" not in app.session_state
    assert reachable_pages(app) == set()
    assert audit_actions(engine, "sam") == [("auth.login_failed", {"reason": "wrong_password",
                                                                    "failed_logins": 1})]


def test_an_unknown_user_gets_the_same_refusal_and_is_audited(app, engine):
    sign_in(app, "mallory", "guess")

    assert [error.value for error in app.error] == [REFUSED]
    assert reachable_pages(app) == set()
    assert audit_actions(engine, "mallory") == [("auth.login_failed", {"reason": "unknown_user"})]


def test_a_successful_sign_in_is_audited_and_clears_earlier_failures(app, engine):
    sign_in(app, "maya", "wrong")
    sign_in(app, "maya", STAFF[Role.MANAGER]["password"])

    assert [action for action, _ in audit_actions(engine, "maya")] == ["auth.login_failed", "auth.login"]
    with engine.connect() as conn:
        row = conn.execute(select(t.staff_users).where(t.staff_users.c.username == "maya")).one()
    assert row.failed_logins == 0 and row.locked_until is None and row.last_login_at is not None


def test_a_user_disabled_mid_session_is_signed_out_on_the_next_rerun(app, engine):
    sign_in(app, "sam", STAFF[Role.SUPPORT_AGENT]["password"])
    open_page(app, "order_timeline")
    app.text_input(key="timeline.query").input("PR-").run()

    with engine.begin() as conn:
        conn.execute(update(t.staff_users).where(t.staff_users.c.username == "sam").values(active=False))
    app.run()

    assert "auth.user" not in app.session_state
    assert "timeline.query" not in app.session_state  # the page's state went with the session
    assert "disabled" in app.info[0].value
    assert app.text_input(key="auth.username")  # the login form is back
    assert reachable_pages(app) == set()


def test_a_disabled_user_cannot_sign_in(app, engine):
    with engine.begin() as conn:
        conn.execute(update(t.staff_users).where(t.staff_users.c.username == "olive").values(active=False))

    sign_in(app, "olive", STAFF[Role.OPS_MANAGER]["password"])

    assert [error.value for error in app.error] == [REFUSED]
    assert reachable_pages(app) == set()
    assert audit_actions(engine, "olive")[-1] == ("auth.login_failed", {"reason": "disabled"})


def test_repeated_failures_lock_the_account_even_against_the_right_password(app, engine):
    for _ in range(LOCKOUT_AFTER):
        sign_in(app, "quinn", "wrong-password")

    sign_in(app, "quinn", STAFF[Role.QA_INSPECTOR]["password"])

    assert [error.value for error in app.error] == [REFUSED]
    assert reachable_pages(app) == set()
    with engine.connect() as conn:
        row = conn.execute(select(t.staff_users).where(t.staff_users.c.username == "quinn")).one()
    assert row.failed_logins == LOCKOUT_AFTER
    assert row.locked_until > datetime.now(UTC) + timedelta(seconds=Settings().login_lockout_s - 60)
    assert audit_actions(engine, "quinn")[-1] == ("auth.login_failed", {"reason": "locked"})


def test_the_lock_runs_out(app, engine):
    for _ in range(LOCKOUT_AFTER):
        sign_in(app, "quinn", "wrong-password")
    with engine.begin() as conn:
        conn.execute(update(t.staff_users).where(t.staff_users.c.username == "quinn")
                     .values(locked_until=datetime.now(UTC) - timedelta(seconds=1)))

    sign_in(app, "quinn", STAFF[Role.QA_INSPECTOR]["password"])

    assert app.session_state["auth.user"] == "quinn"
    assert reachable_pages(app) == {"control_room"} | expected_pages(Role.QA_INSPECTOR)


def test_signing_out_returns_to_the_login_form(app):
    sign_in(app, "maya", STAFF[Role.MANAGER]["password"])

    app.button(key="auth.sign_out").click().run()

    assert "auth.user" not in app.session_state
    assert app.text_input(key="auth.username")
    assert reachable_pages(app) == set()


def test_a_page_opened_directly_still_refuses_a_role_that_may_not_view_it(database_url):
    # Defence in depth: even without the navigation, the page's own require() stops a QA inspector.
    page = AppTest.from_file(str(ROOT / "pages" / "order_timeline.py"), default_timeout=30)
    page.session_state["auth.user"] = "quinn"

    page.run()

    assert "can't open this page" in page.error[0].value
    assert not page.text_input


def test_a_page_opened_directly_without_a_session_asks_to_sign_in(database_url):
    page = AppTest.from_file(str(ROOT / "pages" / "control_room.py"), default_timeout=30).run()

    assert "sign in" in page.error[0].value
    assert not page.get("plotly_chart")
