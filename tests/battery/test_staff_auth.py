"""Battery check 5: password guessing against the real sign-in, the role × page × action matrix through AppTest,
and a user disabled mid-session, on PostgreSQL."""

from __future__ import annotations

import pytest

from battery import staff_auth
from tests.battery.conftest import assert_figures

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(300)]


def test_guessing_is_throttled_every_guard_matches_policy_and_a_disabled_user_is_signed_out(ctx):
    # Each attempt is counted before its (slow) argon2 verify (db.staff.claim_attempt), so guesses in flight at
    # once cannot get more passwords checked than the lockout allows.
    assert_figures(staff_auth.staff_auth(ctx))
