"""AppTest helpers: sign in through the real form, and find which pages the navigation lets a session open."""

from __future__ import annotations

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"


def sign_in(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input(key="auth.username").input(username)
    at.text_input(key="auth.password").input(password)
    return at.button(key="auth.submit").click().run()


def reachable_pages(at: AppTest) -> set[str]:
    """Page ids (pages/<id>.py) the session's navigation registered in its last run.

    AppTest.switch_page refuses a file that st.navigation did not register, so probing every file under
    pages/ tells exactly what this session could open — a page shown to the wrong role makes it bigger.
    """
    reachable = set()
    for path in sorted(PAGES_DIR.glob("*.py")):
        try:
            at.switch_page(f"../pages/{path.name}")
        except ValueError:
            continue
        reachable.add(path.stem)
    return reachable


def open_page(at: AppTest, page_id: str) -> AppTest:
    return at.switch_page(f"../pages/{page_id}.py").run()


def unescaped(markdown: str) -> str:
    """Markdown as a reader sees it (components escape data with backslashes)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def texts(at: AppTest) -> list[str]:
    """Every markdown, caption and title on the page, unescaped, in page order."""
    return [unescaped(element.value) for element in (*at.title, *at.subheader, *at.markdown, *at.caption)]
