"""Load the demo catalogue, partners, stock, prohibited words, settings and staff from db/seed_data/."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import Engine, func, insert, select

from db import tables as t

log = logging.getLogger(__name__)
SEED_DATA = Path(__file__).resolve().parent / "seed_data"


def load_catalogue(path: Path = SEED_DATA / "catalogue.json") -> dict[str, Any]:
    return json.loads(path.read_text())


def _stock_for(partner_id: str, sku: str) -> int:
    # Deterministic, varied blank stock: 40–640 units, so routing has real differences to weigh.
    digest = hashlib.sha256(f"{partner_id}:{sku}".encode()).digest()
    return 40 + int.from_bytes(digest[:2], "big") % 600


def seed(engine: Engine, *, hash_password: Callable[[str], str], now: datetime | None = None,
         catalogue: dict[str, Any] | None = None) -> bool:
    """Fill an empty database; returns False (and changes nothing) if it was seeded already."""
    now = now or datetime.now(UTC)
    catalogue = catalogue or load_catalogue()
    with engine.begin() as conn:
        if conn.scalar(select(func.count()).select_from(t.products)):
            return False
        charsets = catalogue["charsets"]
        for product in catalogue["products"]:
            template = product["template"]
            spec = {k: v for k, v in template.items() if k not in ("key", "print_location")}
            spec["texts"] = [slot | {"charset": charsets[slot["charset"]]} for slot in spec.get("texts", [])]
            conn.execute(insert(t.templates).values(key=template["key"], print_location=template["print_location"],
                                                    current_version=1))
            conn.execute(insert(t.template_versions).values(template_key=template["key"], version=1, spec=spec,
                                                            created_at=now, created_by="seed", note="initial"))
            conn.execute(insert(t.products).values(id=product["id"], name=product["name"],
                                                   product_type=product["product_type"],
                                                   print_method=product["print_method"],
                                                   template_key=template["key"], active=True))
            conn.execute(insert(t.variants), [{"sku": v["sku"], "product_id": product["id"], "colour": v["colour"],
                                               "size": v["size"], "price_cents": v["price_cents"], "active": True,
                                               "base_cost_cents": v.get("base_cost_cents",
                                                                        product.get("base_cost_cents"))}
                                              for v in product["variants"]])
        for partner in catalogue["partners"]:
            conn.execute(insert(t.partners).values(**partner, api_url="", active=True))
            methods = set(partner["print_methods"])
            conn.execute(insert(t.partner_stock), [
                {"partner_id": partner["id"], "sku": v["sku"], "on_hand": _stock_for(partner["id"], v["sku"]),
                 "reserved": 0, "synced_at": now}
                for product in catalogue["products"] if product["print_method"] in methods
                for v in product["variants"]])
        words = [w.strip().lower() for w in (SEED_DATA / "prohibited_words.txt").read_text().splitlines()
                 if w.strip() and not w.startswith("#")]
        conn.execute(insert(t.prohibited_words), [{"word": w, "added_at": now, "added_by": "seed"} for w in words])
        conn.execute(insert(t.settings).values(
            key="pricing", updated_at=now, updated_by="seed",
            value={"express_surcharge_cents": catalogue["express_surcharge_cents"],
                   "currency": catalogue["currency"]}))
        for user in json.loads((SEED_DATA / "staff.json").read_text()):
            conn.execute(insert(t.staff_users).values(username=user["username"], role=user["role"],
                                                      password_hash=hash_password(user["password"]),
                                                      active=True, failed_logins=0, created_at=now))
    log.info("seeded %d products and %d partners", len(catalogue["products"]), len(catalogue["partners"]))
    return True


def demo_logins() -> list[dict[str, str]]:
    """The demo staff accounts, printed by `make run` (they are public demo credentials)."""
    return json.loads((SEED_DATA / "staff.json").read_text())
