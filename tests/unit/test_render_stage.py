"""The render stage on SQLite and the folder store: print-ready files, the cache, and holds with reasons."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image, ImageCms
from sqlalchemy import func, select

from core.services.render import render_order
from core.states import OrderStatus
from db import tables as t
from tests.conftest import png_bytes


def place(api, sku: str = "MUG-SUB-11OZ-WHT", texts: dict | None = None, size=(2400, 1200),
          artwork_id: str | None = None) -> str:
    art_id = artwork_id or api.upload(png_bytes(*size, colour=(30, 90, 200)))["id"]
    body = api.order_body(art_id)
    body["lines"][0].update(sku=sku, texts=texts if texts is not None else {"name": "Ada"})
    response = api.client.post("/v1/orders", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def render(api, order_id: str) -> str:
    svc = api.services
    return render_order(order_id, uow=svc.uow(), store=svc.store, now=svc.now, clock=time.perf_counter)


def order_row(api, order_id: str):
    with api.services.engine.connect() as conn:
        return conn.execute(select(t.orders).where(t.orders.c.id == order_id)).one()


def timeline(api, order_id: str) -> list[str]:
    with api.services.engine.connect() as conn:
        return list(conn.scalars(select(t.order_events.c.type).where(t.order_events.c.order_id == order_id)
                                 .order_by(t.order_events.c.id)))


def test_an_accepted_tshirt_gets_a_print_file_matching_its_template(api):
    # given an accepted t-shirt order
    order_id = place(api, sku="TEE-DTG-BLK-M", texts={"headline": "Best Dad Ever"}, size=(2400, 2400))
    # when the render stage runs
    assert render(api, order_id) == "rendered"
    # then the order is ready for production, with the print file, preview and metadata stored
    assert order_row(api, order_id).status == OrderStatus.READY_FOR_PRODUCTION
    with api.services.engine.connect() as conn:
        asset = conn.execute(select(t.assets)).one()
        line_asset = conn.scalar(select(t.order_lines.c.asset_id))
    assert line_asset == asset.id
    assert (asset.width, asset.height, asset.dpi) == (4500, 5400, 300) and asset.template_version == 1
    printed = Image.open(io.BytesIO(api.services.store.get(asset.print_file_key)))
    assert printed.size == (4500, 5400)
    assert tuple(round(v) for v in printed.info["dpi"]) == (300, 300)
    profile = ImageCms.ImageCmsProfile(io.BytesIO(printed.info["icc_profile"]))
    assert "sRGB" in ImageCms.getProfileDescription(profile)
    preview = Image.open(io.BytesIO(api.services.store.get(asset.preview_key)))
    assert max(preview.size) <= 800
    assert timeline(api, order_id) == ["order.received", "order.rendering", "asset.rendered",
                                       "order.ready_for_production"]


def test_a_poster_also_gets_a_lossless_pdf(api):
    order_id = place(api, sku="POSTER-INK-18X24", texts={"caption": "Hello"}, size=(1800, 2200))
    render(api, order_id)
    with api.services.engine.connect() as conn:
        pdf_key = conn.scalar(select(t.assets.c.pdf_key))
    assert api.services.store.get(pdf_key).startswith(b"%PDF")


def test_an_identical_design_is_rendered_once_and_served_from_the_cache(api):
    art = api.upload(png_bytes(2400, 1200))["id"]
    first, second = place(api, artwork_id=art), place(api, artwork_id=art)
    render(api, first)
    render(api, second)
    with api.services.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(t.assets)) == 1
        assert conn.scalar(select(t.assets.c.hits)) == 1
        assert len(set(conn.scalars(select(t.order_lines.c.asset_id)))) == 1
    assert order_row(api, second).status == OrderStatus.READY_FOR_PRODUCTION


def test_another_text_is_another_design(api):
    art = api.upload(png_bytes(2400, 1200))["id"]
    render(api, place(api, artwork_id=art, texts={"name": "Ada"}))
    render(api, place(api, artwork_id=art, texts={"name": "Grace"}))
    with api.services.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(t.assets)) == 2


def test_rendering_twice_is_harmless(api):
    order_id = place(api)
    assert render(api, order_id) == "rendered"
    assert render(api, order_id) == "skipped"
    assert timeline(api, order_id).count("order.ready_for_production") == 1


def test_missing_artwork_puts_the_order_on_hold_with_a_reason_and_an_alert(api):
    order_id = place(api)
    with api.services.engine.connect() as conn:
        key = conn.scalar(select(t.artworks.c.storage_key))
    api.services.store.delete_all_versions(key)
    assert render(api, order_id) == "held"
    row = order_row(api, order_id)
    assert (row.status, row.hold_reason, row.held_from) == ("on_hold", "artwork_missing", "rendering")
    assert timeline(api, order_id)[-1] == "order.on_hold"
    with api.services.engine.connect() as conn:
        alert = conn.execute(select(t.alerts)).one()
    assert alert.order_id == order_id and "artwork file is missing" in alert.message


def test_corrupt_artwork_puts_the_order_on_hold(api):
    order_id = place(api)
    with api.services.engine.connect() as conn:
        key = conn.scalar(select(t.artworks.c.storage_key))
    api.services.store.put(key, b"\x89PNG\r\n\x1a\n not really", content_type="image/png")
    assert render(api, order_id) == "held"
    assert order_row(api, order_id).hold_reason == "artwork_missing"


def test_a_transient_storage_error_propagates_so_the_actor_retries(api):
    from adapters.objectstore import S3Store, StorageUnavailable

    # given an order and an object store that does not answer (nothing listens on port 9)
    order_id = place(api)
    down = S3Store("pressroom", endpoint_url="http://127.0.0.1:9", access_key="x", secret_key="y")
    svc = api.services
    # when the render stage runs, the error propagates (Dramatiq retries it) and nothing is held
    with pytest.raises(StorageUnavailable):
        render_order(order_id, uow=svc.uow(), store=down, now=svc.now, clock=time.perf_counter)
    assert order_row(api, order_id).status == OrderStatus.RENDERING


def signed_get(api, asset_id: str, file: str, *, expires: int | None = None, tamper: bool = False):
    from core.signing import signed_asset_path

    path = signed_asset_path(api.services.settings.asset_url_secret, asset_id, file,
                             expires=expires or int(time.time()) + 60)
    if tamper:
        path = path[:-4] + ("0000" if not path.endswith("0000") else "1111")
    return api.client.get(path)


def test_a_signed_link_serves_the_print_file_and_records_how_long_retrieval_took(api):
    render(api, place(api))
    with api.services.engine.connect() as conn:
        asset = conn.execute(select(t.assets)).one()
    response = signed_get(api, asset.id, "print.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert len(response.content) == asset.bytes
    assert signed_get(api, asset.id, "preview").headers["content-type"].startswith("image/")
    with api.services.engine.connect() as conn:
        retrievals = conn.execute(select(t.asset_retrievals)).all()
    assert [(r.asset_id, r.file) for r in retrievals] == [(asset.id, "print.png"), (asset.id, "preview")]
    assert all(r.ms >= 0 for r in retrievals)


@pytest.mark.parametrize("how", ["tampered", "expired"])
def test_a_tampered_or_expired_link_is_refused(api, how):
    render(api, place(api))
    with api.services.engine.connect() as conn:
        asset_id = conn.scalar(select(t.assets.c.id))
    response = signed_get(api, asset_id, "print.png", tamper=how == "tampered",
                          expires=int(time.time()) - 1 if how == "expired" else None)
    assert response.status_code == 403


def test_a_mug_has_no_pdf_to_serve(api):
    render(api, place(api))
    with api.services.engine.connect() as conn:
        asset_id = conn.scalar(select(t.assets.c.id))
    assert signed_get(api, asset_id, "print.pdf").status_code == 404
