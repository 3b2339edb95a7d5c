"""Persistence: schema, mapping, unit of work, read-side queries and migrations."""

from __future__ import annotations

from core.settings import Settings
from db.engine import make_engine, make_session_factory
from db.orm import start_mappers
from db.types import Keyring, configure_keyring
from db.uow import SqlUnitOfWork

__all__ = ["configure", "make_engine", "make_session_factory", "SqlUnitOfWork"]


def configure(settings: Settings) -> None:
    """Per-process set-up at a composition root: PII keys and the aggregate mapping."""
    configure_keyring(Keyring(settings.pii_keys, settings.blind_index_key))
    start_mappers()
