"""Dashboard benchmark: every page's data queries, and order search, at 1,000,000 orders and 10,000,000 events.

    python -m bench.dashboard [--orders 1000000] [--events-per-order 10] [--runs 30] [--keep | --reuse DATABASE_URL]

A generator loads a scratch PostgreSQL database (with progress): customers through the real encrypted column
types, then orders, lines, jobs, shipments, timeline events, rejections, queue samples and retrievals in
server-side `generate_series` chunks. Each query the pages run (db/queries.py, called as app/queries.py calls
it) is timed end to end (driver, rows, decryption, frames): p95 over --runs. Baseline: the same SQL's
EXPLAIN ANALYZE execution time in the database. Goals: page queries p95 <= 100 ms, search p95 <= 20 ms.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Callable, Iterator

from sqlalchemy import Engine, create_engine, event, insert, text
from sqlalchemy.engine import make_url
from tqdm import tqdm

import db
from bench.common import PG_SERVER, Spread, percentile, result_line, say, scratch_database
from core.commands import Address
from core.settings import Settings
from db import queries as q
from db import tables as t

DATABASE_PREFIX = "pressroom_bench_dash"
POOL = 20_000  # distinct customers (encrypted in Python); orders cycle through them
STATUSES = ("delivered",) * 90 + ("shipped", "label_created", "ready_to_ship", "qa", "in_production",
                                  "ready_for_production", "rendering", "accepted", "on_hold", "cancelled")
EVENT_TYPES = ("order.received", "order.rendering", "asset.rendered", "order.ready_for_production",
               "job.batched", "job.submitted", "job.printed", "order.qa", "order.shipped", "order.delivered")


# ---- the generator ------------------------------------------------------------------------------------------


def load_customers(engine: Engine, now: datetime) -> None:
    rows = [{"id": f"cus_{i:08d}", "name": f"Bench Customer {i}", "email": f"bench+{i}@example.com",
             "phone": "+44 20 7946 0958",
             "address": Address(name=f"Bench Customer {i}", line1=f"{i} Marylebone Rd", city="London",
                                region="LND", postal_code="NW1 5LR", country="GB")}
            for i in range(POOL)]
    c = t.customers
    with engine.begin() as conn, tqdm(total=POOL, desc="customers (encrypted)", unit="row") as bar:
        for start in range(0, POOL, 2000):
            chunk = rows[start:start + 2000]
            conn.execute(insert(c), [{"id": r["id"], "name_enc": r["name"], "email_enc": r["email"],
                                      "phone_enc": r["phone"], "address_enc": r["address"],
                                      "email_hash": db.types.keyring().blind_index(r["email"]),
                                      "created_at": now} for r in chunk])
            bar.update(len(chunk))


STATUS_CASE = "(ARRAY[{}])[1 + (g % {})]".format(", ".join(f"'{s}'" for s in STATUSES), len(STATUSES))
CHUNK_SQL = {
    "orders": f"""
        INSERT INTO orders (id, number, channel, external_id, customer_id, status, shipping_speed,
                            shipping_address_enc, total_cents, currency, payment_authorization, priority,
                            placed_at, status_changed_at, version)
        SELECT 'ord_' || lpad(g::text, 10, '0'), 'PR-' || lpad(g::text, 8, '0'), 'storefront', 'SF-' || g,
               c.id, {STATUS_CASE}, 'standard', c.address_enc, 2500 + (g % 50) * 100, 'USD', 'auth_' || g,
               0, :now - ((:total - g) * interval '3 seconds'),
               :now - ((:total - g) * interval '3 seconds') + interval '2 days', 1
        FROM generate_series(:lo, :hi) g
        JOIN customers c ON c.id = 'cus_' || lpad((g % {POOL})::text, 8, '0')""",
    "order_lines": """
        INSERT INTO order_lines (id, order_id, line_no, sku, quantity, texts, template_key, template_version,
                                 unit_price_cents, partner_id)
        SELECT 'lin_' || lpad(g::text, 10, '0'), 'ord_' || lpad(g::text, 10, '0'), 1, 'TEE-DTG-BLK-M', 1,
               '{"headline": "Best Dad Ever"}'::json, 'tee-front', 1, 2500, 'acme-columbus'
        FROM generate_series(:lo, :hi) g""",
    # A job reaches its partner 30 minutes after the order (job.submitted, k = 6 below) and starts 5 minutes
    # later (job.printed, k = 7): submitted_at / started_at are stamped as PrintJob.advance stamps them.
    "print_jobs": f"""
        INSERT INTO print_jobs (id, order_id, line_id, unit_index, status, attempt, priority, partner_id,
                                product_type, print_method, region, created_at, status_changed_at, version,
                                submitted_at, started_at)
        SELECT id, order_id, line_id, 0, status, 1, priority, 'acme-columbus', 'tee', 'dtg', 'us-east',
               created_at, created_at, 1,
               CASE WHEN status <> 'pending' THEN created_at + interval '30 minutes' END,
               CASE WHEN status IN ('printed', 'qa_passed') THEN created_at + interval '35 minutes' END
        FROM (SELECT 'job_' || lpad(g::text, 10, '0') AS id, 'ord_' || lpad(g::text, 10, '0') AS order_id,
                     'lin_' || lpad(g::text, 10, '0') AS line_id,
                     CASE WHEN {STATUS_CASE} IN ('delivered', 'shipped', 'label_created', 'ready_to_ship')
                          THEN 'qa_passed' WHEN {STATUS_CASE} = 'qa' THEN 'printed'
                          WHEN {STATUS_CASE} = 'in_production' THEN 'queued' ELSE 'pending' END AS status,
                     1.0 + (g % 7) AS priority, :now - ((:total - g) * interval '3 seconds') AS created_at
              FROM generate_series(:lo, :hi) g) j""",
    "shipments": f"""
        INSERT INTO shipments (id, order_id, status, carrier_shipment_id, carrier, service, rate_cents,
                               tracking_code, created_at, status_changed_at, version)
        SELECT 'shp_' || lpad(g::text, 10, '0'), 'ord_' || lpad(g::text, 10, '0'),
               CASE WHEN {STATUS_CASE} = 'delivered' THEN 'delivered' ELSE 'in_transit' END,
               'shp_ep_' || g, 'USPS', 'Priority', 795, 'EZ' || lpad(g::text, 12, '0'),
               :now - ((:total - g) * interval '3 seconds'), :now - ((:total - g) * interval '3 seconds'), 1
        FROM generate_series(:lo, :hi) g
        WHERE {STATUS_CASE} IN ('delivered', 'shipped')""",
    "order_events": """
        INSERT INTO order_events (order_id, at, type, source, payload, dedupe_key)
        SELECT 'ord_' || lpad(g::text, 10, '0'),
               :now - ((:total - g) * interval '3 seconds') + k * interval '5 minutes',
               (:types)[1 + ((k - 1) % array_length(:types, 1))], 'bench',
               '{"from": "accepted", "to": "rendering"}'::json,
               'ord_' || lpad(g::text, 10, '0') || '-v' || k
        FROM generate_series(:lo, :hi) g CROSS JOIN generate_series(1, :per_order) k""",
}


def generate(engine: Engine, *, orders: int, events_per_order: int, now: datetime) -> None:
    load_customers(engine, now)
    chunk = max(10_000, orders // 50)
    for table, sql in CHUNK_SQL.items():
        rows = orders * (events_per_order if table == "order_events" else 1)
        with tqdm(total=rows, desc=table, unit="row", unit_scale=True) as bar:
            for lo in range(1, orders + 1, chunk):
                hi = min(orders, lo + chunk - 1)
                with engine.begin() as conn:
                    conn.execute(text(sql), {"lo": lo, "hi": hi, "now": now, "total": orders,
                                             "types": list(EVENT_TYPES), "per_order": events_per_order})
                bar.update((hi - lo + 1) * (events_per_order if table == "order_events" else 1))
    with engine.begin() as conn:
        say("  side tables: rejections, queue samples, retrievals, inspections")
        conn.execute(text("""INSERT INTO intake_rejections (at, channel, code)
            SELECT :now - g * interval '7 seconds', 'storefront', (ARRAY['text_prohibited','artwork_too_small',
                   'out_of_stock'])[1 + g % 3] FROM generate_series(1, :n) g"""), {"now": now, "n": orders // 100})
        conn.execute(text("""INSERT INTO queue_samples (at, queue, depth, delayed, dead, oldest_age_s)
            SELECT :now - g * interval '5 seconds', q, (g % 40), 0, 0, (g % 90)::float
            FROM generate_series(1, 17280) g CROSS JOIN unnest(ARRAY['render','production','webhooks','qa',
                 'notify','shipping','tracking']) q"""), {"now": now})
        conn.execute(text("""INSERT INTO asset_retrievals (at, asset_id, file, ms, bytes)
            SELECT :now - g * interval '1 second', 'ast_' || g, 'print.png', 20 + (g % 150), 4000000
            FROM generate_series(1, 100000) g"""), {"now": now})
        # The batcher's open batches: 20 of 60 jobs each, opened over the last 20 minutes.
        conn.execute(text("""INSERT INTO batches (id, partner_id, product_type, print_method, region, status,
                target_size, created_at, status_changed_at, version)
            SELECT 'bat_' || g, 'acme-columbus', 'tee', 'dtg', 'us-east', 'open', 60, :now - g * interval '1 minute',
                   :now - g * interval '1 minute', 1 FROM generate_series(1, 20) g"""), {"now": now})
        conn.execute(text("""UPDATE print_jobs SET status = 'batched', batch_id = 'bat_' || (1 + (x.n - 1) / 60)
            FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM print_jobs WHERE status = 'pending'
                  ORDER BY id LIMIT 1200) x WHERE print_jobs.id = x.id"""))
        conn.execute(text("""INSERT INTO inspections (id, job_id, order_id, status, scores, reasons,
                review_reason, created_at, status_changed_at, version)
            SELECT 'ins_' || j.id, j.id, j.order_id, 'needs_review', '{"delta_e": 3.1}'::json,
                   '["colour_shift"]'::json, 'borderline', j.created_at, j.created_at, 1
            FROM print_jobs j WHERE j.status = 'printed' ORDER BY j.id LIMIT 300"""))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        say("  VACUUM ANALYZE")
        conn.execute(text("VACUUM ANALYZE"))


@contextmanager
def _database(reuse: str | None, *, keep: bool) -> Iterator[str]:
    """The database to measure: one given, a scratch one (dropped after), or a scratch one kept for --reuse."""
    if reuse:
        yield reuse
    elif not keep:
        with scratch_database(DATABASE_PREFIX) as url:
            yield url
    else:
        yield _kept_database()


def _kept_database() -> str:
    """As bench.common.scratch_database (migrated, seeded), without the drop."""
    from adapters.passwords import hash_password
    from db.migrate import upgrade
    from db.seed import seed

    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    name = f"{DATABASE_PREFIX}_kept_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    engine = db.make_engine(url)
    seed(engine, hash_password=hash_password)
    engine.dispose()
    return url


# ---- the measurement ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageQuery:
    page: str
    name: str
    call: Callable[[Engine], Any]
    search: bool = False


def page_queries(orders: int, now: datetime, rng: random.Random) -> list[PageQuery]:
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    some = lambda: rng.randint(1, orders)  # noqa: E731 — a fresh order for each call, as users pick them
    order_id = lambda: f"ord_{some():010d}"  # noqa: E731
    counted: dict[str, q.GroupCounts] = {}

    def groups(engine: Engine) -> q.GroupCounts:
        if "groups" not in counted:
            counted["groups"] = q.unbatched_per_group(engine)
        return counted["groups"]

    return [
        PageQuery("control_room", "orders_per_status", lambda e: q.orders_per_status(e, finished_since=day)),
        PageQuery("control_room", "intake_per_minute", lambda e: q.intake_per_minute(e, now=now)),
        PageQuery("control_room", "intake_outcomes", lambda e: q.intake_outcomes(e, since=hour)),
        PageQuery("control_room", "rejection_reasons", lambda e: q.rejection_reasons(e, since=hour)),
        PageQuery("control_room", "queue_series", lambda e: q.queue_series(e, since=now - timedelta(minutes=30))),
        PageQuery("control_room", "latest_queue_samples", q.latest_queue_samples),
        PageQuery("control_room", "render_cache", q.render_cache),
        PageQuery("control_room", "retrieval_latency", lambda e: q.retrieval_latency(e, since=hour)),
        PageQuery("control_room", "partner_panel", lambda e: q.partner_panel(
            e, now=now, start_sla=timedelta(hours=4), window=timedelta(days=1))),
        PageQuery("order_timeline", "recent_orders", q.recent_orders),
        PageQuery("order_timeline", "order_detail", lambda e: q.order_detail(e, order_id())),
        PageQuery("order_timeline", "timeline", lambda e: q.timeline(e, order_id())),
        PageQuery("order_timeline", "order_assets", lambda e: q.order_assets(e, order_id())),
        PageQuery("order_timeline", "search by number", lambda e: q.search_orders(e, f"PR-{some():08d}"), True),
        PageQuery("order_timeline", "search by e-mail",
                  lambda e: q.search_orders(e, f"bench+{rng.randrange(POOL)}@example.com"), True),
        PageQuery("order_timeline", "search by tracking", lambda e: q.search_orders(e, f"EZ{some():012d}"), True),
        PageQuery("batch_builder", "unbatched_per_group", q.unbatched_per_group),
        # As app/queries.py reads the board: the groups counted once (the row above), then the bounded jobs.
        PageQuery("batch_builder", "open_jobs", lambda e: q.open_jobs(e, groups=groups(e))),
        PageQuery("batch_builder", "line_load", q.line_load),
        PageQuery("batch_builder", "partner_capacity", q.partner_capacity),
        PageQuery("qa_review", "review_queue", lambda e: q.review_queue(e, since=day)),
    ]


class Recorder:
    """The SQL statements one call sends, to run them again under EXPLAIN ANALYZE."""

    def __init__(self, engine: Engine) -> None:
        self.statements: list[tuple[str, Any]] = []
        self.on = False
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.on and statement.lstrip().upper().startswith(("SELECT", "WITH", "(SELECT")):
            self.statements.append((statement, parameters))


def explain_ms(engine: Engine, statements: list[tuple[str, Any]]) -> float:
    """The database's own execution time for the statements, summed (EXPLAIN ANALYZE, no client work)."""
    total = 0.0
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement, parameters in statements:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            total += cursor.fetchone()[0][0]["Execution Time"]
        raw.rollback()
    finally:
        raw.close()
    return total


