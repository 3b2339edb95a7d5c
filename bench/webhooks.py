"""Webhook benchmark: signed partner and carrier webhooks/s (verify, inbox insert, 2xx) vs a bare insert.

    python -m bench.webhooks [--clients 32] [--seconds 10] [--repetitions 3]

Ours: HMAC verification over the raw body, the inbox row (deduplicated on the signed event id), the apply
message to Redis, 2xx. Baseline: the same body to `/_bench/bare` in the same API process. Goal: ratio >= 0.7.
"""

from __future__ import annotations

import argparse

from bench.common import Stack, flush_redis, report, result_line, running, say, scratch_database
from bench.load import compare_interleaved


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--slice", type=float, default=2.0,
                        help="ours and the baseline alternate in slices this long (s) within each repetition")
    args = parser.parse_args(argv)
    say("webhooks: a scratch PostgreSQL database, Redis, and the API in one uvicorn process")
    flush_redis()
    lines = {}
    with scratch_database("pressroom_bench_intake") as database_url, running(Stack(database_url)) as stack:
        url = stack.start_api()
        for source in ("partner", "carrier"):
            lines[source] = compare_interleaved(url, source, "bare-webhooks", repetitions=args.repetitions,
                                                clients=args.clients, seconds=args.seconds, slice_s=args.slice)
    flush_redis()
    partner = report("webhooks-partner", lines["partner"], unit="webhooks/s", goal="ratio >= 0.7",
                     what=f"signed partner webhooks vs a bare one-row insert, {args.clients} clients")
    carrier = report("webhooks-carrier", lines["carrier"], unit="webhooks/s", goal="ratio >= 0.7",
                     what=f"signed EasyPost webhooks vs a bare one-row insert, {args.clients} clients")
    worst = min((partner, carrier), key=lambda line: line["ratio"] or 0)
    return result_line("webhooks", ours=worst["ours"], baseline=worst["baseline"], unit="webhooks/s",
                       goal="ratio >= 0.7", worst_of=worst["bench"])


if __name__ == "__main__":
    main()
