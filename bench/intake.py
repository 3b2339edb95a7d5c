"""Intake benchmark: accepted orders/s through POST /v1/orders against a bare insert endpoint, same process.

    python -m bench.intake [--clients 16] [--seconds 10] [--repetitions 3]
    python -m bench.intake --in-process 300      # API-process CPU and statements per request, load-independent

Ours: validation, the payment sim, one transaction with the stock reservation, the timeline and the render
message (Redis). Baseline: the same body to `/_bench/bare`, which inserts one row through the same engine.
Goal: ratio >= 0.5. Needs PostgreSQL and Redis (PRESSROOM_BENCH_DATABASE_URL / PRESSROOM_BENCH_REDIS_URL).

`--in-process N` drives the same app (bench.asgi) in this process with raw ASGI calls, N orders one after the
other, then N bare requests, and reports CPU time (`time.process_time`: every thread, the threadpool included) and
SQL statements per request. No HTTP, no load generator: on a busy machine both figures are inflated alike (≈ 3×
at load 40), so compare CPU ratios, not milliseconds; the closed-loop ratio on a quiet machine is higher, as
uvicorn's HTTP work (≈ 2 ms a request) is paid by both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from bench.common import Stack, flush_redis, report, running, say, scratch_database, upload_artwork
from bench.load import compare_interleaved, order_request, to_bare

DB_PREFIX = os.environ.get("PRESSROOM_BENCH_DB_PREFIX", "pressroom_bench")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--slice", type=float, default=2.0,
                        help="ours and the baseline alternate in slices this long (s) within each repetition")
    parser.add_argument("--in-process", type=int, default=0, metavar="N",
                        help="instead: CPU and statements per request for N orders and N bare requests, in-process")
    args = parser.parse_args(argv)
    if args.in_process:
        return in_process(args.in_process)
    say("intake: a scratch PostgreSQL database, Redis, and the API in one uvicorn process")
    flush_redis()
    with scratch_database("pressroom_bench_intake") as database_url, running(Stack(database_url)) as stack:
        url = stack.start_api()
        artwork_id = upload_artwork(url)
        comparison = compare_interleaved(url, "orders", "bare-orders", repetitions=args.repetitions,
                                         clients=args.clients, seconds=args.seconds, slice_s=args.slice,
                                         artwork_id=artwork_id)
    flush_redis()
    return report("intake", comparison, unit="orders/s", goal="ratio >= 0.5",
                  what=f"POST /v1/orders vs a bare one-row insert, {args.clients} closed-loop clients")


async def _asgi_post(app, path: str, body: bytes, headers: dict[str, str]) -> int:
    """One POST through the ASGI interface, as uvicorn would call it; returns the status."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
             + [(b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    sent, status = False, []

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never disconnects

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


def in_process(n: int) -> dict:
    """CPU (all threads) and statements per request of POST /v1/orders and of the bare endpoint, in-process."""
    import httpx
    from sqlalchemy import event

    flush_redis()
    with scratch_database(f"{DB_PREFIX}_intake") as database_url, running(Stack(database_url)) as stack:
        for name in ("PRESSROOM_ENV", "PRESSROOM_PII_KEYS", "PRESSROOM_BLIND_INDEX_KEY"):
            os.environ.pop(name, None)
        os.environ.update({k: v for k, v in stack.env().items() if k in ("DATABASE_URL", "REDIS_URL",
                                                                       "OBJECT_STORE_DIR")})
        from bench.asgi import app  # the app as the benchmark's uvicorn runs it, bare endpoint included

        engine = app.state.services.engine
        statements = [0]

        def count(*_args) -> None:
            statements[0] += 1

        async def measure() -> dict:
            import io

            from PIL import Image

            png = io.BytesIO()
            Image.new("RGB", (2400, 2400), (200, 40, 40)).save(png, format="PNG")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
                uploaded = await client.post("/v1/artwork", files={"file": ("art.png", png.getvalue())})
                artwork_id = uploaded.json()["id"]
            make = order_request(artwork_id)
            result = {}
            for side, maker, path in (("ours", make, "/v1/orders"), ("bare", to_bare(make), "/_bench/bare")):
                requests = [maker() for _ in range(n + 40)]
                for _, body, headers in requests[:20]:  # warm-up: pool connections, caches, first-call imports
                    await _asgi_post(app, path, body, headers)
                event.listen(engine, "before_cursor_execute", count)  # statements counted apart: the listener
                for _, body, headers in requests[20:40]:              # would add its own cost to the CPU figures
                    await _asgi_post(app, path, body, headers)
                event.remove(engine, "before_cursor_execute", count)
                counted, statements[0] = statements[0], 0
                cpu, codes = [], {}
                for _, body, headers in requests[40:]:
                    started = time.process_time()
                    code = await _asgi_post(app, path, body, headers)
                    cpu.append((time.process_time() - started) * 1000)
                    codes[code] = codes.get(code, 0) + 1
                result[side] = {"cpu_ms_mean": round(statistics.fmean(cpu), 3),
                                "cpu_ms_median": round(statistics.median(cpu), 3),
                                "statements": round(counted / 20, 2), "statuses": codes}
            return result

        result = asyncio.run(measure())
        engine.dispose()
    flush_redis()
    line = {"bench": "intake-in-process", "orders": n, **result,
            "cpu_ratio": round(result["bare"]["cpu_ms_mean"] / result["ours"]["cpu_ms_mean"], 3),
            "load": os.getloadavg()[0]}
    print(line, flush=True)
    return line


if __name__ == "__main__":
    main()
