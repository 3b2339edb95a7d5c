"""Closed-loop load from a second process: C clients each send the next request as soon as the last answers.

    python -m bench.load --url http://127.0.0.1:8000 --target orders --clients 16 --seconds 10 --artwork art_…
    python -m bench.load --url … --target orders --baseline bare-orders --slice 2 …   (both, interleaved)

Targets: `orders` (POST /v1/orders with an Idempotency-Key), `partner` (a signed partner webhook), `carrier`
(a signed EasyPost tracker.updated), and `bare-orders` / `bare-webhooks`: the same bodies to the bare
baseline endpoint. Prints one JSON object: requests, ok (2xx), errors by status, rate and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Callable

import httpx

from bench.common import ROOT, Comparison, percentile, say
from sims.carrier import sign_webhook
from sims.partner import sign

PARTNER = "acme-columbus"
PARTNER_SECRET = f"whsec_dev_{PARTNER}"  # core.settings' development default
CARRIER_SECRET = "whsec_dev_easypost"
Request = tuple[str, bytes, dict[str, str]]


def order_request(artwork_id: str) -> Callable[[], Request]:
    def make() -> Request:
        body = {"external_id": f"BENCH-{uuid.uuid4().hex[:16]}", "channel": "storefront",
                "customer": {"name": "Ada Lovelace", "email": f"ada+{uuid.uuid4().hex[:8]}@example.com",
                             "phone": "+44 20 7946 0958"},
                "shipping_address": {"name": "Ada Lovelace", "line1": "12 Marylebone Rd", "city": "London",
                                     "region": "LND", "postal_code": "NW1 5LR", "country": "GB"},
                "shipping_speed": "standard",
                "lines": [{"sku": "TEE-DTG-BLK-M", "quantity": 1, "artwork_id": artwork_id,
                           "texts": {"headline": "Best Dad Ever"}}]}
        return "/v1/orders", json.dumps(body).encode(), {"Content-Type": "application/json",
                                                         "Idempotency-Key": uuid.uuid4().hex}
    return make


def partner_request() -> Request:
    event_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps({"event_id": event_id, "occurred_at": "2026-11-27T12:00:00Z", "type": "job.status",
                       "job": {"id": f"pj_{uuid.uuid4().hex[:12]}", "external_id": f"job_{uuid.uuid4().hex[:12]}",
                               "status": "printing", "photo_url": None}}, separators=(",", ":")).encode()
    return f"/webhooks/partners/{PARTNER}", body, {"Content-Type": "application/json", "X-Partner-Id": PARTNER,
                                                    "X-Partner-Event-Id": event_id,
                                                    "X-Partner-Signature": sign(PARTNER_SECRET, body)}


def carrier_request() -> Request:
    body = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "object": "Event", "description": "tracker.updated",
                       "mode": "test", "result": {"object": "Tracker", "id": f"trk_{uuid.uuid4().hex[:16]}",
                                                  "tracking_code": f"EZ{uuid.uuid4().hex[:12].upper()}",
                                                  "status": "in_transit", "tracking_details": []}},
                      separators=(",", ":")).encode()
    return "/webhooks/carrier/easypost", body, {"Content-Type": "application/json",
                                                 "X-Hmac-Signature": sign_webhook(body, CARRIER_SECRET)}


def to_bare(make: Callable[[], Request]) -> Callable[[], Request]:
    def bare() -> Request:
        _, body, headers = make()
        return "/_bench/bare", body, headers
    return bare


def requests_for(target: str, artwork_id: str | None) -> Callable[[], Request]:
    orders = order_request(artwork_id or "")
    return {"orders": orders, "bare-orders": to_bare(orders), "partner": partner_request,
            "carrier": carrier_request, "bare-webhooks": to_bare(partner_request)}[target]


async def run(url: str, make: Callable[[], Request], *, clients: int, seconds: float, warmup: float) -> dict:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    measure_from, stop_at = started + warmup, started + warmup + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def one_client() -> None:
            while (now := time.perf_counter()) < stop_at:
                path, body, headers = make()
                try:
                    response = await client.post(path, content=body, headers=headers)
                    status = response.status_code
                except httpx.HTTPError:
                    status = 599
                done = time.perf_counter()
                if now >= measure_from:
                    statuses[status] += 1
                    latencies.append((done - now) * 1000)
        await asyncio.gather(*(one_client() for _ in range(clients)))
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    return {"requests": sum(statuses.values()), "ok": ok, "per_s": ok / seconds,
            "errors": {str(s): n for s, n in statuses.items() if not 200 <= s < 300},
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}


async def interleaved(url: str, ours: Callable[[], Request], baseline: Callable[[], Request], *, clients: int,
                      seconds: float, warmup: float, slice_s: float) -> dict:
    """Ours and the baseline in alternating slices of `slice_s` seconds (each slice drained before the next
    starts), `seconds` of each in all: a change in the machine's load hits both sides within seconds, not
    between two 10-second runs. A side's rate is its 2xx answers over the time its slices took, drain included."""
    sides = {"ours": ours, "baseline": baseline}
    latencies: dict[str, list[float]] = {side: [] for side in sides}
    statuses: dict[str, Counter[int]] = {side: Counter() for side in sides}
    spent = dict.fromkeys(sides, 0.0)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def one_slice(side: str, length: float, record: bool) -> None:
            started = time.perf_counter()
            stop_at = started + length

            async def one_client() -> None:
                while (now := time.perf_counter()) < stop_at:
                    path, body, headers = sides[side]()
                    try:
                        status = (await client.post(path, content=body, headers=headers)).status_code
                    except httpx.HTTPError:
                        status = 599
                    if record:
                        statuses[side][status] += 1
                        latencies[side].append((time.perf_counter() - now) * 1000)
            await asyncio.gather(*(one_client() for _ in range(clients)))
            if record:
                spent[side] += time.perf_counter() - started

        for side in sides:
            await one_slice(side, warmup / 2, record=False)
        slices = max(1, round(seconds / slice_s))
        for n in range(slices):
            for side in (("ours", "baseline") if n % 2 == 0 else ("baseline", "ours")):
                await one_slice(side, seconds / slices, record=True)
    result = {}
    for side in sides:
        ok = sum(n for status, n in statuses[side].items() if 200 <= status < 300)
        result[side] = {"requests": sum(statuses[side].values()), "ok": ok, "per_s": ok / spent[side],
                        "errors": {str(s): n for s, n in statuses[side].items() if not 200 <= s < 300},
                        "p50_ms": percentile(latencies[side], 50), "p99_ms": percentile(latencies[side], 99),
                        "seconds": round(spent[side], 2)}
    return result


