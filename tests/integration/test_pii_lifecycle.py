"""The PII lifecycle on PostgreSQL and the local versioned object store: key rotation over every encrypted row,
access export, and erasure (0 canary hits in any table, raw or decrypted, or in any object version; order records
kept pseudonymised; other customers untouched). Customers order through the real API; the CLI does the rest."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text, type_coerce
from sqlalchemy.types import Text

import cli
import db
from core.services.render import render_order
from db import tables as t
from db.pii import encrypted_columns, pseudonym
from tests.conftest import TEST_KEYS, ApiHarness, png_bytes, settings_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

KEY_A = TEST_KEYS["PRESSROOM_PII_KEYS"]
KEY_B = "p1F1aDq2c7b3vWk0xR5m8n2ZyQ4t6uJ9sL0eH3gAfBo="
KEY_C = Fernet.generate_key().decode()


def canary(i: int) -> dict:
    tag = f"CNRY{i:03d}Q{time.time_ns() % 10**6:06d}"
    return {"tag": tag, "name": f"Ada {tag}", "email": f"{tag.lower()}@canary.example",
            "phone": f"+44 20 7946 {i:04d}", "line1": f"{tag} Canary Wharf Road", "text": f"{tag}T"}


def place(harness: ApiHarness, art: str, person: dict, *, personalised: bool) -> dict:
    body = harness.order_body(
        art, customer={"name": person["name"], "email": person["email"], "phone": person["phone"]},
        shipping_address={"name": person["name"], "line1": person["line1"], "city": "London", "region": "LND",
                          "postal_code": "NW1 5LR", "country": "GB"})
    body["lines"][0]["texts"] = {"headline": person["text"]} if personalised else {"headline": "Best Dad Ever"}
    response = harness.client.post("/v1/orders", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def run_cli(monkeypatch, capsys, pg_url: str, objects, *args: str, keys: str = KEY_A) -> tuple[int, str, str]:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("PRESSROOM_PII_KEYS", keys)
    monkeypatch.setenv("PRESSROOM_BLIND_INDEX_KEY", TEST_KEYS["PRESSROOM_BLIND_INDEX_KEY"])
    monkeypatch.setenv("OBJECT_STORE_DIR", str(objects))
    capsys.readouterr()
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def harness(pg_url, tmp_path):
    h = ApiHarness(pg_url, tmp_path)
    yield h
    h.services.engine.dispose()
    db.configure(settings_for(pg_url))  # the keyring is per process: leave the test keys for the next test


def read_every_pii_value(engine) -> tuple[int, int]:
    """(values read, values unreadable) of every encrypted column, through the application's own types."""
    read = broken = 0
    with engine.connect() as conn:
        for table, names in encrypted_columns().items():
            (pk,) = table.primary_key.columns
            for row_id in conn.scalars(select(pk)).all():
                for name in names:
                    try:
                        conn.execute(select(table.c[name]).where(pk == row_id)).scalar()
                        read += 1
                    except Exception:  # InvalidToken, wrapped or not
                        broken += 1
    return read, broken


def dump(engine) -> str:
    """Every column of every table, both raw (as stored) and decrypted through the app's column types."""
    parts = []
    with engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            parts += [repr(tuple(r)) for r in conn.execute(text(f'SELECT * FROM "{table.name}"'))]
            parts += [json.dumps(list(r), default=str) for r in conn.execute(select(table))]
    return "\n".join(parts)


