"""What a staff user does in the dashboard, by visible text and role (Streamlit's CSS and keys may change)."""

from __future__ import annotations

import contextlib
import re

from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.world import STAFF

TIMEOUT_MS = 30_000
"""How long a step may take: on a busy 2-core CI machine one run of a page can take many seconds."""
expect.set_options(timeout=TIMEOUT_MS)


IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
_WATCH = """() => {
    window.__pressroomWatch && window.__pressroomWatch.disconnect();
    window.__pressroomRan = false;
    window.__pressroomToasts = [];
    window.__pressroomWatch = new MutationObserver((records) => {
        const app = document.querySelector('[data-testid="stApp"]');
        if (app && app.getAttribute('data-test-script-state') !== 'notRunning') window.__pressroomRan = true;
        // a quick run can start and end within one batch of mutations: any change of the state is a run
        if (records.some((r) => r.attributeName === 'data-test-script-state')) window.__pressroomRan = true;
        for (const toast of document.querySelectorAll('[data-testid="stToast"]')) {
            if (!window.__pressroomToasts.includes(toast.textContent)) window.__pressroomToasts.push(toast.textContent);
        }
    });
    window.__pressroomWatch.observe(document.body, {attributes: true, childList: true, subtree: true,
                                                    characterData: true});
}"""
"""Watches the page from just before an action: whether a script run started, and every toast shown (a toast
goes after a few seconds, which can be before a slow run ends)."""


@contextlib.contextmanager
def rerun(page: Page, timeout_ms: int = TIMEOUT_MS):
    """Around a click or key that makes Streamlit run the page again: afterwards, wait for that run to start
    and to finish. (Streamlit marks its app root with the script's state; a slider sends its value only once
    the keys or the drag settle, so a fixed pause is not enough, and clicking during a run can be lost.)"""
    page.evaluate(_WATCH)
    yield
    page.wait_for_function("() => window.__pressroomRan === true", timeout=timeout_ms)
    page.locator(IDLE).wait_for(timeout=timeout_ms)


def click(page: Page, target: Locator, timeout_ms: int = TIMEOUT_MS) -> None:
    """Click a button that makes Streamlit run the page again, and wait for that run to end. On a busy machine a
    click landing while the page re-renders can be lost: when no run has started after a few seconds and the
    button is still there, it is clicked once more (use it only where a second click does no harm)."""
    page.evaluate(_WATCH)
    target.click()
    try:
        page.wait_for_function("() => window.__pressroomRan === true", timeout=8_000)
    except PlaywrightTimeoutError:
        if target.is_visible():
            target.click()
        page.wait_for_function("() => window.__pressroomRan === true", timeout=timeout_ms)
    page.locator(IDLE).wait_for(timeout=timeout_ms)


def sign_in(page: Page, dashboard_url: str, username: str, password: str | None = None, *,
            landing: str = "") -> None:
    """Open the dashboard (at a bookmarked page's URL when `landing` names one), type the credentials and press
    Enter; the sidebar then says who is signed in, and the bookmarked page opens."""
    if password is None:
        password = next(user["password"] for user in STAFF.values() if user["username"] == username)
    page.goto(f"{dashboard_url}/{landing}")
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    with rerun(page):
        page.get_by_role("textbox", name="Password").press("Enter")
    expect(page.get_by_text(f"Signed in as {username}")).to_be_visible()
    page.locator(IDLE).wait_for()  # signing in runs the page a second time, as the signed-in user


def open_page(page: Page, link: str, heading: str | re.Pattern | None = None) -> None:
    """Follow the page's link in the sidebar navigation (a reload would end the session)."""
    nav = page.get_by_role("navigation")
    more = page.get_by_role("region", name="Sidebar").get_by_text(re.compile(r"^View \d+ more$"))
    if more.count():  # a long page list is folded after ten links
        more.click()
    with rerun(page):
        nav.get_by_role("link", name=link, exact=True).click()
    expect(page.get_by_role("heading", name=heading or link, level=1)).to_be_visible()


def type_into(page: Page, label: str, text: str) -> None:
    """Type into the text field labelled `label` and press Enter, which hands the text to the app (as leaving
    the field would, but at a moment of our choosing: no rerun then races the next click)."""
    box = page.get_by_role("textbox", name=label, exact=True)
    box.fill(text)
    with rerun(page):
        box.press("Enter")


def pick(page: Page, label: str, option: str | re.Pattern) -> None:
    """Choose `option` in the drop-down labelled `label`: click it, type to narrow the list, take the option."""
    box = page.get_by_role("combobox", name=label)
    box.click()
    if isinstance(option, str):
        box.fill(option)
    with rerun(page):
        page.get_by_role("option", name=option).first.click()


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
    """The confirmation the last action showed in a toast (seen while the action's run went on)."""
    pattern = text.pattern if isinstance(text, re.Pattern) else re.escape(text)
    page.wait_for_function("(p) => (window.__pressroomToasts || []).some(t => new RegExp(p).test(t))", arg=pattern)
