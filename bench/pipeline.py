"""Pipeline benchmark: orders/hour from accepted to delivered, the whole system running, sims at zero delay.

    python -m bench.pipeline [--mode cached|unique|both] [--orders N] [--timeout 2700]

The Procfile's processes on PostgreSQL + Redis: the API, 2 worker processes (every queue), the scheduler, the
partner sim (--instant, no defects), the carrier sim (a day in transit takes a fraction of a second), the
SMTP sink and the SMS sim. Orders go in through POST /v1/orders from a second process as fast as it accepts
them; throughput is orders / (last delivered - first submitted).

- cached: popular designs (one artwork, one text: render cache hits after the first). Baseline: the database
  ceiling, pgbench TPS measured in the same run divided by the transactions one order costs (counted from
  pg_stat_database over the run). Goal: >= 100,000 orders/hour; the ratio to the ceiling is reported.
- unique: every order's text differs, so every print file is rendered at full print resolution. Baseline:
  render + QA cost per order measured alone on this machine, spread over its cores. Goal: >= 3,600 orders/hour.
The lag benchmark (bench.lag) reuses this harness at half the sustained rate.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import httpx
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tqdm import tqdm

from bench.common import (
    BIN,
    PG_SERVER,
    UNLIMITED_STOCK,
    Stack,
    flush_redis,
    free_port,
    result_line,
    running,
    say,
    scratch_database,
    upload_artwork,
    wait_http,
)
from workers.cpu import FLUSH_EVERY_S

SKU = "TEE-DTG-BLK-M"
DB_PREFIX = os.environ.get("PRESSROOM_BENCH_DB_PREFIX", "pressroom_bench")
"""Scratch databases (the pipeline's and pgbench's) are named `<prefix>_pipe_…`: engineers sharing a server
each pass their own."""
DEFAULT_ORDERS = {"cached": 300, "unique": 80}  # unique: every order is a full-resolution render and its QA


@dataclass
class System:
    stack: Stack
    api_url: str
    metrics_url: str | None = None  # one worker's Prometheus exporter (both workers share its database)


PHOTOS_KEPT = 20_000
"""Photos the partner sim keeps (its store is memory; 500 by default): a real partner keeps them for days, and a
5,000-order soak's QA backlog outgrew 500, so its oldest prints lost their photos before QA asked."""
MAILS_KEPT = 200_000
"""The SMTP sink's cap (its default is 10,000): six e-mails an order, so a 5,000-order soak sends 30,000, and a
reconciliation that reads the sink's list must find every one."""


def start_system(stack: Stack, *, workers: int = 2, threads: int = 8) -> System:
    """Every process of the Procfile on free ports, sims at zero delay, `workers` worker processes."""
    api_port, partner_port, carrier_port, smtp_port, mail_http, sms_port = (free_port() for _ in range(6))
    api_url = f"http://127.0.0.1:{api_port}"
    stack.extra_env.update({
        "PRESSROOM_API_URL": api_url, "PRESSROOM_SELF_SERVICE_URL": api_url,
        "PARTNER_API_BASE": f"http://127.0.0.1:{partner_port}",
        "EASYPOST_API_BASE": f"http://127.0.0.1:{carrier_port}/v2",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "SMS_URL": f"http://127.0.0.1:{sms_port}",
        "BATCH_MAX_WAIT_S": "1", "RECONCILE_EVERY_S": "2", "PARTNER_RATE_PER_S": "1000",
        "EASYPOST_RATE_PER_S": "1000", "QA_UNDO_WINDOW_S": "5", "QA_REVIEW_FIRST_PRINTS": "0",
        "PRESSROOM_STAGE_CPU": "1"})
    stack.start("api", str(BIN / "uvicorn"), "api.asgi:app", "--host", "127.0.0.1", "--port", str(api_port),
                "--log-level", "warning", "--no-access-log")
    prom_port = free_port()
    prom_db = stack.workdir / f"prometheus-{uuid.uuid4().hex[:8]}"
    prom_db.mkdir(parents=True)
    for n in range(workers):
        stack.start(f"worker{n}", sys.executable, "-m", "workers", "workers.actors", "--processes", "1",
                    "--threads", str(threads), dramatiq_prom_port=str(prom_port if n == 0 else free_port()),
                    dramatiq_prom_db=str(prom_db))
    stack.start("scheduler", sys.executable, "-m", "workers.scheduler")
    stack.start("partners", sys.executable, "-m", "sims.partner", "--port", str(partner_port), "--instant",
                "--callback-base", api_url, "--defect-rate", "0", "--duplicate-rate", "0", "--reorder-rate", "0",
                "--stock", str(UNLIMITED_STOCK), "--photo-cap", str(PHOTOS_KEPT))
    stack.start("carrier", sys.executable, "-m", "sims.carrier", "--port", str(carrier_port), "--time-scale",
                "10000000", "--webhook-url", f"{api_url}/webhooks/carrier/easypost")
    stack.start("mail", sys.executable, "-m", "sims.smtp_sink", "--smtp-port", str(smtp_port), "--http-port",
                str(mail_http), "--max-messages", str(MAILS_KEPT))
    stack.start("sms", sys.executable, "-m", "sims.sms", "--port", str(sms_port))
    wait_http(f"{api_url}/healthz", stack.processes[0])
    return System(stack=stack, api_url=api_url, metrics_url=f"http://127.0.0.1:{prom_port}/")


