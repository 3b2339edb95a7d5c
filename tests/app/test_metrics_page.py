"""The metrics page as a manager uses it: the guide's metrics with statuses and counts, the rows behind them,
filters, and CSV exports that hold exactly what the tables show; other roles are refused."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert
from streamlit.proto.Metric_pb2 import Metric
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from core.states import Role
from db import tables as t
from tests.app.conftest import ENTRYPOINT, ROOT, STAFF
from tests.app.helpers import open_page, reachable_pages, sign_in
from tests.integration.metrics_data import A, build

PAGE = "metrics"


@pytest.fixture
def day1(engine) -> datetime:
    """The hand-counted story (tests/integration/metrics_data.py) written three days ago."""
    first = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    build(engine, day1=first)
    return first


def as_(role: Role) -> AppTest:
    at = AppTest.from_file(str(ENTRYPOINT), default_timeout=60).run()
    sign_in(at, STAFF[role]["username"], STAFF[role]["password"])
    return open_page(at, PAGE)


def story_days(at: AppTest, day1: datetime, *, days: int = 2, partner: str | None = None) -> AppTest:
    at.date_input(key=f"{PAGE}.days").set_value((day1.date(), (day1 + timedelta(days=days - 1)).date()))
    if partner is not None:
        at.selectbox(key=f"{PAGE}.partner").set_value(partner)
    return at.run()


def metrics_table(at: AppTest) -> pd.DataFrame:
    [frame] = [f.value for f in at.dataframe if {"metric", "status", "counts"} <= set(f.value.columns)]
    return frame.set_index("metric")


def scorecard_table(at: AppTest) -> pd.DataFrame:
    [frame] = [f.value for f in at.dataframe if {"partner", "volume", "reprint_cost"} <= set(f.value.columns)]
    return frame


def plain(frame: pd.DataFrame) -> list[dict[str, str]]:
    """Rows as text, blanks for missing values: how a CSV and a shown table can be compared cell by cell."""
    return frame.astype(object).where(frame.notna(), "").astype(str).to_dict("records")


def series(values) -> list[float]:
    """A plotly trace's numbers (plotly 7 sends arrays as typed binary)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def opened(at: AppTest, title: str):
    [expander] = [e for e in at.expander if e.label.startswith(f"{title}:")]
    return expander


@pytest.fixture
def downloads(monkeypatch) -> dict[str, bytes]:
    """Every file the page offers for download, by its served name (the third-party media store, recorded)."""
    served: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        served[file_id] = path_or_data
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return served


def download(at: AppTest, served: dict[str, bytes], label: str) -> pd.DataFrame:
    """What the browser gets from the download button labelled `label`, read back as CSV."""
    [button] = [b for b in at.get("download_button") if b.proto.label == label]
    file_id = button.proto.url.rsplit("/", 1)[-1].split(".")[0]
    return pd.read_csv(io.BytesIO(served[file_id]))


@pytest.fixture
def maya(database_url, day1, downloads) -> AppTest:
    return story_days(as_(Role.MANAGER), day1)


def test_a_manager_sees_each_metric_with_its_value_target_status_and_counts(maya):
    assert not maya.exception and not maya.error
    shown = metrics_table(maya)
    assert shown.loc["Validation errors", ["value", "target", "status", "counts"]].tolist() == [
        "23.08 %", "< 1 %", "missed", "3 checkouts refused of 13 checkouts"]
    assert shown.loc["Asset generation success", ["status", "counts"]].tolist() == [
        "missed", "9 renders finished of 10 renders"]
    assert shown.loc["Print-file retrieval latency p95", ["value", "counts"]].tolist() == [
        "200 ms", "rank 20 of 21 downloads"]
    assert shown.loc["Queue lag p95 (worst stage)", ["value", "detail"]].tolist() == ["6.7 min", "worst: render"]
    assert shown.loc["Defect rate", "counts"] == "2 items failed of 4 items inspected"
    assert shown.loc["Label generation success", "counts"] == "3 labels bought of 4 label attempts"
    assert shown.loc["Notification delivery", "counts"] == "2 handed over of 4 due"
    tiles = {tile.label: (tile.value, tile.delta) for tile in maya.metric}
    assert tiles["Validation errors"] == ("23.08 %", "missed · target < 1 %")
    [validation] = [tile for tile in maya.metric if tile.label == "Validation errors"]
    assert Metric.MetricColor.Name(validation.proto.color) == "RED"
    assert validation.proto.icon == ":material/cancel:"


def test_the_csv_exports_parse_and_hold_exactly_what_the_tables_show(maya, downloads):
    exported = download(maya, downloads, "Download the metrics (CSV)")
    shown = metrics_table(maya).reset_index()
    assert plain(exported) == plain(shown)
    cards = download(maya, downloads, "Download the scorecards (CSV)")
    assert plain(cards) == plain(scorecard_table(maya)) and len(cards) == 5  # every partner
    acme = cards.set_index("partner").loc[A]
    assert (acme["volume"], acme["failed"], acme["reprints"], acme["reprint_cost"]) == (3, 2, 2, 18.0)


