"""What a staff user does in the dashboard, by visible text and role (Streamlit's CSS and keys may change)."""

from __future__ import annotations

import contextlib
import re

from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.world import STAFF

TIMEOUT_MS = 30_000
"""How long a step may take: on a busy 2-core CI machine one run of a page can take many seconds."""
expect.set_options(timeout=TIMEOUT_MS)


def wait_until_idle(page: Page, timeout_ms: int = TIMEOUT_MS) -> None:
    """Let the script run that the last click or key started finish (Streamlit marks its app root)."""
    page.wait_for_timeout(200)  # the rerun request goes out asynchronously after the event
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=timeout_ms)


def wait_for_rerun(page: Page, timeout_ms: int = TIMEOUT_MS) -> None:
    """After a change Streamlit sends late (a slider waits for the keys or the drag to settle): wait for the
    run it starts to begin, then to end."""
    with contextlib.suppress(PlaywrightTimeoutError):  # already over: the checks after it are what matter
        page.locator('[data-testid="stApp"]:not([data-test-script-state="notRunning"])').wait_for(timeout=3_000)
    wait_until_idle(page, timeout_ms)


def sign_in(page: Page, dashboard_url: str, username: str, password: str | None = None, *,
            landing: str = "") -> None:
    """Open the dashboard (at a bookmarked page's URL when `landing` names one), type the credentials and press
    Enter; the sidebar then says who is signed in, and the bookmarked page opens."""
    if password is None:
        password = next(user["password"] for user in STAFF.values() if user["username"] == username)
    page.goto(f"{dashboard_url}/{landing}")
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("textbox", name="Password").press("Enter")
    expect(page.get_by_text(f"Signed in as {username}")).to_be_visible()
    wait_until_idle(page)


def open_page(page: Page, link: str, heading: str | re.Pattern | None = None) -> None:
    """Follow the page's link in the sidebar navigation (a reload would end the session)."""
    nav = page.get_by_role("navigation")
    more = page.get_by_role("region", name="Sidebar").get_by_text(re.compile(r"^View \d+ more$"))
    if more.count():  # a long page list is folded after ten links
        more.click()
    nav.get_by_role("link", name=link, exact=True).click()
    expect(page.get_by_role("heading", name=heading or link, level=1)).to_be_visible()
    wait_until_idle(page)


def pick(page: Page, label: str, option: str | re.Pattern) -> None:
    """Choose `option` in the drop-down labelled `label`: click it, type to narrow the list, take the option."""
    box = page.get_by_role("combobox", name=label)
    box.click()
    if isinstance(option, str):
        box.fill(option)
    page.get_by_role("option", name=option).first.click()
    wait_until_idle(page)


def open_expander(page: Page, label: str | re.Pattern) -> None:
    """Unfold the expander titled `label` (left as it is when already open: a click would fold it)."""
    details = page.get_by_test_id("stExpander").filter(has_text=label).locator("details")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    expect(details).to_have_attribute("open", "")


def unfocus(page: Page) -> None:
    """Take the focus out of any field, so a key press is a keyboard shortcut and not typing."""
    page.evaluate("document.activeElement && document.activeElement.blur()")


def toast(page: Page, text: str | re.Pattern) -> None:
    """The confirmation an action shows in a toast."""
    expect(page.get_by_test_id("stToast").filter(has_text=text)).to_be_visible()