def actor_seconds(system: System) -> dict[str, tuple[int, float]]:
    """Per actor: messages processed and the seconds spent in them, from the workers' Prometheus metrics."""
    if system.metrics_url is None:
        return {}
    try:
        body = httpx.get(system.metrics_url, timeout=10).text
    except httpx.HTTPError:
        return {}
    found: dict[str, list[float]] = {}
    for match in re.finditer(r'^dramatiq_message_duration_milliseconds_(sum|count)\{([^}]*)\} ([0-9.e+-]+)$', body,
                             re.MULTILINE):
        actor = re.search(r'actor_name="([^"]+)"', match.group(2)).group(1)
        entry = found.setdefault(actor, [0.0, 0.0])
        entry[0 if match.group(1) == "count" else 1] += float(match.group(3))
    return {actor: (int(count), total / 1000) for actor, (count, total) in found.items()}


def print_actors(before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]], orders: int) -> None:
    """Wall time in each actor per order (threads overlap, so this is where messages spend their time)."""
    rows = {a: (n - before.get(a, (0, 0.0))[0], s - before.get(a, (0, 0.0))[1]) for a, (n, s) in after.items()}
    if not rows:
        return
    say("  actors (messages per order, ms per message, ms per order; wall time in the actor):")
    for actor, (n, seconds) in sorted(rows.items(), key=lambda item: -item[1][1]):
        if n:
            per_order = seconds / max(1, orders) * 1000
            say(f"    {actor:28} {n / max(1, orders):6.2f} {seconds / n * 1000:9.0f} {per_order:9.0f}")


def stage_cpu_now(stack: Stack) -> dict[str, tuple[int, float, int, int]]:
    """Per actor and scheduler job: (runs, CPU seconds, commits, rollbacks) so far, as the workers recorded them
    (workers/cpu.py)."""
    import redis

    from workers.cpu import stage_cpu, stage_transactions

    client = redis.Redis.from_url(stack.redis_url)
    transactions = stage_transactions(client)
    return {name: (runs, seconds, *transactions.get(name, (0, 0)))
            for name, (runs, seconds) in stage_cpu(client).items()}


def print_stage_cpu(before: dict[str, tuple[int, float, int, int]], after: dict[str, tuple[int, float, int, int]],
                    orders: int) -> None:
    """CPU and transactions per order in each actor and scheduler job (the thread's own CPU time, not wall
    time; commits and rollbacks of its database transactions)."""
    rows = {a: tuple(v - w for v, w in zip(values, before.get(a, (0, 0.0, 0, 0)), strict=True))
            for a, values in after.items()}
    per = max(1, orders)
    total = sum(row[1] for row in rows.values())
    say(f"  CPU per order by actor / scheduler job (runs per order, ms per run, ms per order, commits and "
        f"rollbacks per order; total {total / per * 1000:,.0f} ms/order, "
        f"{sum(row[2] for row in rows.values()) / per:.1f} commits/order):")
    for actor, (n, seconds, commits, rollbacks) in sorted(rows.items(), key=lambda item: -item[1][1]):
        if n:
            say(f"    {actor:34} {n / per:6.2f} {seconds / n * 1000:8.1f} {seconds / per * 1000:8.1f} "
                f"{commits / per:6.2f} {rollbacks / per:6.2f}")


