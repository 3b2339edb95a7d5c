"""Templates are versioned data: an order re-renders identically from its pinned version after an edit."""

from __future__ import annotations

import copy
import time

from sqlalchemy import select

from core.services.render import render_order
from core.templates import diff_specs
from db import tables as t
from tests.unit.test_render_stage import place


def current_spec(api, key: str) -> dict:
    with api.services.uow() as uow:
        version = uow.session.scalar(select(t.templates.c.current_version).where(t.templates.c.key == key))
        return uow.templates.spec(key, version)


def test_the_diff_names_each_changed_leaf_with_its_path():
    old = {"dpi": 300, "texts": [{"name": "name", "size_pt": [24, 80]}], "artwork": {"fit": "fill"}}
    new = {"dpi": 300, "texts": [{"name": "name", "size_pt": [30, 80]}], "artwork": {"fit": "fit"}, "bg": "#fff"}
    changes = {(c.path, c.kind): (c.before, c.after) for c in diff_specs(old, new)}
    assert changes == {("artwork.fit", "changed"): ("fill", "fit"), ("bg", "added"): (None, "#fff"),
                       ("texts[0].size_pt", "changed"): ([24, 80], [30, 80])}


def test_an_edit_creates_a_new_version_and_old_orders_re_render_identically(api):
    svc = api.services
    # given an order accepted and rendered with mug-wrap v1
    art = api.upload()["id"]
    first = place(api, artwork_id=art)
    render_order(first, uow=svc.uow(), store=svc.store, now=svc.now, clock=time.perf_counter)
    with svc.engine.connect() as conn:
        v1_sha = conn.scalar(select(t.assets.c.sha256))
        v1_key = conn.scalar(select(t.assets.c.print_file_key))
    # when a manager edits the template (red name text)
    spec = copy.deepcopy(current_spec(api, "mug-wrap"))
    spec["texts"][0]["colour"] = "#cc0000"
    with svc.uow() as uow:
        version = uow.templates.add_version(key="mug-wrap", spec=spec, author="maya", note="red names",
                                            at=svc.now())
        uow.commit()
    assert version == 2
    # then the old order still points at v1, and re-rendering v1 from scratch gives the same bytes
    with svc.engine.connect() as conn:
        assert conn.scalar(select(t.order_lines.c.template_version).where(t.order_lines.c.order_id == first)) == 1
        conn.execute(t.assets.delete())
        conn.commit()
    svc.store.delete_all_versions(v1_key)
    with svc.engine.begin() as conn:
        conn.execute(t.order_lines.update().values(asset_id=None))
        conn.execute(t.orders.update().where(t.orders.c.id == first).values(status="rendering"))
    render_order(first, uow=svc.uow(), store=svc.store, now=svc.now, clock=time.perf_counter)
    with svc.engine.connect() as conn:
        assert conn.scalar(select(t.assets.c.sha256)) == v1_sha
    # and a new order with the same design is pinned to v2 and renders differently
    second = place(api, artwork_id=art)
    render_order(second, uow=svc.uow(), store=svc.store, now=svc.now, clock=time.perf_counter)
    with svc.engine.connect() as conn:
        assert conn.scalar(select(t.order_lines.c.template_version).where(t.order_lines.c.order_id == second)) == 2
        assert len(set(conn.scalars(select(t.assets.c.sha256)))) == 2
