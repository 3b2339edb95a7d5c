"""Staff auth: a password-guessing burst against the real sign-in (app/auth.py → db/staff.py, argon2id, lockout),
the role × page × action matrix checked cell by cell against the pages' and actions' own guards through
Streamlit's AppTest, and a user disabled mid-session refused on the next rerun."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select, update

import db
from battery.framework import Context, Figure
from core.policy import ACTIONS, can_do, can_view
from core.states import Role
from db import tables as t
from db.seed import SEED_DATA
from tests.conftest import TEST_KEYS

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "app" / "streamlit_app.py"
PAGES_DIR = ROOT / "pages"
STAFF = {Role(user["role"]): user for user in json.loads((SEED_DATA / "staff.json").read_text())}
ROLE_REFUSED = "Your role can't open this page"
SIGNED_OUT = "Please sign in"


@contextmanager
def dashboard_env(database_url: str) -> Iterator[None]:
    """The dashboard's bootstrap reads DATABASE_URL and the keys from the environment, once per cache."""
    import streamlit as st

    saved = {k: os.environ.get(k) for k in (*TEST_KEYS, "DATABASE_URL")}
    os.environ.update({**TEST_KEYS, "DATABASE_URL": database_url})
    st.cache_resource.clear()
    st.cache_data.clear()
    try:
        yield
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---- 1. guessing --------------------------------------------------------------------------------------------------


def password_burst(database_url: str, role: Role, *, attempts: int, threads: int) -> dict:
    """`attempts` wrong passwords for one real account from `threads` threads through app.auth.sign_in, then the
    right password while the account is locked; counted from the return values and the audit log."""
    from app import auth

    user = STAFF[role]
    outcomes: Counter = Counter()
    lock = threading.Lock()

    def guess(n: int) -> None:
        try:
            outcome = auth.sign_in(user["username"], f"{user['password']}-{n}")
        except Exception as error:  # counted: a guess that crashes the login is a finding, not a pass
            outcome = type(error).__name__
        with lock:
            outcomes[outcome] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(guess, range(attempts)))
    elapsed = time.monotonic() - started
    right_while_locked = auth.sign_in(user["username"], user["password"])
    engine = db.make_engine(database_url)
    a = t.audit_log
    with engine.connect() as conn:
        reasons = [row.after.get("reason") for row in conn.execute(
            select(a.c.after).where(a.c.actor == user["username"], a.c.action == "auth.login_failed")
            .order_by(a.c.id))]
    engine.dispose()
    checked = reasons.count("wrong_password")
    first_lock = reasons.index("locked") if "locked" in reasons else None
    errors = {k: v for k, v in outcomes.items() if not isinstance(k, bool)}
    return {"attempts": attempts, "successes": outcomes[True], "errors": errors, "seconds": elapsed,
            "audited": len(reasons),
            "reasons": Counter(reasons), "passwords_checked": checked, "first_locked_at": first_lock,
            "right_password_while_locked": right_while_locked}


# ---- 2. the matrix ------------------------------------------------------------------------------------------------


def _page_script(page_file: str, username: str) -> None:
    """Run one page file as the signed-in `username` (the page's own guard decides)."""
    import runpy

    import streamlit as st

    st.session_state["auth.user"] = username
    runpy.run_path(page_file, run_name="__main__")


def _actions_script(username: str, action_ids: list[str]) -> None:
    """Ask app.actions.require_action for every action as the signed-in `username`; record what it said."""
    import streamlit as st

    from app import actions

    st.session_state["auth.user"] = username
    st.session_state["battery.allowed"] = {a: actions.require_action(a) is not None for a in action_ids}


def page_cells() -> list[tuple[str, Role, bool, str]]:
    """(page, role, the guard let the role in, what it showed), for every page file and role."""
    from streamlit.testing.v1 import AppTest

    cells = []
    for path in sorted(PAGES_DIR.glob("*.py")):
        for role, user in STAFF.items():
            at = AppTest.from_function(_page_script, args=(str(path), user["username"]), default_timeout=60).run()
            errors = [e.value for e in at.error]
            refused = any(ROLE_REFUSED in e or SIGNED_OUT in e for e in errors)
            shown = "refused" if refused else ("exception: " + at.exception[0].value[:80] if at.exception
                                               else "opened")
            cells.append((path.stem, role, not refused, shown))
    return cells


def action_cells() -> list[tuple[str, Role, bool]]:
    from streamlit.testing.v1 import AppTest

    cells = []
    for role, user in STAFF.items():
        at = AppTest.from_function(_actions_script, args=(user["username"], list(ACTIONS)), default_timeout=60).run()
        assert not at.exception, at.exception
        allowed = at.session_state["battery.allowed"]
        cells += [(action, role, allowed[action]) for action in ACTIONS]
    return cells


# ---- 3. disabled mid-session --------------------------------------------------------------------------------------


