"""Identifiers: time-ordered ids (index-friendly) and short human order numbers."""

from __future__ import annotations

import secrets
import time

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class TimeOrderedIds:
    def new(self, prefix: str) -> str:
        """`ord_` + 12 hex digits of milliseconds + 20 random hex digits: sorts by creation time."""
        return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(10)}"

    def order_number(self) -> str:
        """`PR-` + 8 Crockford base-32 characters: easy to read out on the phone, no I/O/L/U confusion."""
        return "PR-" + "".join(secrets.choice(CROCKFORD) for _ in range(8))
