"""Problem JSON (RFC 9457): every refusal says which field, which rule, and what to do, in one shape."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.errors import (
    IdempotencyConflict,
    NotAllowed,
    NotFound,
    PaymentDeclined,
    PressroomError,
    Problem,
    Unauthenticated,
    ValidationFailed,
)

log = logging.getLogger(__name__)
STATUS = {ValidationFailed: 422, PaymentDeclined: 402, IdempotencyConflict: 409, NotFound: 404,
          NotAllowed: 403, Unauthenticated: 401}
TITLES = {422: "The request has problems", 402: "Payment declined", 409: "Conflict", 404: "Not found",
          403: "Not allowed", 401: "Not signed", 400: "Bad request", 413: "Too large"}


def problem(status: int, slug: str, detail: str, errors: list[Problem] = ()) -> JSONResponse:
    body = {"type": f"https://pressroom.dev/problems/{slug}", "title": TITLES.get(status, "Error"),
            "status": status, "detail": detail,
            "errors": [{"field": p.field, "code": p.code, "message": p.message} for p in errors]}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def domain_error(_request: Request, error: PressroomError) -> JSONResponse:
    status = next((code for cls, code in STATUS.items() if isinstance(error, cls)), 400)
    problems = error.problems if isinstance(error, ValidationFailed) else []
    return problem(status, error.code.replace("_", "-"), error.message, problems)


def _path(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "header")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def request_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """Malformed bodies get the same field-level shape as rule failures.

    A webhook refused here (an unsigned one has no signature header) is logged like one refused for its
    signature: field paths only, never the values, which may carry PII.
    """
    problems = []
    for item in error.errors():
        kind = item.get("type", "invalid")
        code = "required" if kind == "missing" else "invalid"
        problems.append(Problem(field=_path(tuple(item.get("loc", ()))), code=code, message=item.get("msg", "")))
    what = "webhook refused" if request.url.path.startswith("/webhooks/") else "request refused"
    log.warning("%s: malformed %s %s (%s)", what, request.method, request.url.path[:120],
                ", ".join(f"{p.field} {p.code}" for p in problems[:5]))
    return problem(422, "invalid-request", "The request body does not have the expected shape.", problems)