def object_bytes(root) -> list[tuple[str, bytes]]:
    return [(str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*") if p.is_file()]


def shop_body(person: dict) -> str:
    """A Shopify order webhook's body: the shop splits the name into first and last."""
    first, last = person["name"].split(" ", 1)
    return json.dumps({"email": person["email"], "customer": {"first_name": first, "last_name": last},
                       "shipping_address": {"first_name": first, "last_name": last, "address1": person["line1"],
                                            "phone": person["phone"]},
                       "line_items": [{"properties": [{"name": "headline", "value": "Best Dad Ever"}]}]})


def qa_photos(engine, store, order_id: str, person: dict) -> list[str]:
    """A printed job of the order with its QA inspection: the partner's photo shows the customer's custom text."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        line_id = conn.scalar(select(t.order_lines.c.id).where(t.order_lines.c.order_id == order_id))
        conn.execute(t.print_jobs.insert().values(
            id="job_qa1", order_id=order_id, line_id=line_id, unit_index=0, status="qa_passed", attempt=1,
            priority=0.0, created_at=now, status_changed_at=now, version=1))
        keys = {"photo_key": "qa/ins_qa1/photo.jpg", "heatmap_key": "qa/ins_qa1/heatmap.jpg",
                "aligned_key": "qa/ins_qa1/aligned.jpg"}
        conn.execute(t.inspections.insert().values(
            id="ins_qa1", job_id="job_qa1", order_id=order_id, status="passed", scores={}, reasons=[],
            created_at=now, status_changed_at=now, version=1, **keys))
    for key in keys.values():
        store.put(key, f"JPEG of a mug reading {person['text']}".encode(), content_type="image/jpeg")
    return list(keys.values())


def test_rotation_re_encrypts_every_pii_row_so_the_new_key_alone_reads_them(harness, pg_url, tmp_path,
                                                                            monkeypatch, capsys):
    # given customers, orders and a webhook body, all written under key A
    art = harness.upload()["id"]
    people = [canary(i) for i in range(3)]
    for person in people:
        place(harness, art, person, personalised=False)
    with harness.services.uow() as uow:
        uow.inbox.receive(source="shopify", event_id="wh-1", topic="orders/create",
                          body=json.dumps({"email": people[0]["email"]}), at=datetime.now(UTC))
        uow.commit()
    engine = harness.services.engine
    with engine.connect() as conn:
        before = {r.id: r.name_enc for r in conn.execute(select(t.customers.c.id,
                                                                 type_coerce(t.customers.c.name_enc, Text)))}

    # when the keyring becomes (B, A) and rotate-keys runs
    code, out, _ = run_cli(monkeypatch, capsys, pg_url, tmp_path / "objects", "rotate-keys", "--batch-size", "2",
                           keys=f"{KEY_B},{KEY_A}")

    # then every row was rotated, none unreadable, and key B alone reads every value
    assert code == 0, out
    customers = len(before)
    rows = customers + 3 + 1  # customers (seed has none), orders, inbox bodies
    assert f"rows rotated: {rows}; already under the current key: 0; unreadable: 0" in out
    db.configure(settings_for(pg_url, pii_keys=(KEY_B,)))
    read, broken = read_every_pii_value(engine)
    assert broken == 0 and read >= rows
    with harness.services.uow() as uow:
        assert {uow.customers.by_email(p["email"]).name for p in people} == {p["name"] for p in people}
    with engine.connect() as conn:
        after = {r.id: r.name_enc for r in conn.execute(select(t.customers.c.id,
                                                                type_coerce(t.customers.c.name_enc, Text)))}
    assert all(after[k] != before[k] for k in before)
    assert all(Fernet(KEY_B.encode()).decrypt(v.encode()) for v in after.values())

    # and running it again (resumed, or run twice) rotates nothing more
    code, out, _ = run_cli(monkeypatch, capsys, pg_url, tmp_path / "objects", "rotate-keys",
                           keys=f"{KEY_B},{KEY_A}")
    assert code == 0 and f"rows rotated: 0; already under the current key: {rows}; unreadable: 0" in out


def test_rotation_reports_a_row_no_key_can_read_and_leaves_it_as_it_was(harness, pg_url, tmp_path,
                                                                        monkeypatch, capsys):
    # given one customer whose phone was written under a key the keyring has lost (C)
    art = harness.upload()["id"]
    place(harness, art, canary(0), personalised=False)
    place(harness, art, canary(1), personalised=False)
    engine = harness.services.engine
    lost = Fernet(KEY_C.encode()).encrypt(b"+44 20 0000 0000").decode()
    with engine.begin() as conn:
        victim = conn.scalars(select(t.customers.c.id).order_by(t.customers.c.id)).first()
        conn.execute(t.customers.update().where(t.customers.c.id == victim)
                     .values(phone_enc=type_coerce(lost, Text)))

    # when rotate-keys runs with (B, A)
    code, out, err = run_cli(monkeypatch, capsys, pg_url, tmp_path / "objects", "rotate-keys",
                             keys=f"{KEY_B},{KEY_A}")

    # then it fails, names the row (not its value), rotates the rest and leaves that value untouched
    assert code == 1
    assert "unreadable: 1" in out and f"customers:{victim}" in err and "+44 20 0000" not in err + out
    assert "rows rotated: 3;" in out  # the other customer and both orders
    with engine.connect() as conn:
        assert conn.scalar(select(type_coerce(t.customers.c.phone_enc, Text))
                           .where(t.customers.c.id == victim)) == lost


def test_export_then_erasure_leaves_no_canary_anywhere_and_keeps_order_records(harness, pg_url, tmp_path,
                                                                               monkeypatch, capsys):
    # given three customers with canaries in name, e-mail, phone, address and custom text; the first one with
    # two orders, their own uploaded artwork (stored twice: two versions), a rendered personalised print and a
    # shipping label (two versions, the address printed on it)
    store = harness.services.store
    objects = tmp_path / "objects"
    people = [canary(i) for i in range(3)]
    shared_art = harness.upload(designer_id="designer-7")["id"]
    own_art = harness.upload(png_bytes(2400, 2400, colour=(10, 200, 90)))["id"]
    own_key = f"artwork/{own_art}.png"
    store.put(own_key, store.get(own_key), content_type="image/png")
    erased = people[0]
    placed = [place(harness, own_art, erased, personalised=True), place(harness, shared_art, erased,
                                                                        personalised=False)]
    others = [place(harness, shared_art, p, personalised=True) for p in people[1:]]
    svc = harness.services
    assert render_order(placed[0]["id"], uow=svc.uow(), store=store, now=svc.now, clock=time.perf_counter) \
        == "rendered"
    for order, person in ((placed[0], erased), (others[0], people[1])):
        for _ in range(2):
            store.put(f"labels/{order['id']}.png", f"SHIP TO {person['name']} {person['line1']}".encode(),
                      content_type="application/pdf")
    qa_keys = qa_photos(svc.engine, store, placed[0]["id"], erased)
    with svc.uow() as uow:
        for event_id, person in (("wh-erased", erased), ("wh-other", people[1])):
            uow.inbox.receive(source="shopify", event_id=event_id, topic="orders/create", body=shop_body(person),
                              at=svc.now())
        uow.commit()
    engine = svc.engine
    with engine.connect() as conn:
        records = {r.number: (r.total_cents, r.currency, str(r.status)) for r in conn.execute(
            select(t.orders).where(t.orders.c.id.in_([o["id"] for o in placed])))}
    erased_keys = [k for k in (own_key, f"labels/{placed[0]['id']}.png") if store.versions(k)]
    assert len(erased_keys) == 2 and all(len(store.versions(k)) == 2 for k in erased_keys)
    erased_keys += qa_keys
    rendered = [p for p, _ in object_bytes(objects) if p.startswith(("assets", "previews"))]
    assert rendered  # the personalised print exists before erasure

    # when the customer asks for their data
    code, out, _ = run_cli(monkeypatch, capsys, pg_url, objects, "export-customer", "--email",
                           erased["email"].upper())
    # then the export is JSON holding their profile, both orders with lines, texts and timeline, decrypted
    assert code == 0
    exported = json.loads(out)
    (profile,) = exported["customers"]
    assert (profile["name"], profile["email"], profile["phone"]) == (erased["name"], erased["email"],
                                                                     erased["phone"])
    assert sorted(o["number"] for o in exported["orders"]) == sorted(records)
    assert {o["shipping_address"]["line1"] for o in exported["orders"]} == {erased["line1"]}
    assert {"headline": erased["text"]} in [line["texts"] for o in exported["orders"] for line in o["lines"]]
    assert all(o["timeline"] for o in exported["orders"])
    assert people[1]["tag"] not in out

    # the canaries are in the database (decrypted) and in the objects before erasure: the search can find them
    assert erased["tag"] in dump(engine) and erased["tag"].lower() in dump(engine).lower()
    assert any(erased["tag"].encode() in data for _, data in object_bytes(objects))

    # when the erasure request runs while their orders are still open, it is refused and changes nothing
    before = dump(engine)
    code, out, err = run_cli(monkeypatch, capsys, pg_url, objects, "erase-customer", "--email", erased["email"])
    assert code == 1 and "2 order(s) of this customer are still open" in err
    assert all(o["number"] in err for o in placed) and "nothing was changed" in err
    assert dump(engine) == before and all(store.versions(k) for k in erased_keys)

    # when the erasure request runs, accepting that their open orders can no longer ship
    code, out, err = run_cli(monkeypatch, capsys, pg_url, objects, "erase-customer", "--email", erased["email"],
                             "--actor", "alice", "--include-open-orders")
    assert code == 0, err
    assert "2 order(s) kept pseudonymised" in out and "1 webhook body(ies) scrubbed" in out

    # then no canary of theirs is anywhere: any table (raw and decrypted) or any object version
    full = dump(engine).lower()
    for needle in (erased["tag"], erased["email"], erased["phone"], erased["line1"], erased["text"]):
        assert needle.lower() not in full, needle
    assert [p for p, data in object_bytes(objects) if erased["tag"].encode() in data] == []
    assert all(store.versions(k) == [] for k in erased_keys)
    assert [p for p, _ in object_bytes(objects) if p.startswith(("assets", "previews"))] == []
    # the designer's artwork, used by others too, stays
    assert store.versions(f"artwork/{shared_art}.png")
    # their order records stay for accounting, pseudonymised
    with engine.connect() as conn:
        kept = conn.execute(select(t.orders).where(t.orders.c.id.in_([o["id"] for o in placed]))).all()
        customer = conn.execute(select(t.customers).where(t.customers.c.id == kept[0].customer_id)).one()
        events = conn.execute(select(t.order_events).where(t.order_events.c.type == "customer.erased")).all()
        audit = conn.execute(select(t.audit_log).where(t.audit_log.c.action == "customer.erase")).all()
    assert {r.number: (r.total_cents, r.currency, str(r.status)) for r in kept} == records
    assert customer.erased_at is not None and customer.name_enc == pseudonym(customer.id)
    assert {r.shipping_address_enc.name for r in kept} == {pseudonym(customer.id)}
    assert sorted(e.order_id for e in events) == sorted(o["id"] for o in placed)
    assert len(audit) == 1 and audit[0].actor == "alice" and audit[0].target_id == customer.id
    # the other customers are untouched, in the database and in the objects
    for person in people[1:]:
        assert person["tag"].lower() in full and person["email"] in full and person["text"].lower() in full
    assert any(people[1]["tag"].encode() in data for _, data in object_bytes(objects))
    with svc.uow() as uow:
        assert uow.customers.by_email(people[1]["email"]).name == people[1]["name"]
    with engine.connect() as conn:
        bodies = dict(conn.execute(select(t.webhook_inbox.c.event_id, t.webhook_inbox.c.body)).all())
    assert bodies["wh-other"] == shop_body(people[1])  # the same first name and shop text, yet not theirs
    stand_in = pseudonym(customer.id)
    assert json.loads(bodies["wh-erased"])["customer"] == {"first_name": stand_in, "last_name": stand_in}

    # and a second request (or one for an unknown e-mail) is refused clearly, changing nothing
    code, _, err = run_cli(monkeypatch, capsys, pg_url, objects, "erase-customer", "--email", erased["email"],
                           "--include-open-orders")
    assert code == 1 and "no customer has that e-mail" in err
    code, _, err = run_cli(monkeypatch, capsys, pg_url, objects, "export-customer", "--email", erased["email"])
    assert code == 1 and "no customer has that e-mail" in err
    assert dump(engine).lower() == full
