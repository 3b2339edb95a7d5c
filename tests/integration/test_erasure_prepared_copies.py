"""Erasure reaches QA's prepared copies of a customer's personalised print file (their text as pixels), every
version and every code version of them, on the local folder store and on S3 (moto over HTTP); the prepared
copies of other customers' prints stay."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import select

from adapters.objectstore import LocalVersionedStore, S3Store
from core.erasable import qa_references_of
from core.qa import prepare_reference
from core.services.render import render_order
from db import tables as t
from db.pii import erase_customer
from tests.contract.conftest import moto_endpoint  # noqa: F401 - the fixture, for the S3 case
from tests.integration.test_pii_lifecycle import canary, harness, place  # noqa: F401 - harness is a fixture
from workers.qa import Lru, shared_references

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SUBSTRATE = (250, 250, 250)


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, harness):  # noqa: F811 - the imported fixture
    if request.param == "folder":
        return harness.services.store  # where the print files are: the erasure deletes both
    s3 = S3Store(f"erasure-{uuid.uuid4().hex[:16]}", endpoint_url=request.getfixturevalue("moto_endpoint"))
    s3.ensure_bucket()
    return s3


def stored_under(store, prefix: str) -> list[str]:
    """Every version (and S3 delete marker) stored under `prefix`, as `key@version`."""
    if isinstance(store, LocalVersionedStore):
        return sorted(str(p.relative_to(store.root)) for p in (store.root / prefix).rglob("*") if p.is_file())
    listing = store.client.list_object_versions(Bucket=store.bucket, Prefix=prefix)
    return sorted(f"{e['Key']}@{e['VersionId']}" for e in listing.get("Versions", []) + listing.get(
        "DeleteMarkers", []))


def print_file_sha256(engine, order_id: str) -> str:
    with engine.connect() as conn:
        return conn.scalar(select(t.assets.c.sha256).join(t.order_lines, t.order_lines.c.asset_id == t.assets.c.id)
                           .where(t.order_lines.c.order_id == order_id))


def test_erasure_deletes_every_prepared_copy_of_the_customers_personalised_print_file(harness, store):  # noqa: F811
    # given two customers with personalised prints of one designer's artwork, each print prepared by QA workers
    # (the entry written twice: two versions) and by an older code version (its own entry in the same folder)
    svc = harness.services
    erased, other = canary(0), canary(1)
    art = harness.upload(designer_id="designer-7")["id"]
    orders = [place(harness, art, person, personalised=True)["id"] for person in (erased, other)]
    for order_id in orders:
        assert render_order(order_id, uow=svc.uow(), store=svc.store, now=svc.now, clock=time.perf_counter) \
            == "rendered"
    mine, theirs = (print_file_sha256(svc.engine, order_id) for order_id in orders)
    assert mine != theirs
    prepared = prepare_reference(np.full((360, 300, 4), 200, np.uint8), substrate=SUBSTRATE)
    references = shared_references(store, Lru(4)).stored
    for sha in (mine, theirs):
        name = f"{sha}:{SUBSTRATE}"  # as core.services.qa names a print file's prepared entry
        assert references.save(name, prepared) and references.save(name, prepared)
        assert references.key(name).startswith(qa_references_of(sha))
        store.put(f"{qa_references_of(sha)}preparedreference-f1-0ldc0de0ldc0-{sha}-250-250-250.npz",
                  b"a copy prepared by yesterday's code", content_type="application/octet-stream")
    assert len(stored_under(store, qa_references_of(mine))) == 3

    # when the first customer's erasure request runs
    report = erase_customer(svc.engine, store, email=erased["email"], actor="test", now=datetime.now(UTC),
                            include_open_orders=True)

    # then no version of any prepared copy of their print file is left, and the report counts them
    assert stored_under(store, qa_references_of(mine)) == []
    assert report.prepared_versions == 3
    assert references.load(f"{mine}:{SUBSTRATE}") is None
    # the other customer's prepared copies stay, readable by the next worker
    assert len(stored_under(store, qa_references_of(theirs))) == 3
    assert references.load(f"{theirs}:{SUBSTRATE}") is not None
