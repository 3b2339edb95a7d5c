"""Problem JSON (RFC 9457): every refusal says which field, which rule, and what to do, in one shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from api.schemas import ProblemOut
from core.errors import (
    Conflict,
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
MEDIA_TYPE = "application/problem+json"
STATUS = {ValidationFailed: 422, PaymentDeclined: 402, IdempotencyConflict: 409, Conflict: 409, NotFound: 404,
          NotAllowed: 403, Unauthenticated: 401}
TITLES = {422: "The request has problems", 402: "Payment declined", 409: "Conflict", 404: "Not found",
          403: "Not allowed", 401: "Not signed", 400: "Bad request", 405: "Method not allowed", 413: "Too large",
          415: "Unsupported media type", 503: "Service unavailable"}
RETRY_AFTER_S = 5
"""What a 503 asks the client to wait: a database restart or fail-over takes seconds (the soak measured < 2 s)."""


def problem(status: int, slug: str, detail: str, errors: list[Problem] = ()) -> JSONResponse:
    body = {"type": f"https://pressroom.dev/problems/{slug}", "title": TITLES.get(status, "Error"),
            "status": status, "detail": detail,
            "errors": [{"field": p.field, "code": p.code, "message": p.message} for p in errors]}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=` for the problems it can answer; `install` documents them as application/problem+json
    (FastAPI would list a model under application/json, which is not what the API sends)."""
    return {status: {"model": ProblemOut, "description": TITLES[status]} for status in statuses}


def domain_error(_request: Request, error: PressroomError) -> JSONResponse:
    status = next((code for cls, code in STATUS.items() if isinstance(error, cls)), 400)
    problems = error.problems if isinstance(error, ValidationFailed) else []
    return problem(status, error.code.replace("_", "-"), error.message, problems)


KEY = "[key]"  # pydantic's last loc item when a dict's key (a text slot's name), not its value, is refused


def _path(loc: tuple) -> str:
    parts = [p for p in loc if p not in ("body", "query", "header", KEY)]
    out = ""
    for part in parts:  # an int is a list index; a dict key that looks like one ("7") is still a name
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
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
        loc = tuple(item.get("loc", ()))
        message = item.get("msg", "")
        if loc and loc[-1] == KEY:
            message = f"The name, not the text: {message[:1].lower()}{message[1:]}."
        problems.append(Problem(field=_path(loc), code=code, message=message))
    what = "webhook refused" if request.url.path.startswith("/webhooks/") else "request refused"
    log.warning("%s: malformed %s %s (%s)", what, request.method, request.url.path[:120],
                ", ".join(f"{p.field} {p.code}" for p in problems[:5]))
    return problem(422, "invalid-request", "The request body does not have the expected shape.", problems)


def http_error(request: Request, error: HTTPException) -> JSONResponse:
    """Starlette's own refusals as problems too. A body its parser cannot read (malformed multipart, a form field
    over the parser's size limit) is a 422 on `body`, like any other malformed body; 404/405 keep their status and
    headers (405's Allow)."""
    if error.status_code == 400:
        log.warning("request refused: unreadable body for %s %s (%s)", request.method, request.url.path[:120],
                    str(error.detail)[:120])
        return problem(422, "invalid-request", "The request body could not be read.",
                       [Problem(field="body", code="malformed", message=str(error.detail)[:300])])
    response = problem(error.status_code, "http-error", str(error.detail)[:300])
    response.headers.update(error.headers or {})
    return response


def database_unavailable(request: Request, error: Exception) -> JSONResponse:
    """The database cannot be reached (restarting, failing over, out of connections): the client sends the same
    request again after Retry-After; the Idempotency-Key (orders) or the event id (webhooks) makes it count once,
    even if the connection broke after a commit."""
    log.error("database unavailable for %s %s: %s", request.method, request.url.path[:120],
              str(error).splitlines()[0][:200] if str(error) else type(error).__name__)
    response = problem(503, "unavailable", "We cannot take this request right now. Send it again, unchanged, in "
                                           f"{RETRY_AFTER_S} seconds: a repeat is taken once.")
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def install(app: FastAPI) -> None:
    """Every refusal the app answers is problem JSON, and its OpenAPI document says so."""
    app.add_exception_handler(PressroomError, domain_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(PoolTimeout, database_unavailable)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _document_problem_media_type(generate())
        return app.openapi_schema

    app.openapi = openapi


def _document_problem_media_type(schema: dict[str, Any]) -> None:
    """Move each error response's ProblemOut body from application/json to application/problem+json."""
    ref = f"#/components/schemas/{ProblemOut.__name__}"
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                body = content.get("application/json", {})
                if status[0] in "45" and body.get("schema", {}).get("$ref") == ref:
                    content[MEDIA_TYPE] = content.pop("application/json")