def compare_interleaved(url: str, ours: str, baseline: str, *, repetitions: int, clients: int, seconds: float,
                        slice_s: float = 2.0, artwork_id: str | None = None) -> Comparison:
    """`repetitions` runs of this module in a second process, each interleaving ours and the baseline."""
    comparison = Comparison()
    argv = [sys.executable, "-m", "bench.load", "--url", url, "--target", ours, "--baseline", baseline,
            "--clients", str(clients), "--seconds", str(seconds), "--slice", str(slice_s)]
    if artwork_id:
        argv += ["--artwork", artwork_id]
    for rep in range(1, repetitions + 1):
        done = subprocess.run(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                              text=True, timeout=2 * seconds + 180, check=True)
        run = json.loads(done.stdout.strip().splitlines()[-1])
        comparison.ours.append(run["ours"])
        comparison.baseline.append(run["baseline"])
        say(f"  [{rep}/{repetitions}] {ours}: {run['ours']['per_s']:.0f}/s   {baseline}: "
            f"{run['baseline']['per_s']:.0f}/s   (ratio {run['ours']['per_s'] / run['baseline']['per_s']:.2f})")
    return comparison


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--target", required=True,
                        choices=["orders", "bare-orders", "partner", "carrier", "bare-webhooks"])
    parser.add_argument("--artwork")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--baseline", choices=["bare-orders", "bare-webhooks"],
                        help="interleave this baseline with the target in alternating slices; prints both sides")
    parser.add_argument("--slice", type=float, default=2.0, help="seconds per slice when interleaving")
    args = parser.parse_args(argv)
    if args.baseline:
        result = asyncio.run(interleaved(args.url, requests_for(args.target, args.artwork),
                                         requests_for(args.baseline, args.artwork), clients=args.clients,
                                         seconds=args.seconds, warmup=args.warmup, slice_s=args.slice))
        print(json.dumps({"target": args.target, "baseline": args.baseline, **result}), flush=True)
        return 0
    result = asyncio.run(run(args.url, requests_for(args.target, args.artwork), clients=args.clients,
                             seconds=args.seconds, warmup=args.warmup))
    print(json.dumps({"target": args.target, **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
