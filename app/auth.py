"""Staff sign-in: argon2id passwords, lockout, and the role and active flag re-read from the database."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from adapters.passwords import verify_password
from app import bootstrap
from core.policy import can_view
from core.states import Role
from db import staff

SESSION_KEY = "auth.user"
NOTICE_KEY = "auth.notice"
REFUSED = "Those credentials don't work, or the account is locked or disabled."
SIGNED_OUT_DISABLED = "You have been signed out: your account is disabled. Ask a manager if that is wrong."
ROLE_NAMES = {Role.QA_INSPECTOR: "QA inspector", Role.OPS_MANAGER: "Ops manager",
              Role.SUPPORT_AGENT: "Support agent", Role.MANAGER: "Manager"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedIn:
    username: str
    role: Role


def current_user() -> SignedIn | None:
    """The signed-in user as the database says now; a disabled or deleted account is signed out here."""
    username = st.session_state.get(SESSION_KEY)
    if not username:
        return None
    user = staff.get_user(bootstrap.engine(), username)
    if user is None or not user.active:
        sign_out(notice=SIGNED_OUT_DISABLED)
        return None
    return SignedIn(username=user.username, role=Role(user.role))


def require(page_id: str) -> SignedIn:
    """Called first on every page: stops the page unless the current user's role may view it."""
    user = current_user()
    if user is None:
        st.error("Please sign in to see this page.")
        st.stop()
    if not can_view(user.role, page_id):
        st.error("Your role can't open this page. Ask a manager if you need it.")
        st.stop()
    return user


def recheck(page_id: str) -> None:
    """For self-refreshing fragments: a user who lost access since the last full run gets a full rerun."""
    user = current_user()
    if user is None or not can_view(user.role, page_id):
        st.rerun(scope="app")


def sign_in(username: str, password: str) -> bool:
    """Check the credentials and start a session; every attempt is audited, the reason only there."""
    username = username.strip()
    if not username or not password:
        return False
    settings, engine, now = bootstrap.settings(), bootstrap.engine(), bootstrap.now()
    limits = {"max_attempts": settings.login_attempts_before_lockout, "lockout_s": settings.login_lockout_s}
    user = staff.get_user(engine, username)
    if user is None:
        verify_password(bootstrap.decoy_password_hash(), password)  # same cost as a known name
        staff.record_failed_login(engine, username, now=now, reason="unknown_user")
        return False
    counter = staff.claim_attempt(engine, user.username, now=now, **limits)  # counted before it is checked
    if counter is None:
        staff.record_failed_login(engine, username, now=now, reason="locked")
        return False
    if not verify_password(user.password_hash, password):
        staff.record_failed_login(engine, username, now=now, reason="wrong_password", counter=counter)
        return False
    if not user.active:
        staff.record_failed_login(engine, username, now=now, reason="disabled")
        return False
    staff.record_successful_login(engine, user.username, now=now)
    st.session_state.clear()  # nothing from a previous user's session survives
    st.session_state[SESSION_KEY] = user.username
    return True


def sign_out(*, notice: str | None = None) -> None:
    """Forget the whole session (its page state included); `notice` is shown above the login form."""
    st.session_state.clear()
    if notice:
        st.session_state[NOTICE_KEY] = notice


def login_page() -> None:
    """The only page a signed-out visitor can reach."""
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        st.title(":material/print: Pressroom")
        st.caption("Operations control room — staff sign-in")
        notice = st.session_state.pop(NOTICE_KEY, None)
        if notice:
            st.info(notice)
        with st.form("auth.form", clear_on_submit=True):
            username = st.text_input("Username", key="auth.username", autocomplete="username")
            password = st.text_input("Password", type="password", key="auth.password",
                                     autocomplete="current-password")
            submitted = st.form_submit_button("Sign in", type="primary", key="auth.submit")
        if submitted:
            if sign_in(username, password):
                st.rerun()
            st.error(REFUSED)


def sidebar(user: SignedIn) -> None:
    """Who is signed in, and the way out."""
    with st.sidebar:
        st.caption(f"Signed in as **{user.username}** · {ROLE_NAMES.get(user.role, str(user.role))}")
        st.button("Sign out", key="auth.sign_out", icon=":material/logout:", on_click=sign_out)