def test_each_metric_opens_to_how_it_is_computed_and_the_rows_that_missed(maya):
    renders = opened(maya, "Asset generation success")
    assert renders.caption[0].value.startswith("How it is computed: Render worker outcomes")
    assert renders.dataframe[0].value[["order_number", "reason"]].values.tolist() == [["PR-10", "render_failed"]]
    defects = opened(maya, "Defect rate").dataframe[0].value
    assert defects[["order_number", "reason"]].values.tolist() == [["PR-1", "colour_shift"],
                                                                   ["PR-1", "misregistration"]]
    labels = opened(maya, "Label generation success").dataframe[0].value
    assert labels["order_number"].tolist() == ["PR-4"]
    assert len(opened(maya, "Validation errors").dataframe[0].value) == 4  # one row per refusal reason


def test_the_partner_filter_narrows_production_metrics_only(maya, day1):
    story_days(maya, day1, partner=A)
    assert not maya.exception and not maya.error
    shown = metrics_table(maya)
    assert shown.loc["Defect rate", "counts"] == "2 items failed of 3 items inspected"
    assert shown.loc["Label generation success", "counts"] == "2 labels bought of 2 label attempts"
    assert shown.loc["Validation errors", "counts"] == "3 checkouts refused of 13 checkouts"
    assert "Not per partner" in opened(maya, "Validation errors").caption[1].value
    assert scorecard_table(maya)["partner"].tolist() == [A]


def test_the_date_filter_keeps_only_the_days_chosen(maya, day1):
    story_days(maya, day1, days=1)
    shown = metrics_table(maya)
    assert shown.loc["Validation errors", "counts"] == "2 checkouts refused of 8 checkouts"
    assert shown.loc["Asset generation success", ["value", "status"]].tolist() == ["100 %", "met"]
    [renders] = [tile for tile in maya.metric if tile.label == "Asset generation success"]
    assert (Metric.MetricColor.Name(renders.proto.color), renders.proto.icon) == ("GREEN", ":material/check_circle:")
    assert shown.loc["Label generation success", ["value", "status"]].tolist() == ["–", "no data"]


def test_trends_plot_the_metric_per_day_and_per_hour_against_its_target(maya):
    [chart] = maya.get("plotly_chart")
    figure = json.loads(chart.proto.spec)
    [line] = figure["data"]
    assert series(line["y"]) == pytest.approx([25.0, 20.0])  # 2 of 8 checkouts refused on day 1, 1 of 5 on day 2
    assert figure["layout"]["shapes"][0]["y0"] == pytest.approx(1.0)  # the target line at 1 %
    maya.radio(key=f"{PAGE}.grain").set_value("hour").run()
    assert not maya.exception
    [line] = json.loads(maya.get("plotly_chart")[0].proto.spec)["data"]
    assert series(line["y"]) == pytest.approx([0.0, 100.0, 100.0, 0.0])
    maya.selectbox(key=f"{PAGE}.trend").set_value("queue_lag_p95").run()
    assert {trace["name"] for trace in json.loads(maya.get("plotly_chart")[0].proto.spec)["data"]} == {"qa", "render"}


def test_stage_latency_and_queue_lag_are_shown_per_stage(maya):
    stages = [f.value for f in maya.dataframe if "p95 vs deadline" in f.value.columns][0].set_index("stage")
    assert stages.loc["ready_for_production", "deadline_min"] == 45.0
    queues = [f.value for f in maya.dataframe if "p99 status" in f.value.columns][0].set_index("queue")
    assert queues.loc["render", ["samples", "p95_s", "p95 status"]].tolist() == [4, 400.0, "missed"]
    assert queues.loc["qa", "p95 status"] == "met"


def test_a_broken_target_document_is_reported_instead_of_judging_against_it(database_url, day1, engine):
    with engine.begin() as conn:
        conn.execute(insert(t.settings).values(key="metric_targets", value={"defect_rate": {"warn": 0.5}},
                                               updated_at=datetime.now(UTC), updated_by="maya"))
    at = story_days(as_(Role.MANAGER), day1)
    assert "must not be above its goal" in at.error[0].value
    assert not [f for f in at.dataframe if "metric" in f.value.columns]


@pytest.mark.parametrize("role", [Role.QA_INSPECTOR, Role.SUPPORT_AGENT])
def test_qa_inspectors_and_support_agents_cannot_open_the_metrics(database_url, role):
    at = AppTest.from_file(str(ENTRYPOINT), default_timeout=60).run()
    sign_in(at, STAFF[role]["username"], STAFF[role]["password"])
    assert PAGE not in reachable_pages(at)
    direct = AppTest.from_file(str(ROOT / "pages" / f"{PAGE}.py"), default_timeout=60)
    direct.session_state["auth.user"] = STAFF[role]["username"]
    direct.run()
    assert "can't open this page" in direct.error[0].value
    assert not direct.dataframe and not direct.metric


def test_an_ops_manager_may_read_the_metrics_too(database_url, day1):
    at = story_days(as_(Role.OPS_MANAGER), day1)
    assert not at.exception and not at.error and metrics_table(at).shape[0] == 9