def order_body(artwork_id: str, n: int, *, unique: bool) -> dict:
    return {"external_id": f"PIPE-{uuid.uuid4().hex[:12]}", "channel": "storefront",
            "customer": {"name": "Ada Lovelace", "email": f"ada+{n}@example.com", "phone": "+44 20 7946 0958"},
            "shipping_address": {"name": "Ada Lovelace", "line1": "388 Townsend St", "city": "San Francisco",
                                 "region": "CA", "postal_code": "94107", "country": "US"},
            "shipping_speed": "standard",
            "lines": [{"sku": SKU, "quantity": 1, "artwork_id": artwork_id,
                       "texts": {"headline": f"Crew {n:05d}" if unique else "Best Dad Ever"}}]}


async def submit(api_url: str, artwork_id: str, orders: int, *, unique: bool, clients: int = 8,
                 pace_per_s: float | None = None) -> list[str]:
    """Post the orders (closed loop, or paced at `pace_per_s`); returns the accepted order ids."""
    accepted: list[str] = []
    numbers = iter(range(orders))
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        async def one_client() -> None:
            for n in numbers:
                if pace_per_s:
                    await asyncio.sleep(max(0.0, started + n / pace_per_s - time.perf_counter()))
                response = await client.post("/v1/orders", json=order_body(artwork_id, n, unique=unique),
                                             headers={"Idempotency-Key": uuid.uuid4().hex})
                if response.status_code in (200, 201):
                    accepted.append(response.json()["id"])
                else:
                    say(f"  order {n} refused: {response.status_code} {response.text[:200]}")
        await asyncio.gather(*(one_client() for _ in range(clients)))
    return accepted


def commits(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))
        count = int(value.scalar_one())
    engine.dispose()
    return count


def wait_delivered(url: str, order_ids: list[str], *, timeout: float) -> tuple[float | None, dict[str, int]]:
    """Poll until every order is delivered; returns when the last one was, and the final status counts."""
    engine = create_engine(url)
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    with tqdm(total=len(order_ids), desc="delivered", unit="order") as bar:
        while time.monotonic() < deadline:
            ids = {"ids": order_ids}  # only these orders (a warm-up's are not counted)
            with engine.connect() as conn:
                counts = dict(conn.execute(text("SELECT status, count(*) FROM orders WHERE id = ANY(:ids) "
                                                "GROUP BY status"), ids).all())
            delivered = counts.get("delivered", 0)
            bar.update(delivered - bar.n)
            with engine.connect() as conn:
                waiting_for_human = conn.execute(text(
                    "SELECT count(DISTINCT order_id) FROM inspections WHERE status = 'needs_review' "
                    "AND order_id = ANY(:ids)"), ids).scalar_one()
            counts["awaiting inspector"] = waiting_for_human
            if delivered + waiting_for_human >= len(order_ids):
                with engine.connect() as conn:
                    last = conn.execute(text("SELECT max(status_changed_at) FROM orders WHERE id = ANY(:ids)"),
                                        ids).scalar_one()
                engine.dispose()
                return last.timestamp(), counts
            time.sleep(2)
    engine.dispose()
    return None, counts


def pgbench_tps(seconds: int = 15) -> float:
    """TPC-B-like TPS of this PostgreSQL, now, on a scratch database (scale 10, 8 clients)."""
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    name = f"{DB_PREFIX}_pgbench_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_SERVER).set(database=name)
    args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    try:
        subprocess.run(["pgbench", *args, "-i", "-s", "10", "-q", name], env=env, check=True, capture_output=True)
        done = subprocess.run(["pgbench", *args, "-c", "8", "-j", "2", "-T", str(seconds), name], env=env,
                              check=True, capture_output=True, text=True)
        return float(re.search(r"tps = ([\d.]+)", done.stdout).group(1))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def render_and_qa_seconds() -> float:
    """One full-resolution render of the tee template plus one inspection of its print, alone, in seconds: as the
    workers do them, the print file prepared for QA as it renders."""
    import numpy as np

    from core.qa import inspect
    from core.render import render_asset
    from db.seed import load_catalogue

    product = next(p for p in load_catalogue()["products"] if any(v["sku"] == SKU for v in p["variants"]))
    spec = product["template"]
    artwork = Image.new("RGB", (3000, 3600), (30, 90, 200))
    samples = []
    for n in range(3):
        started = time.perf_counter()
        asset = render_asset(spec, artwork=artwork, texts={spec["texts"][0]["name"]: f"Crew {n:05d}"},
                             product_type=product["product_type"], print_method=product["print_method"],
                             colour=product["variants"][0]["colour"], prepare_qa_reference=True)
        rendered = time.perf_counter() - started
        photographed = io.BytesIO()  # the partner's camera, not timed: QA's part is decoding the JPEG it sends
        Image.open(io.BytesIO(asset.print_png)).convert("RGB").resize((1500, 1800)).save(photographed, "JPEG")
        started = time.perf_counter()
        photo = np.asarray(Image.open(photographed).convert("RGB"))
        inspect(asset.qa_reference, photo, dpi=float(spec["dpi"]), substrate=asset.qa_reference.substrate)
        samples.append(rendered + time.perf_counter() - started)
    return sorted(samples)[1]


