"""Column types: UTC datetimes, StrEnums, and PII encrypted at rest with MultiFernet."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import String, Text
from sqlalchemy.types import DateTime, TypeDecorator

from core.commands import Address


class UtcDateTime(TypeDecorator):
    """Always timezone-aware UTC in Python, whatever the database keeps (SQLite keeps naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StrEnumType(TypeDecorator):
    """Stored as the enum's string value; loaded back as the enum member."""

    impl = String(32)
    cache_ok = True

    def __init__(self, enum_cls: type[StrEnum], length: int = 32) -> None:
        super().__init__(length)
        self.enum_cls = enum_cls

    def process_bind_param(self, value, dialect) -> str | None:
        return None if value is None else str(self.enum_cls(value))

    def process_result_value(self, value, dialect):
        return None if value is None else self.enum_cls(value)


class Keyring:
    """The process's PII keys: MultiFernet (first key encrypts, all decrypt) and the blind-index key."""

    def __init__(self, fernet_keys: tuple[str, ...], blind_index_key: str) -> None:
        if not fernet_keys:
            raise ValueError("at least one Fernet key is required")
        self.fernet = MultiFernet([Fernet(k.encode()) for k in fernet_keys])
        self._blind = blind_index_key.encode()

    def encrypt(self, plain: str) -> str:
        return self.fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self.fernet.decrypt(token.encode()).decode()

    def blind_index(self, email: str) -> str:
        """Keyed hash of the normalised e-mail: searchable by equality, useless without the key."""
        return hmac.new(self._blind, email.strip().casefold().encode(), hashlib.sha256).hexdigest()


_keyring: Keyring | None = None


def configure_keyring(keyring: Keyring) -> None:
    """Set once at a composition root; the column types below need it to read or write PII."""
    global _keyring
    _keyring = keyring


def keyring() -> Keyring:
    if _keyring is None:
        raise RuntimeError("PII keyring not configured: call db.configure(settings) at start-up")
    return _keyring


class EncryptedText(TypeDecorator):
    """A PII string, Fernet-encrypted in the database."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        return None if value is None else keyring().encrypt(value)

    def process_result_value(self, value: str | None, dialect) -> str | None:
        return None if value is None else keyring().decrypt(value)


class EncryptedAddress(TypeDecorator):
    """A postal address (PII) as encrypted JSON; loaded back as core's Address value."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Address | None, dialect) -> str | None:
        return None if value is None else keyring().encrypt(json.dumps(value.as_dict()))

    def process_result_value(self, value: str | None, dialect) -> Address | None:
        if value is None:
            return None
        data: dict[str, Any] = json.loads(keyring().decrypt(value))
        return Address(**data)
