"""Payments sim adapter: authorisations idempotent on their key, with a configurable decline rate."""

from __future__ import annotations

import hashlib
import logging
import threading

from core.errors import PaymentDeclined

log = logging.getLogger(__name__)


class SimPayments:
    """Stands in for a card processor. The authorisation id is a function of the idempotency key, so a
    retried checkout in any process gets the same authorisation; declines are a deterministic share of keys
    (and any key containing "decline"), so tests and demos can ask for one.
    """

    def __init__(self, *, decline_rate: float = 0.0) -> None:
        self.decline_rate = decline_rate
        self.authorized: dict[str, int] = {}
        self.voided: set[str] = set()
        self._lock = threading.Lock()

    def authorize(self, *, amount_cents: int, currency: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        if "decline" in idempotency_key or int(digest[:8], 16) / 0xFFFFFFFF < self.decline_rate:
            raise PaymentDeclined("Your card was declined. Please try another card.")
        authorization = f"auth_{digest[:24]}"
        with self._lock:
            self.authorized[authorization] = amount_cents
        return authorization

    def void(self, authorization_id: str) -> None:
        with self._lock:
            self.voided.add(authorization_id)
        log.info("voided authorisation %s", authorization_id)
