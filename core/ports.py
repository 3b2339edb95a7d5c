"""Ports: what the domain needs from the outside world, as Protocols; adapters and db implement them."""

from __future__ import annotations

from typing import Protocol

from core.commands import StageCommand


class Payments(Protocol):
    """Card authorisations. Both calls are idempotent on their key/id."""

    def authorize(self, *, amount_cents: int, currency: str, idempotency_key: str) -> str:
        """Returns the authorisation id. Raises PaymentDeclined."""

    def void(self, authorization_id: str) -> None: ...


class MessageBus(Protocol):
    """Sends stage commands to their queues; called only after a commit."""

    def send(self, command: StageCommand) -> None: ...


class Ids(Protocol):
    """Identifiers: sortable ids and human order numbers (randomness stays outside core)."""

    def new(self, prefix: str) -> str: ...

    def order_number(self) -> str: ...
