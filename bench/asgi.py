"""The API as production runs it, plus the benchmarks' baseline: a bare endpoint in the same process.

`POST /_bench/bare` reads the body and inserts it as one row in the same database through the same engine
(pool, driver, transaction), and answers 201: the floor any real intake or webhook endpoint stands on.
Run only by the benchmarks (`uvicorn bench.asgi:app`), never by the Procfile.
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api.main import create_app

logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
app = create_app()
_engine = app.state.services.engine

with _engine.begin() as conn:
    conn.execute(text("CREATE TABLE IF NOT EXISTS bench_bare "
                      "(id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT now(), body TEXT NOT NULL)"))


def _insert(body: str) -> int:
    with _engine.begin() as conn:
        return conn.execute(text("INSERT INTO bench_bare (body) VALUES (:body) RETURNING id"),
                            {"body": body}).scalar_one()


@app.post("/_bench/bare", status_code=201, include_in_schema=False)
async def bare(request: Request) -> JSONResponse:
    raw = await request.body()
    row_id = await run_in_threadpool(_insert, raw.decode(errors="replace"))
    return JSONResponse({"id": row_id}, status_code=201)
