"""A manager disables an account in the browser while its user is signed in: that user's next click is refused."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from db import tables as t
from tests.browser.dashboard import IDLE, pick, rerun, sign_in, type_into

pytestmark = pytest.mark.browser
USERNAME, PASSWORD = "dana", "answers-calls-at-the-desk-2026"
SIGNED_OUT = "You have been signed out: your account is disabled."
REFUSED = "Those credentials don't work, or the account is locked or disabled."


def test_a_disabled_user_is_refused_on_their_next_click_and_cannot_sign_in_again(new_page, world, shots):
    # given maya (manager) has created a support agent's account on the staff admin page
    maya = new_page()
    sign_in(maya, world.system.dashboard_url, "maya", landing="admin_staff")
    expect(maya.get_by_role("heading", name="staff", level=1)).to_be_visible()
    type_into(maya, "Username", USERNAME)
    pick(maya, "Role", "support_agent")
    type_into(maya, "Initial password", PASSWORD)
    with rerun(maya):
        maya.get_by_role("button", name="Create account").click()
    world.wait_for(f"{USERNAME}'s account", lambda: world.scalar(
        select(t.staff_users.c.active).where(t.staff_users.c.username == USERNAME)), timeout=10)
    shots(maya, "maya-created-dana")
    # and dana has signed in with it and works on the order timeline
    dana = new_page()
    sign_in(dana, world.system.dashboard_url, USERNAME, PASSWORD, landing="order_timeline")
    expect(dana.get_by_role("heading", name="Order timeline", level=1)).to_be_visible()
    shots(dana, "dana-signed-in")

    # when maya disables the account
    pick(maya, "Account", USERNAME)
    with rerun(maya):
        maya.get_by_role("button", name="Disable").click()
    expect(maya.get_by_role("main").get_by_text("Disabled", exact=True)).to_be_visible()
    shots(maya, "maya-disabled-dana")
    assert world.scalar(select(t.staff_users.c.active).where(t.staff_users.c.username == USERNAME)) is False

    # then dana's next click (to another page) signs her out with the reason, and shows nothing of the page
    with rerun(dana):
        dana.get_by_role("navigation").get_by_role("link", name="Control room").click()
    dana.locator(IDLE).wait_for()  # signing out runs the app again, to the login form
    expect(dana.get_by_text(SIGNED_OUT)).to_be_visible()
    expect(dana.get_by_role("textbox", name="Username")).to_be_visible()
    expect(dana.get_by_text(f"Signed in as {USERNAME}")).to_have_count(0)
    expect(dana.get_by_role("heading", name="Control room")).to_have_count(0)
    shots(dana, "dana-signed-out")

    # and signing in again is refused
    dana.get_by_role("textbox", name="Username").fill(USERNAME)
    dana.get_by_role("textbox", name="Password").fill(PASSWORD)
    with rerun(dana):
        dana.get_by_role("button", name="Sign in").click()
    expect(dana.get_by_text(REFUSED)).to_be_visible()
    expect(dana.get_by_text(f"Signed in as {USERNAME}")).to_have_count(0)
    shots(dana, "dana-refused")