def measure(engine: Engine, queries: list[PageQuery], runs: int) -> list[dict[str, Any]]:
    recorder = Recorder(engine)
    results = []
    for query in tqdm(queries, desc="page queries", unit="query"):
        for _ in range(2):
            query.call(engine)  # warm-up: plans cached, pages in memory
        ours, base = [], []
        for _ in range(runs):
            recorder.statements, recorder.on = [], True
            started = time.perf_counter()
            query.call(engine)
            ours.append((time.perf_counter() - started) * 1000)
            recorder.on = False
            base.append(explain_ms(engine, recorder.statements))
        results.append({"page": query.page, "query": query.name, "search": query.search,
                        "p95_ms": percentile(ours, 95), "explain_p95_ms": percentile(base, 95),
                        "median_ms": Spread.of(ours).median, "statements": len(recorder.statements)})
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--events-per-order", type=int, default=10)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--keep", action="store_true",
                        help="keep the loaded database (its URL is printed) for --reuse; drop it yourself")
    parser.add_argument("--reuse", metavar="DATABASE_URL", help="measure a database loaded with --keep, no load")
    args = parser.parse_args(argv)
    with _database(args.reuse, keep=args.keep) as url:
        db.configure(Settings.from_env({"DATABASE_URL": url}))
        engine = db.make_engine(url)
        if args.reuse:
            with engine.connect() as conn:  # the newest order was placed at the load's "now"
                now = conn.scalar(text("SELECT max(placed_at) FROM orders"))
            say(f"dashboard: reusing {url} loaded at {now:%Y-%m-%d %H:%M} UTC")
        else:
            now = datetime.now(UTC).replace(microsecond=0)
            say(f"dashboard: loading {args.orders:,} orders and {args.orders * args.events_per_order:,} events")
            started = time.monotonic()
            generate(engine, orders=args.orders, events_per_order=args.events_per_order, now=now)
            say(f"  loaded in {time.monotonic() - started:.0f} s" + (f"; kept: --reuse {url}" if args.keep else ""))
        results = measure(engine, page_queries(args.orders, now, random.Random(args.seed)), args.runs)
        engine.dispose()
    print(f"\ndashboard: {args.orders:,} orders, {args.orders * args.events_per_order:,} timeline events; "
          f"p95 of {args.runs} calls, end to end vs EXPLAIN ANALYZE")
    print(f"  {'page':15} {'query':22} {'p95 ms':>8} {'db p95 ms':>10} {'ratio':>6} {'goal':>8}")
    for r in results:
        goal = 20 if r["search"] else 100
        mark = "ok" if r["p95_ms"] <= goal else "MISSED"
        ratio = r["p95_ms"] / r["explain_p95_ms"] if r["explain_p95_ms"] else float("nan")
        print(f"  {r['page']:15} {r['query']:22} {r['p95_ms']:8.1f} {r['explain_p95_ms']:10.2f} {ratio:6.1f} "
              f"{'<= ' + str(goal):>8} {mark}")
    pages = [r for r in results if not r["search"]]
    searches = [r for r in results if r["search"]]
    worst_page = max(pages, key=lambda r: r["p95_ms"])
    worst_search = max(searches, key=lambda r: r["p95_ms"])
    result_line("dashboard-search", ours=worst_search["p95_ms"], baseline=worst_search["explain_p95_ms"],
                unit="ms p95", goal="search p95 <= 20 ms", worst=worst_search["query"], orders=args.orders)
    return result_line("dashboard-pages", ours=worst_page["p95_ms"], baseline=worst_page["explain_p95_ms"],
                       unit="ms p95", goal="page queries p95 <= 100 ms", worst=worst_page["query"],
                       orders=args.orders, events=args.orders * args.events_per_order)


if __name__ == "__main__":
    main()
