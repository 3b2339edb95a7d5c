"""Intake benchmark: accepted orders/s through POST /v1/orders against a bare insert endpoint, same process.

    python -m bench.intake [--clients 16] [--seconds 10] [--repetitions 3]

Ours: validation, the payment sim, one transaction with the stock reservation, the timeline and the render
message (Redis). Baseline: the same body to `/_bench/bare`, which inserts one row through the same engine.
Goal: ratio >= 0.5. Needs PostgreSQL and Redis (PRESSROOM_BENCH_DATABASE_URL / PRESSROOM_BENCH_REDIS_URL).
"""

from __future__ import annotations

import argparse

from bench.common import Stack, flush_redis, report, running, say, scratch_database, upload_artwork
from bench.load import compare_interleaved


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--slice", type=float, default=2.0,
                        help="ours and the baseline alternate in slices this long (s) within each repetition")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
