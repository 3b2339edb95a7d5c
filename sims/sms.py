"""SMS provider simulator: a small HTTP API that keeps every text it is asked to send, and sends none.

API:
    POST   /v1/messages   {"to": "+44…", "body": "…"} with `Authorization: Bearer <key>`; an `Idempotency-Key`
                          seen before returns the first message again (200, `Idempotent-Replayed: true`)
    GET    /v1/messages   every message, newest first (`?to=` filters, `?limit=`)
    DELETE /v1/messages   forget them all

Run: python -m sims.sms --port 8027   (`--api-key K` to accept only K; `--failure-rate 0.1` answers 503 that often)
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

PHONE = re.compile(r"^\+?[0-9][0-9 ()\-]{5,20}$")
MAX_BODY = 1600  # ten concatenated segments


@dataclass
class SmsSimConfig:
    api_keys: tuple[str, ...] = ()  # empty: any bearer key is accepted
    failure_rate: float = 0.0
    seed: int = 0


@dataclass
class Outbox:
    """The texts "sent", with the idempotency keys already answered and how often each was sent again (the
    customer got one text; the repeat attempts stay countable); guarded by one lock."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    by_key: dict[str, dict[str, Any]] = field(default_factory=dict)
    replays: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def segments(body: str) -> int:
    """How many SMS parts a body takes (GSM-7: 160 alone, 153 per part when concatenated)."""
    return 1 if len(body) <= 160 else math.ceil(len(body) / 153)


def _problem(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(config: SmsSimConfig | None = None) -> FastAPI:
    config = config or SmsSimConfig()
    app = FastAPI(title="SMS sim", docs_url=None, redoc_url=None)
    outbox = Outbox()
    rng = random.Random(config.seed)
    app.state.outbox = outbox

    @app.post("/v1/messages")
    async def send(request: Request, authorization: str = Header(default=""),
                   idempotency_key: str = Header(default="")) -> JSONResponse:
        key = authorization.removeprefix("Bearer ").strip()
        if not key or (config.api_keys and key not in config.api_keys):
            return _problem(401, "unauthorized", "Send a valid API key as `Authorization: Bearer <key>`.")
        try:
            payload = await request.json()
        except ValueError:
            return _problem(400, "invalid_json", "The body must be JSON: {\"to\": …, \"body\": …}.")
        to, body = str(payload.get("to") or ""), str(payload.get("body") or "")
        if not PHONE.match(to):
            return _problem(422, "invalid_to", "`to` must be a phone number, e.g. +44 20 7946 0958.")
        if not body.strip() or len(body) > MAX_BODY:
            return _problem(422, "invalid_body", f"`body` must have 1 to {MAX_BODY} characters.")
        with outbox.lock:
            if idempotency_key and idempotency_key in outbox.by_key:
                outbox.replays[idempotency_key] += 1
                return JSONResponse(outbox.by_key[idempotency_key], headers={"Idempotent-Replayed": "true"})
            if config.failure_rate and rng.random() < config.failure_rate:
                return _problem(503, "unavailable", "Try again later.")
            message = {"id": f"sms_{len(outbox.messages) + 1:06d}", "to": to, "body": body,
                       "segments": segments(body), "status": "sent", "idempotency_key": idempotency_key or None,
                       "created_at": datetime.now(UTC).isoformat()}
            outbox.messages.append(message)
            if idempotency_key:
                outbox.by_key[idempotency_key] = message
        return JSONResponse(message, status_code=201)

    @app.get("/v1/messages")
    def messages(to: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with outbox.lock:
            found = [m for m in reversed(outbox.messages) if to is None or m["to"] == to]
        return found[:limit]

    @app.delete("/v1/messages")
    def forget() -> dict[str, int]:
        with outbox.lock:
            count = len(outbox.messages)
            outbox.messages.clear()
            outbox.by_key.clear()
            outbox.replays.clear()
        return {"deleted": count}

    @app.get("/sim/ledger")
    def ledger() -> dict[str, Any]:
        """What the sim did: texts sent, and repeats of an idempotency key it absorbed (per key)."""
        with outbox.lock:
            return {"sent": len(outbox.messages), "replayed": dict(outbox.replays)}

    return app


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class BackgroundSms:
    """The sim on a real port in a background thread, for tests: `with BackgroundSms() as sms: sms.url`."""

    def __init__(self, config: SmsSimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = create_app(config)
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=self.port, log_level="warning",
                                                     access_log=False))
        self._thread = threading.Thread(target=self._server.run, name=f"sms-sim-{self.port}", daemon=True)

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self.app.state.outbox.lock:
            return list(self.app.state.outbox.messages)

    def __enter__(self) -> BackgroundSms:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"SMS sim did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sims.sms", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8027)
    p.add_argument("--api-key", action="append", default=[], dest="api_keys",
                   help="the only accepted key (repeatable); default: any key")
    p.add_argument("--failure-rate", type=float, default=0.0, help="share of sends answered 503")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s sms-sim %(message)s")
    log.info("SMS sim on http://%s:%d/v1/messages", args.host, args.port)
    config = SmsSimConfig(api_keys=tuple(args.api_keys), failure_rate=args.failure_rate, seed=args.seed)
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level.lower(),
                access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
