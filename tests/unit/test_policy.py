"""Role policy and login lockout: tables decide who sees what, and the lockout counts, locks and runs out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from core.policy import (
    ACTIONS,
    PAGES,
    after_failed_login,
    after_successful_login,
    can_do,
    can_view,
    is_locked,
    visible_pages,
)
from core.states import Role

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
roles = st.sampled_from(list(Role))
unknown_ids = st.text(min_size=0, max_size=30).filter(lambda s: s not in PAGES and s not in ACTIONS)
MAX, LOCK_S = 5, 300.0


@given(roles)
def test_every_role_sees_the_control_room(role):
    assert can_view(role, "control_room")
    assert visible_pages(role)[0] == "control_room"


@given(roles, st.sampled_from(list(PAGES)))
def test_a_role_sees_a_page_exactly_when_the_table_lists_it(role, page):
    assert can_view(role, page) == (role in PAGES[page])
    assert can_view(str(role), page) == can_view(role, page)  # stored strings work too


@given(roles, unknown_ids)
def test_no_role_sees_a_page_or_does_an_action_outside_the_tables(role, unknown):
    assert not can_view(role, unknown)
    assert not can_do(role, unknown)


@given(st.text(max_size=20).filter(lambda s: s not in set(Role)), st.sampled_from([*PAGES, *ACTIONS]))
def test_an_unknown_role_sees_and_does_nothing(role, key):
    assert not can_view(role, key)
    assert not can_do(role, key)


def test_the_first_pages_are_for_the_roles_the_design_names():
    assert PAGES["control_room"] == frozenset(Role)
    assert PAGES["order_timeline"] == {Role.SUPPORT_AGENT, Role.OPS_MANAGER, Role.MANAGER}
    assert not can_view(Role.QA_INSPECTOR, "order_timeline")


def test_a_qa_inspector_may_not_add_notes_to_orders_but_support_may():
    assert can_do(Role.SUPPORT_AGENT, "order.add_note")
    assert not can_do(Role.QA_INSPECTOR, "order.add_note")


def test_failures_below_the_limit_count_without_locking():
    counter = after_failed_login(MAX - 2, None, NOW, max_attempts=MAX, lockout_s=LOCK_S)

    assert counter.failed_logins == MAX - 1 and counter.locked_until is None
    assert not is_locked(counter.failed_logins, counter.locked_until, NOW, max_attempts=MAX)


def test_the_failure_that_reaches_the_limit_locks_for_the_lockout_time():
    counter = after_failed_login(MAX - 1, None, NOW, max_attempts=MAX, lockout_s=LOCK_S)

    assert counter.locked_until == NOW + timedelta(seconds=LOCK_S)
    assert is_locked(counter.failed_logins, counter.locked_until, NOW + timedelta(seconds=LOCK_S - 1),
                     max_attempts=MAX)
    assert not is_locked(counter.failed_logins, counter.locked_until, NOW + timedelta(seconds=LOCK_S),
                         max_attempts=MAX)


def test_a_failure_after_the_lock_ran_out_starts_a_fresh_count():
    counter = after_failed_login(MAX, NOW - timedelta(seconds=1), NOW, max_attempts=MAX, lockout_s=LOCK_S)

    assert counter.failed_logins == 1 and counter.locked_until is None


def test_a_success_clears_count_and_lock():
    counter = after_successful_login()

    assert (counter.failed_logins, counter.locked_until) == (0, None)


@given(st.integers(min_value=1, max_value=10), st.integers(min_value=0, max_value=30))
def test_exactly_max_attempts_consecutive_failures_lock_the_account(max_attempts, tries):
    failed, locked_until = 0, None
    for _ in range(tries):
        if is_locked(failed, locked_until, NOW, max_attempts=max_attempts):
            break  # the dashboard refuses without counting
        counter = after_failed_login(failed, locked_until, NOW, max_attempts=max_attempts, lockout_s=LOCK_S)
        failed, locked_until = counter.failed_logins, counter.locked_until

    assert is_locked(failed, locked_until, NOW, max_attempts=max_attempts) == (tries >= max_attempts)
