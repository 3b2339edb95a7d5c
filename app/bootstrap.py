"""The dashboard's composition root: settings from the environment, PII keys, and one shared reader engine."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

import streamlit as st
from sqlalchemy import Engine

import db
from adapters.passwords import hash_password
from core.settings import Settings

log = logging.getLogger(__name__)

_SAFE_CONFIG = {"server.enableXsrfProtection": True, "client.showErrorDetails": "none"}


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    """Read once per process; also configures the PII keyring and the mapping (db.configure)."""
    loaded = Settings.from_env(os.environ)
    db.configure(loaded)
    for option, wanted in _SAFE_CONFIG.items():
        if st.get_option(option) != wanted:
            log.warning("streamlit option %s is %r, not %r: run from the repository root so "
                        ".streamlit/config.toml is read", option, st.get_option(option), wanted)
    return loaded


@st.cache_resource(show_spinner=False, on_release=Engine.dispose)
def engine() -> Engine:
    """The dashboard's engine: a reader (plain BEGIN on SQLite); login bookkeeping opens with its write."""
    return db.make_engine(settings().database_url, writer=False)


@st.cache_resource(show_spinner=False)
def decoy_password_hash() -> str:
    """A hash to check unknown usernames against, so a wrong name costs as long as a wrong password."""
    return hash_password("not-a-real-account")


def now() -> datetime:
    """The dashboard's clock (UTC)."""
    return datetime.now(UTC)