def no_spot_checks(url: str) -> None:
    """No inspector takes part in a benchmark: no sampled reviews (doubtful prints still wait for one)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO settings (key, value, updated_at, updated_by) "
                          "VALUES ('qa_rules', :value, now(), 'bench')"), {"value": '{"spot_check_rate": 0}'})
    engine.dispose()


def cpu_seconds(stack: Stack, url: str) -> dict[str, float]:
    """CPU seconds used so far by each process of the stack (children included: the Dramatiq CLI forks its
    workers) and by the PostgreSQL backends connected to the bench database (the server is shared)."""
    import psutil

    used: dict[str, float] = {}
    for process in stack.processes:
        try:
            proc = psutil.Process(process.popen.pid)
            tree = [proc, *proc.children(recursive=True)]
            used[process.name] = sum(sum(p.cpu_times()[:2]) for p in tree)
        except psutil.Error:
            continue
    engine = create_engine(url)
    with engine.connect() as conn:
        pids = list(conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND pid <> pg_backend_pid()")).scalars())
    engine.dispose()
    backends = 0.0
    for pid in pids:
        try:
            backends += sum(psutil.Process(pid).cpu_times()[:2])
        except psutil.Error:
            continue
    used["postgres"] = backends
    return used


def print_cpu(before: dict[str, float], after: dict[str, float], orders: int) -> dict[str, float]:
    """Where the CPU went, per process, in ms per order (the postgres row counts only backends still open)."""
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    total = sum(spent.values())
    say(f"  CPU per order by process (total {total / max(1, orders) * 1000:,.0f} ms/order):")
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        say(f"    {name:12} {seconds / max(1, orders) * 1000:8.0f} ms/order  {seconds / max(total, 1e-9):6.1%}")
    return {name: round(seconds / max(1, orders) * 1000) for name, seconds in spent.items()}


def timeline(url: str, order_id: str) -> list[tuple[float, str, str]]:
    """One order's timeline as (seconds since its first event, event type, source), oldest first."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT at, type, source, payload FROM order_events WHERE order_id = :id "
                                 "ORDER BY at, id"), {"id": order_id}).all()
    engine.dispose()
    if not rows:
        return []
    first = rows[0].at
    out = []
    for row in rows:
        payload = row.payload if isinstance(row.payload, dict) else {}
        to = payload.get("to") or payload.get("status") or ""
        out.append(((row.at - first).total_seconds(), f"{row.type}{' -> ' + str(to) if to else ''}", row.source))
    return out


