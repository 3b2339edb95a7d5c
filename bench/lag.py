"""Lag benchmark: per-stage lag p50/p99 with orders arriving at half the sustained pipeline rate.

    python -m bench.lag [--rate ORDERS_PER_S] [--seconds 120]

The whole system of the pipeline benchmark (PostgreSQL + Redis, 2 worker processes, sims at zero delay,
popular designs). Orders arrive at a steady pace: `--rate`, else half the rate the last
`python -m bench.pipeline --mode cached` run sustained on this machine (it leaves its figure in the bench
work folder), else 0.2 orders/s. After a warm-up (the design's first render, the workers' first messages),
every message's lag is recorded by the workers (workers/lag.py: from enqueue — or a retry's due time — to
the start of the actor) for `--seconds` of arrivals, until those orders are delivered.

Reported per queue: lag p50/p99/max over the messages, and the worst oldest-message age the scheduler's
queue sampler saw. Then, from the timeline, how long orders spent in each stage (work and policy waits such
as a batch's maximum wait, which are not lag). Goal: every queue's lag p99 < 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import redis
from sqlalchemy import create_engine, text

from bench.common import (
    REDIS_URL,
    Stack,
    flush_redis,
    percentile,
    running,
    say,
    scratch_database,
    upload_artwork,
)
from bench.pipeline import no_spot_checks, start_system, submit, wait_delivered
from core.commands import QUEUES
from workers.lag import lag_samples

DEFAULT_RATE = 0.2
GOAL_S = 5.0
STAGES = [  # (label, from timeline type, to timeline type): how long orders spent between two milestones
    ("render", "order.received", "order.ready_for_production"),
    ("route + batch wait + submit", "order.ready_for_production", "order.in_production"),
    ("partner (sim, instant)", "order.in_production", "order.qa"),
    ("qa", "order.qa", "order.ready_to_ship"),
    ("label", "order.ready_to_ship", "order.label_created"),
    ("carrier (sim)", "order.label_created", "order.delivered"),
    ("accepted -> delivered", "order.received", "order.delivered"),
]


def last_sustained_rate(workdir: Path) -> float | None:
    """Orders/s of the last pipeline-cached run on this machine, if one left its figure."""
    saved = workdir / "pipeline-cached.json"
    if not saved.exists():
        return None
    return json.loads(saved.read_text())["ours"] / 3600


def stage_times(url: str, order_ids: list[str]) -> dict[str, dict[str, float]]:
    """Per stage, p50/p99 seconds over the orders, from their timelines."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT order_id, type, min(at) AS at FROM order_events "
                                 "WHERE order_id = ANY(:ids) AND type LIKE 'order.%' GROUP BY order_id, type"),
                            {"ids": order_ids}).all()
    engine.dispose()
    at: dict[str, dict[str, datetime]] = {}
    for row in rows:
        at.setdefault(row.order_id, {})[row.type] = row.at
    out = {}
    for label, start, end in STAGES:
        spans = [(t[end] - t[start]).total_seconds() for t in at.values() if start in t and end in t]
        if spans:
            out[label] = {"p50_s": round(percentile(spans, 50), 2), "p99_s": round(percentile(spans, 99), 2),
                          "orders": len(spans)}
    return out


def oldest_ages(url: str, since: datetime) -> dict[str, float]:
    """The worst oldest-message age per queue the scheduler's sampler recorded since `since`."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT queue, max(oldest_age_s) FROM queue_samples WHERE at >= :since "
                                 "GROUP BY queue"), {"since": since}).all()
    engine.dispose()
    return {queue: round(age or 0.0, 2) for queue, age in rows}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, help="orders per second (default: half the last pipeline-cached)")
    parser.add_argument("--seconds", type=float, default=120, help="how long orders keep arriving")
    parser.add_argument("--warmup", type=int, default=3, help="orders delivered before measuring")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)
    workdir = Stack(database_url="").workdir
    sustained = last_sustained_rate(workdir)
    rate = args.rate or (sustained / 2 if sustained else DEFAULT_RATE)
    why = ("--rate" if args.rate else f"half the last pipeline-cached run ({sustained * 3600:,.0f} orders/hour)"
           if sustained else f"default: no pipeline-cached run found in {workdir}")
    orders = max(10, round(rate * args.seconds))
    say(f"lag: {orders} orders at {rate:.3f}/s ({rate * 3600:,.0f} orders/hour; {why})")
    flush_redis()
    client = redis.Redis.from_url(REDIS_URL)
    with scratch_database("pressroom_bench_pipe") as url, running(Stack(url)) as stack:
        no_spot_checks(url)
        stack.extra_env["PRESSROOM_LAG_SAMPLES"] = "1000000"
        system = start_system(stack)
        artwork_id = upload_artwork(system.api_url)
        warm = asyncio.run(submit(system.api_url, artwork_id, args.warmup, unique=False))
        if wait_delivered(url, warm, timeout=args.timeout)[0] is None:
            raise SystemExit("lag: the warm-up orders were not delivered")
        client.delete(*[f"pressroom:lag:{queue}" for queue in QUEUES])
        since = datetime.now(UTC)
        started = time.time()
        accepted = asyncio.run(submit(system.api_url, artwork_id, orders, unique=False, clients=4, pace_per_s=rate))
        arrival_s = time.time() - started
        last, counts = wait_delivered(url, accepted, timeout=args.timeout)
        queues = {}
        for queue in QUEUES:
            waits = lag_samples(client, queue)
            if waits:
                queues[queue] = {"messages": len(waits), "p50_s": round(percentile(waits, 50) / 1000, 3),
                                 "p99_s": round(percentile(waits, 99) / 1000, 3), "max_s": round(max(waits) / 1000, 3)}
        sampled = oldest_ages(url, since)
        stages = stage_times(url, accepted)
    flush_redis()
    print(f"\nlag: {len(accepted)} orders arrived over {arrival_s:.0f} s at {rate:.3f}/s; "
          f"{counts.get('delivered', 0)} delivered{'' if last else ' (timed out)'}")
    print(f"  {'queue':12} {'messages':>9} {'p50 s':>8} {'p99 s':>8} {'max s':>8} {'sampler oldest s':>17}")
    for queue, q in queues.items():
        print(f"  {queue:12} {q['messages']:9} {q['p50_s']:8.3f} {q['p99_s']:8.3f} {q['max_s']:8.3f} "
              f"{sampled.get(queue, 0.0):17.2f}")
    print("  time in each stage (timeline; work and policy waits, not only lag):")
    for label, s in stages.items():
        print(f"    {label:30} p50 {s['p50_s']:7.2f} s   p99 {s['p99_s']:7.2f} s")
    worst = max((q["p99_s"] for q in queues.values()), default=0.0)
    line = {"bench": "lag", "ours": worst, "baseline": None, "ratio": None, "unit": "s (worst queue p99)",
            "goal": f"p99 < {GOAL_S:g} s", "met": worst < GOAL_S, "rate_per_s": round(rate, 4),
            "orders": len(accepted), "delivered": counts.get("delivered", 0), "queues": queues,
            "sampler_oldest_s": sampled, "stages": stages}
    print(json.dumps(line), flush=True)
    return line


if __name__ == "__main__":
    main()
