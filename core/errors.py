"""Typed errors of the domain: each carries a stable code and a sentence a person can act on."""

from __future__ import annotations

from dataclasses import dataclass


class PressroomError(Exception):
    """Base of every error the domain raises on purpose; the edges turn it into problem JSON or st.error."""

    code: str = "pressroom_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class IllegalTransition(PressroomError):
    """A status change that the aggregate's transition table does not allow."""

    code = "illegal_transition"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One failing field: a JSON-ish path, a stable code and a sentence for the customer."""

    field: str
    code: str
    message: str


class ValidationFailed(PressroomError):
    """The request breaks one or more rules; nothing was recorded."""

    code = "validation_failed"

    def __init__(self, problems: list[Problem]) -> None:
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"The order has {len(problems)} {noun}; fix them and send it again.")
        self.problems = problems


class OutOfStock(ValidationFailed):
    """No active partner can reserve the blanks any more (another checkout took the last ones)."""

    code = "out_of_stock"


class PaymentDeclined(PressroomError):
    """The payment provider refused the authorisation."""

    code = "payment_declined"


class IdempotencyConflict(PressroomError):
    """An Idempotency-Key was reused with a different request body."""

    code = "idempotency_conflict"


class NotFound(PressroomError):
    """The thing asked for does not exist (or the asker may not know it exists)."""

    code = "not_found"


class NotAllowed(PressroomError):
    """The user's role or state does not permit this action."""

    code = "not_allowed"


class Unauthenticated(PressroomError):
    """Wrong credentials, a disabled account or too many attempts."""

    code = "unauthenticated"


class Conflict(PressroomError):
    """A concurrent writer got there first (unique key or version check); the caller may re-read."""

    code = "conflict"
