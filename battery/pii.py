"""PII canaries: customers whose name, e-mail, phone and address carry unique canary strings order through the API
processes (storefront and signed Shopify webhooks); then the database (pg_dump), the processes' logs and every
Redis key (queue payloads included) are searched for the canaries in plain text. The canaries must be readable
through the application (so they were really stored) and nowhere else. Then the PII lifecycle on the same rows:
every PII value rotated to a new key (which alone must read them all), some customers exported as JSON and then
erased (0 canary hits in the dump or any object version; their order records kept; the others untouched)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import redis
from cryptography.fernet import InvalidToken
from sqlalchemy import Text, select, type_coerce
from sqlalchemy.engine import make_url

from battery.framework import Context, Figure
from battery.webhooks import post_all, shopify_order, shopify_signed
from db import tables as t
from tests.integration.production_helpers import pressroom_processes
from tests.integration.test_intake_on_postgres import RedisHarness


def canaries(n: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        tag = f"CNRY{i:04d}X{rng.randbytes(3).hex().upper()}"
        out.append({"tag": tag, "name": f"Ada {tag}", "email": f"{tag.lower()}@canary.example",
                    "phone": f"+44 20 7{rng.randint(100, 999)} {rng.randint(1000, 9999)}",
                    "line1": f"{tag} Canary Wharf Road"})
    return out


def _storefront_body(harness: RedisHarness, art: str, c: dict) -> dict:
    body = harness.order_body(art, customer={"name": c["name"], "email": c["email"], "phone": c["phone"]},
                              shipping_address={"name": c["name"], "line1": c["line1"], "city": "London",
                                                "region": "LND", "postal_code": "NW1 5LR", "country": "GB"})
    body["lines"][0].update(sku="MUG-SUB-11OZ-WHT", texts={"name": "Ada"})
    return body


def _shopify_payload(art: str, c: dict, number: int) -> dict:
    order = shopify_order(art, number)
    first, last = c["name"].split(" ", 1)
    order.update(email=c["email"], phone=c["phone"],
                 customer={"first_name": first, "last_name": last, "email": c["email"]})
    order["shipping_address"] = {"first_name": first, "last_name": last, "address1": c["line1"],
                                 "city": "Louisville", "province_code": "KY", "zip": "40202", "country_code": "US"}
    return order


def _needles(c: dict) -> dict[str, re.Pattern]:
    return {"name/address/email": re.compile(re.escape(c["tag"]), re.IGNORECASE),
            "phone": re.compile(re.escape(c["phone"].split(" ", 2)[2]).replace(r"\ ", r"[ -]?"))}


def _redis_text(url: str) -> tuple[str, int]:
    """Every key and value of the Redis database as text; and how many queued messages it holds."""
    client = redis.Redis.from_url(url)
    parts, messages = [], 0
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        parts.append(key.decode(errors="replace"))
        if kind == "string":
            parts.append((client.get(key) or b"").decode(errors="replace"))
        elif kind == "hash":
            values = client.hgetall(key)
            messages += len(values) if key.endswith(b".msgs") else 0
            parts += [f"{k.decode(errors='replace')}={v.decode(errors='replace')}" for k, v in values.items()]
        elif kind == "list":
            parts += [v.decode(errors="replace") for v in client.lrange(key, 0, -1)]
        elif kind == "set":
            parts += [v.decode(errors="replace") for v in client.smembers(key)]
        elif kind == "zset":
            parts += [v.decode(errors="replace") for v in client.zrange(key, 0, -1)]
        elif kind == "stream":
            parts += [json.dumps({k.decode(): v.decode(errors="replace") for k, v in fields.items()})
                      for _, fields in client.xrange(key)]
    return "\n".join(parts), messages


def _pg_dump(url: str) -> str:
    u = make_url(url)
    command = ["pg_dump", "--data-only", "--no-owner", "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432),
               "-U", u.username or "postgres", u.database]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={"PGPASSWORD": u.password or "", "PATH": "/usr/bin:/bin"})
    if done.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {done.stderr[:300]}")
    return done.stdout


def pii_canaries(ctx: Context) -> list[Figure]:
    name = "pii-canaries"
    count = ctx.pick(100, 1000)
    rng = random.Random(20261127)
    people = canaries(count, rng)
    with pressroom_processes(ctx.pg_url, ctx.redis_url, ctx.workdir, queues=("webhooks", "tracking")) as system:
        harness = RedisHarness(ctx.pg_url, ctx.workdir)
        system.wait_http(f"{system.api_url}/healthz")
        with httpx.Client(base_url=system.api_url, timeout=60) as client:
            art = client.post("/v1/artwork", files={"file": ("a.png", _art())}).json()["id"]
            shopify = {i for i in range(count) if i % 10 == 9}
            codes = Counter()
            for i, c in enumerate(people):
                if i in shopify:
                    continue
                codes[client.post("/v1/orders", json=_storefront_body(harness, art, c)).status_code] += 1
        results = post_all(system.api_url, [shopify_signed(_shopify_payload(art, people[i], 700_000 + i),
                                                           f"wh-{uuid.uuid4().hex}") for i in sorted(shopify)],
                           threads=8)
        codes.update(code for code, _, _ in results)
        tags = {c["tag"] for c in people}
        with harness.services.uow() as uow:  # readable through the application: the canaries were really stored
            ids = uow.session.execute(select(t.orders.c.id)).scalars().all()
            stored = sum(1 for order_id in ids
                         if (found := re.search(r"CNRY\w+", uow.orders.get(order_id).customer.name or ""))
                         and found.group(0) in tags)
        harness.services.engine.dispose()
        logs = "\n".join(p.read_text(errors="replace") for p in system.logs.glob("*.log"))
    redis_text, messages = _redis_text(ctx.redis_url)
    dump = _pg_dump(ctx.pg_url)
    hits: dict[str, Counter] = {"database dump": Counter(), "logs": Counter(), "Redis (queues included)": Counter()}
    for c in people:
        for field, needle in _needles(c).items():
            for where, text in (("database dump", dump), ("logs", logs), ("Redis (queues included)", redis_text)):
                if needle.search(text):
                    hits[where][field] += 1
    control = json.dumps(people, ensure_ascii=False)  # what was sent: the search must find every canary in it
    missed = sum(1 for c in people for needle in _needles(c).values() if not needle.search(control))
    figures = [
        Figure(test=name, figure=f"search self-check: canaries found in the requests as sent: "
                                 f"{2 * count - missed:,}/{2 * count:,}", pass_figure="all", passed=not missed),
        Figure(test=name, figure=f"{count:,} customers with canaries ordered ({count - len(shopify)} storefront, "
                                 f"{len(shopify)} Shopify): answers {dict(sorted(codes.items()))}; read back "
                                 f"through the app {stored}", pass_figure=f"all 201; {count:,} read back",
               passed=codes == {201: count} and stored == count),
    ]
    sizes = {"database dump": len(dump), "logs": len(logs), "Redis (queues included)": len(redis_text)}
    for where, found in hits.items():
        extra = f", {messages} queued messages" if where.startswith("Redis") else ""
        figures.append(Figure(test=name, figure=f"plaintext canary hits in the {where} ({sizes[where]:,} chars"
                                                f"{extra}): {sum(found.values())} {dict(found) or ''}".rstrip(),
                              pass_figure="0", passed=not found))
    return figures + _lifecycle(ctx, people, rng)


def _lifecycle(ctx: Context, people: list[dict], rng: random.Random) -> list[Figure]:
    """Key rotation over every PII row, access export and erasure requests, counted on the same database."""
    from cryptography.fernet import Fernet

    import db
    from adapters.objectstore import LocalVersionedStore
    from db.pii import encrypted_columns, erase_customer, export_customer, pseudonym, rotate_keys
    from tests.conftest import settings_for

    name = "pii-canaries"
    engine = db.make_engine(ctx.pg_url)
    old = settings_for(ctx.pg_url)
    new_key = Fernet.generate_key().decode()
    try:
        report = rotate_keys(engine, (new_key, *old.pii_keys))
        db.configure(replace(old, pii_keys=(new_key,)))  # the new key alone from here on
        read = unreadable = 0
        with engine.connect() as conn:
            for table, columns in encrypted_columns().items():
                for column in columns:
                    for token in conn.scalars(select(type_coerce(table.c[column], Text))
                                              .where(table.c[column].is_not(None))):
                        try:
                            Fernet(new_key.encode()).decrypt(token.encode())
                            read += 1
                        except InvalidToken:
                            unreadable += 1
        figures = [Figure(test=name, figure=f"key rotation: {report.rows_seen:,} PII rows, {report.rows_rotated:,} "
                                            f"rotated, {report.rows_unreadable} unreadable; then the new key alone "
                                            f"reads {read:,} values, {unreadable} unreadable",
                          pass_figure="0 unreadable",
                          passed=report.rows_unreadable == 0 and unreadable == 0 and read > 0)]
        chosen = rng.sample(people, ctx.pick(10, 50))
        exported = [export_customer(engine, email=c["email"]) for c in chosen]
        complete = sum(1 for c, doc in zip(chosen, exported, strict=True)
                       if doc["customers"][0]["name"] == c["name"] and doc["orders"]
                       and all(o["shipping_address"]["line1"] == c["line1"] and o["lines"] for o in doc["orders"]))
        figures.append(Figure(test=name, figure=f"export: {complete}/{len(chosen)} customers' JSON holds their "
                                                "profile and orders (lines, address) decrypted",
                              pass_figure="all", passed=complete == len(chosen)))
        store = LocalVersionedStore(ctx.workdir / "objects")
        chosen_ids = _customer_ids(engine, chosen)
        readable_before = _decrypted_dump(engine)
        found_before = sum(1 for c in chosen for needle in _needles(c).values() if needle.search(readable_before))
        orders_before = _orders_of(engine, chosen_ids)
        for c in chosen:
            erase_customer(engine, store, email=c["email"], actor="battery", now=datetime.now(UTC),
                           include_open_orders=True)
        dump = _pg_dump(ctx.pg_url)
        readable = _decrypted_dump(engine)
        versions = [p.read_bytes().decode(errors="replace") for p in store.root.rglob("*") if p.is_file()]
        hits = Counter()
        for c in chosen:
            for needle in _needles(c).values():
                hits["database dump"] += bool(needle.search(dump))
                hits["decrypted"] += bool(needle.search(readable))
                hits["object versions"] += sum(1 for v in versions if needle.search(v))
        kept = [c for c in people if c not in chosen]
        still = sum(1 for c in kept if export_customer(engine, email=c["email"])["customers"][0]["name"] == c["name"])
        orders_after = _orders_of(engine, chosen_ids)
        with engine.connect() as conn:
            pseudonymised = sum(1 for r in conn.execute(select(t.customers.c.id, t.customers.c.name_enc,
                                                               t.customers.c.erased_at)
                                                        .where(t.customers.c.id.in_(chosen_ids)))
                                if r.name_enc == pseudonym(r.id) and r.erased_at is not None)
        figures += [
            Figure(test=name, figure=f"erasure of {len(chosen)} customers: their canary hits in every table "
                                     f"decrypted through the app {found_before}/{2 * len(chosen)} before, "
                                     f"{hits['decrypted']} after; pg_dump {hits['database dump']}; "
                                     f"{len(versions)} object versions {hits['object versions']}",
                   pass_figure=f"{2 * len(chosen)} before, 0 after",
                   passed=found_before == 2 * len(chosen) and not sum(hits.values())),
            Figure(test=name, figure=f"erasure kept {len(orders_after)}/{len(orders_before)} order records "
                                     f"(number, total, status) unchanged, {pseudonymised}/{len(chosen_ids)} "
                                     f"customers pseudonymised; {still}/{len(kept)} other customers untouched",
                   pass_figure="all",
                   passed=(orders_after == orders_before and bool(orders_before)
                           and pseudonymised == len(chosen_ids) == len(chosen) and still == len(kept))),
        ]
        return figures
    finally:
        engine.dispose()
        db.configure(old)


def _decrypted_dump(engine) -> str:
    """Every row of every table read through the application's column types (PII decrypted)."""
    with engine.connect() as conn:
        return "\n".join(json.dumps(list(row), default=str, ensure_ascii=False)
                         for table in t.metadata.sorted_tables for row in conn.execute(select(table)))


def _customer_ids(engine, people: list[dict]) -> set[str]:
    from db.types import keyring

    hashes = [keyring().blind_index(c["email"]) for c in people]
    with engine.connect() as conn:
        return set(conn.scalars(select(t.customers.c.id).where(t.customers.c.email_hash.in_(hashes))))


def _orders_of(engine, customer_ids: set[str]) -> dict[str, tuple]:
    """Number → (total, currency, status) of these customers' orders: what accounting keeps after erasure."""
    o = t.orders
    with engine.connect() as conn:
        return {r.number: (r.total_cents, r.currency, str(r.status))
                for r in conn.execute(select(o).where(o.c.customer_id.in_(customer_ids)))}


def _art() -> bytes:
    from tests.conftest import png_bytes

    return png_bytes(2400, 1200, colour=(30, 90, 200))
