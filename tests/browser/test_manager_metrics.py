"""A manager in the browser: opens the success metrics and exports them as CSV."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from db import tables as t
from tests.browser.dashboard import IDLE, open_page, sign_in

pytestmark = pytest.mark.browser
METRICS = ("Validation errors", "Asset generation success", "On-time production start", "Defect rate",
           "Label generation success")
"""Some of the source guide's success metrics (core/metrics.py), as the page and the export name them."""


def test_a_manager_opens_the_metrics_and_exports_them_as_csv(page, world, shots):
    # given maya (manager) signed in, with orders rendered, printed, inspected and shipped this session
    sign_in(page, world.system.dashboard_url, "maya", landing="order_timeline")

    # when she opens the metrics page
    open_page(page, "Metrics")
    main = page.get_by_role("main")
    # then each success metric is there
    for title in METRICS:
        expect(main.get_by_text(title).first).to_be_visible()
    shots(page, "metrics")

    # when she clicks the CSV export
    export = main.get_by_test_id("stDownloadButton").filter(has_text=re.compile("CSV", re.IGNORECASE)).first
    for _ in range(2):  # a run still going when the button is clicked can replace the file it links to
        page.locator(IDLE).wait_for()
        with page.expect_download() as download:
            export.click()
        saved = download.value.path()
        if saved.read_text(encoding="utf-8").startswith("metric"):
            break
    shots(page, "exported")

    # then she gets a CSV file with one row per metric: its value, target, status and the counts behind it
    assert download.value.suggested_filename.endswith(".csv")
    rows = {row["metric"]: row for row in csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8")))}
    assert set(METRICS) <= set(rows), sorted(rows)
    for title in METRICS:
        assert {"value", "target", "status", "numerator", "denominator"} <= set(rows[title]), rows[title]
        # and the figure on the page is the one exported
        tile = main.get_by_test_id("stMetric").filter(has_text=title)
        expect(tile).to_contain_text(rows[title]["value"])
    # and the numbers trace back to this session's orders: every one was checked out and rendered
    orders = world.scalar(select(func.count()).select_from(t.orders))
    generation, checkouts = rows["Asset generation success"], rows["Validation errors"]
    assert (generation["numerator"], generation["denominator"], generation["status"]) == (
        str(orders), str(orders), "met"), generation
    assert (checkouts["numerator"], checkouts["denominator"], checkouts["status"]) == (
        "0", str(orders), "met"), checkouts
