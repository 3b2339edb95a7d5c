"""Closed-loop load from a second process: C clients each send the next request as soon as the last answers.

    python -m bench.load --url http://127.0.0.1:8000 --target orders --clients 16 --seconds 10 --artwork art_…

Targets: `orders` (POST /v1/orders with an Idempotency-Key), `partner` (a signed partner webhook), `carrier`
(a signed EasyPost tracker.updated), and `bare-orders` / `bare-webhooks`: the same bodies to the bare
baseline endpoint. Prints one JSON object: requests, ok (2xx), errors by status, rate and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Callable

import httpx

from bench.common import percentile
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--target", required=True,
                        choices=["orders", "bare-orders", "partner", "carrier", "bare-webhooks"])
    parser.add_argument("--artwork")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.url, requests_for(args.target, args.artwork), clients=args.clients,
                             seconds=args.seconds, warmup=args.warmup))
    print(json.dumps({"target": args.target, **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