def disabled_mid_session(database_url: str) -> dict:
    """Sign in through the real form, disable the account behind the session's back, rerun."""
    from streamlit.testing.v1 import AppTest

    from app.auth import SIGNED_OUT_DISABLED

    user = STAFF[Role.OPS_MANAGER]
    at = AppTest.from_file(str(ENTRYPOINT), default_timeout=60).run()
    at.text_input(key="auth.username").input(user["username"])
    at.text_input(key="auth.password").input(user["password"])
    at = at.button(key="auth.submit").click().run()
    signed_in = at.session_state["auth.user"] == user["username"] if "auth.user" in at.session_state else False
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(update(t.staff_users).where(t.staff_users.c.username == user["username"]).values(active=False))
    at = at.run()
    still = "auth.user" in at.session_state and bool(at.session_state["auth.user"])
    told = any(SIGNED_OUT_DISABLED in i.value for i in at.info)
    form = bool(at.text_input) and any(w.key == "auth.username" for w in at.text_input)
    at.text_input(key="auth.username").input(user["username"])
    at.text_input(key="auth.password").input(user["password"])
    at = at.button(key="auth.submit").click().run()
    again = "auth.user" in at.session_state and bool(at.session_state["auth.user"])
    with engine.begin() as conn:
        conn.execute(update(t.staff_users).where(t.staff_users.c.username == user["username"]).values(active=True))
    engine.dispose()
    return {"signed_in_first": signed_in, "session_kept": still, "told": told, "login_form": form,
            "signed_in_again": again}


CONCURRENT_GUESSES = "8 at a time"


def _burst_figures(name: str, burst: dict, label: str) -> list[Figure]:
    checked, first_lock = burst["passwords_checked"], burst["first_locked_at"]
    return [
        Figure(test=name, figure=f"{label}: {burst['attempts']:,} wrong passwords in {burst['seconds']:.1f} s, "
                                 f"{burst['successes']} successes; right password while locked: "
                                 f"{'accepted' if burst['right_password_while_locked'] else 'refused'}",
               pass_figure="≤ 60 s; 0 successes; refused",
               passed=burst["successes"] == 0 and not burst["right_password_while_locked"]
               and burst["seconds"] <= 60),
        Figure(test=name, figure=f"{label}: passwords checked {checked} (first refused as locked: attempt "
                                 f"{None if first_lock is None else first_lock + 1}); audit "
                                 f"{dict(burst['reasons'])}",
               pass_figure="≤ 10 checked; every attempt audited",
               passed=checked <= 10 and first_lock is not None and burst["audited"] >= burst["attempts"]),
        Figure(test=name, figure=f"{label}: sign-in attempts that raised instead of answering: "
                                 f"{sum(burst['errors'].values())} {burst['errors'] or ''}".rstrip(),
               pass_figure="0", passed=not burst["errors"]),
    ]


def staff_auth(ctx: Context) -> list[Figure]:
    name = "staff-auth"
    attempts = ctx.pick(1000, 1000)
    with dashboard_env(ctx.pg_url):
        one_by_one = password_burst(ctx.pg_url, Role.MANAGER, attempts=attempts, threads=1)
        burst = password_burst(ctx.pg_url, Role.SUPPORT_AGENT, attempts=attempts, threads=8)
        pages = page_cells()
        actions = action_cells()
        disabled = disabled_mid_session(ctx.pg_url)
    page_wrong = [(p, str(r), shown) for p, r, allowed, shown in pages if allowed != can_view(r, p)]
    action_wrong = [(a, str(r), allowed) for a, r, allowed in actions if allowed != can_do(r, a)]
    crashed = sorted({p for p, _, allowed, shown in pages if allowed and shown.startswith("exception")})
    return _burst_figures(name, one_by_one, "one at a time") + _burst_figures(name, burst, CONCURRENT_GUESSES) + [
        Figure(test=name, figure=f"page guards × roles matching policy: {len(pages) - len(page_wrong)}/{len(pages)}"
                                 + (f"; wrong: {page_wrong}" if page_wrong else ""),
               pass_figure="100 %", passed=not page_wrong),
        Figure(test=name, figure=f"action guards × roles matching policy: {len(actions) - len(action_wrong)}/"
                                 f"{len(actions)}" + (f"; wrong: {action_wrong}" if action_wrong else ""),
               pass_figure="100 %", passed=not action_wrong),
        Figure(test=name, figure="pages that raised after their guard let the role in: "
                                 + (", ".join(crashed) if crashed else "none"), pass_figure="(reported)",
               passed=True),
        Figure(test=name, figure=f"disabled mid-session: signed in {disabled['signed_in_first']}, session kept "
                                 f"after rerun {disabled['session_kept']}, told {disabled['told']}, sign-in again "
                                 f"{disabled['signed_in_again']}",
               pass_figure="signed in True, kept False, told True, again False",
               passed=disabled["signed_in_first"] and not disabled["session_kept"] and disabled["told"]
               and not disabled["signed_in_again"]),
    ]