def start_profiles(stack: Stack, folder: str) -> list[subprocess.Popen]:
    """py-spy on every Python process of the stack (the worker CLI's forked children included), sampling only
    threads that are running, into `<folder>/<process>.txt` (collapsed stacks: one line per stack, its count)."""
    os.makedirs(folder, exist_ok=True)
    spies = []
    for process in stack.processes:
        spies.append(subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(process.popen.pid), "--subprocesses",
                                       "--nonblocking", "--rate", "50", "--format", "raw", "--output",
                                       os.path.join(folder, f"{process.name}.txt")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


def stop_profiles(spies: list[subprocess.Popen]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    for spy in spies:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()


def print_timeline(url: str, order_id: str) -> None:
    say(f"  timeline of order {order_id}:")
    for offset, what, source in timeline(url, order_id):
        say(f"    {offset:8.3f} s  {what:48} {source}")


def run_mode(mode: str, orders: int, timeout: float, profile: str | None = None) -> dict:
    unique = mode == "unique"
    flush_redis()
    with scratch_database(f"{DB_PREFIX}_pipe") as url, running(Stack(url)) as stack:
        no_spot_checks(url)
        system = start_system(stack)
        artwork_id = upload_artwork(system.api_url)
        say(f"pipeline-{mode}: {orders} orders ({'unique designs' if unique else 'popular designs'})")
        before = commits(url)
        cpu_before, actors_before = cpu_seconds(stack, url), actor_seconds(system)
        stage_before = stage_cpu_now(stack)
        spies = start_profiles(stack, profile) if profile else []
        started = time.time()
        accepted = asyncio.run(submit(system.api_url, artwork_id, orders, unique=unique))
        submitted_s = time.time() - started
        last, counts = wait_delivered(url, accepted, timeout=timeout)
        stop_profiles(spies)
        time.sleep(FLUSH_EVERY_S + 0.5)  # the workers write their stage totals once a second
        per_order = (commits(url) - before) / max(1, len(accepted))
        cpu = print_cpu(cpu_before, cpu_seconds(stack, url), len(accepted))
        print_actors(actors_before, actor_seconds(system), len(accepted))
        print_stage_cpu(stage_before, stage_cpu_now(stack), len(accepted))
        if accepted:
            print_timeline(url, accepted[len(accepted) // 2])
    flush_redis()
    if last is None:
        say(f"  not all delivered within {timeout:.0f} s: {counts}")
    elapsed = (last or time.time()) - started
    per_hour = counts.get("delivered", 0) / elapsed * 3600
    print(f"\npipeline-{mode}: {counts.get('delivered', 0)}/{len(accepted)} delivered in {elapsed:.0f} s "
          f"(submitted in {submitted_s:.0f} s) = {per_hour:,.0f} orders/hour; statuses {counts}")
    print(f"  {per_order:.1f} committed transactions per order (pg_stat_database, whole system)")
    if unique:
        seconds = render_and_qa_seconds()
        cores = os.cpu_count() or 1
        ceiling = cores * 3600 / seconds
        print(f"  baseline: render + QA alone {seconds:.2f} s per order x {cores} cores = {ceiling:,.0f} orders/hour")
        return result_line("pipeline-unique", ours=per_hour, baseline=ceiling, unit="orders/hour",
                           goal=">= 3,600 orders/hour", orders=len(accepted), delivered=counts.get("delivered", 0),
                           render_qa_s=round(seconds, 2), transactions_per_order=round(per_order, 1),
                           cpu_ms_per_order=cpu)
    if last is not None:  # the lag benchmark drives orders at half this rate
        (Stack(database_url="").workdir / "pipeline-cached.json").write_text(json.dumps(
            {"ours": per_hour, "orders": len(accepted), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    tps = pgbench_tps()
    ceiling = tps * 3600 / per_order
    print(f"  baseline: pgbench {tps:,.0f} TPS / {per_order:.1f} transactions per order = {ceiling:,.0f} orders/hour")
    return result_line("pipeline-cached", ours=per_hour, baseline=ceiling, unit="orders/hour",
                       goal=">= 100,000 orders/hour", orders=len(accepted), delivered=counts.get("delivered", 0),
                       pgbench_tps=round(tps), transactions_per_order=round(per_order, 1),
                       cpu_ms_per_order=cpu)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["cached", "unique", "both"], default="both")
    parser.add_argument("--orders", type=int, help=f"orders per mode (default: cached {DEFAULT_ORDERS['cached']}, "
                                                   f"unique {DEFAULT_ORDERS['unique']})")
    parser.add_argument("--timeout", type=float, default=2700)
    parser.add_argument("--profile", metavar="DIR", help="py-spy every process while the orders run (collapsed "
                                                         "stacks in DIR/<process>.txt); costs some CPU itself")
    args = parser.parse_args(argv)
    modes = ["cached", "unique"] if args.mode == "both" else [args.mode]
    return [run_mode(mode, args.orders or DEFAULT_ORDERS[mode], args.timeout, args.profile) for mode in modes]


if __name__ == "__main__":
    main()
