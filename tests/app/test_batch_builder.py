"""The batch builder and the partner panel as ops managers use them, on jobs made by the real pipeline."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select
from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

from adapters.broker import DramatiqBus
from app import actions
from core.commands import QUEUES, SubmitBatch, actor_name
from core.services import batches as b
from core.services.production import (
    ProductionRules,
    apply_partner_event,
    batch_ready_jobs,
    release,
    submit_batch,
)
from core.states import BatchStatus, Role
from db import tables as t
from tests.app.conftest import ENTRYPOINT, KEYS, ROOT, STAFF
from tests.app.helpers import open_page, reachable_pages, sign_in
from tests.conftest import ApiHarness
from tests.unit.test_batch_actions import place_and_route

# The express UK mug and eight high-value German mugs share Berlin's sublimation line in two batches.
ORDERS = (
    ("uk_express", "MUG-SUB-11OZ-WHT", 1, "GB", "express"),
    ("uk_standard", "MUG-SUB-11OZ-WHT", 2, "GB", "standard"),
    ("de_high_value", "MUG-SUB-15OZ-WHT", 8, "DE", "standard"),
)
PAGE = "batch_builder"


@dataclass
class Routed:
    orders: dict[str, str]
    url: str

    def rows(self, statement):
        import db

        engine = db.make_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(statement).all()
        finally:
            engine.dispose()

    def batch(self, region: str) -> str:
        bt = t.batches
        [row] = self.rows(select(bt.c.id).where(bt.c.region == region, bt.c.status == BatchStatus.OPEN))
        return row.id


@pytest.fixture(scope="module")
def _routed_dashboard(_dashboard_template, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The dashboard's template database plus three orders rendered, routed and batched by the services."""
    folder = tmp_path_factory.mktemp("batch_builder")
    path = folder / "routed.db"
    shutil.copy(_dashboard_template[0], path)
    api = ApiHarness(f"sqlite:///{path}", folder, blind_index_key=KEYS["PRESSROOM_BLIND_INDEX_KEY"])
    placed = place_and_route(api, ORDERS)
    assert batch_ready_jobs(api.services.uow(), now=datetime.now(UTC), rules=ProductionRules(),
                            new_id=api.services.ids.new) == []
    api.services.engine.dispose()
    return path, placed


@pytest.fixture
def routed(_routed_dashboard, database_url) -> Routed:
    shutil.copy(_routed_dashboard[0], make_url(database_url).database)
    return Routed(orders=_routed_dashboard[1], url=database_url)


@pytest.fixture
def broker(monkeypatch) -> StubBroker:
    """The dashboard's actions send through a StubBroker instead of Redis."""
    stub = StubBroker()
    for queue in QUEUES:
        stub.declare_queue(queue)
    monkeypatch.setattr(actions, "bus_override", DramatiqBus(stub))
    return stub


def signed_in(username: str, role: Role, page: str = PAGE) -> AppTest:
    at = AppTest.from_file(str(ENTRYPOINT), default_timeout=30).run()
    sign_in(at, username, STAFF[role]["password"])
    return open_page(at, page)


@pytest.fixture
def olive(routed, broker) -> AppTest:
    return signed_in("olive", Role.OPS_MANAGER)


def board(at: AppTest):
    return at.dataframe[0].value


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def test_an_ops_manager_sees_open_jobs_grouped_as_the_batcher_groups_them(olive, routed):
    assert not olive.exception and not olive.error
    rows = board(olive).set_index("region")
    assert rows.loc["uk", ["status", "partner", "product", "method", "size", "target"]].tolist() == [
        "open", "spree-berlin", "mug", "sublimation", 3, 30]  # target: 60 per hour × 30 minutes
    assert rows.loc["eu", "size"] == 8
    assert rows.loc["uk", "release_due"] == "" and rows.loc["uk", "capacity_h"] == 60
    assert rows.loc["uk", "priority"] > rows.loc["eu", "priority"]  # express goes first
    assert {routed.batch("uk"), routed.batch("eu")} == set(board(olive)["batch"])


@pytest.mark.parametrize("role", [Role.QA_INSPECTOR, Role.SUPPORT_AGENT])
def test_qa_inspectors_and_support_agents_cannot_open_the_batch_builder(routed, role):
    at = AppTest.from_file(str(ENTRYPOINT), default_timeout=30).run()
    sign_in(at, STAFF[role]["username"], STAFF[role]["password"])

    assert PAGE not in reachable_pages(at)
    direct = AppTest.from_file(str(ROOT / "pages" / f"{PAGE}.py"), default_timeout=30)
    direct.session_state["auth.user"] = STAFF[role]["username"]
    direct.run()
    assert "can't open this page" in direct.error[0].value
    assert not direct.dataframe and not direct.button


def test_a_release_click_releases_the_batch_and_queues_one_submit_batch_message(olive, routed, broker):
    batch_id = routed.batch("uk")

    olive.button(key=f"{PAGE}.release.{batch_id}").click().run()

    assert not olive.exception and not olive.error
    assert routed.rows(select(t.batches.c.status).where(t.batches.c.id == batch_id))[0][0] == BatchStatus.RELEASED
    messages = [Message.decode(data) for data in broker.queues[SubmitBatch.QUEUE].queue]
    assert [(m.actor_name, m.kwargs) for m in messages] == [(actor_name(SubmitBatch), {"batch_id": batch_id})]
    assert "released" in olive.toast[0].value
    assert batch_id not in set(board(olive)["batch"])  # gone from the open batches
    audit = routed.rows(select(t.audit_log.c.actor, t.audit_log.c.target_id)
                        .where(t.audit_log.c.action == b.RELEASE))
    assert [tuple(row) for row in audit] == [("olive", batch_id)]


def test_split_then_merge_from_the_page_keeps_every_job(olive, routed):
    de = routed.batch("eu")

    olive.number_input(key=f"{PAGE}.keep.{de}").set_value(3)
    olive.button(key=f"{PAGE}.split.{de}").click().run()

    assert not olive.error
    eu = board(olive)[board(olive)["region"] == "eu"]
    assert sorted(eu["size"]) == [3, 5]
    [tail] = [batch for batch in eu["batch"] if batch != de]
    olive.selectbox(key=f"{PAGE}.merge_from.{de}").set_value(tail)
    olive.button(key=f"{PAGE}.merge.{de}").click().run()
    eu = board(olive)[board(olive)["region"] == "eu"]
    assert eu["batch"].tolist() == [de] and eu["size"].tolist() == [8]
    assert routed.rows(select(t.batches.c.status).where(t.batches.c.id == tail))[0][0] == BatchStatus.CANCELLED


def test_a_refused_action_says_why_and_what_to_do_next(olive, routed):
    # given the UK batch released by someone else since the page was drawn
    batch_id = routed.batch("uk")
    olive.button(key=f"{PAGE}.hold.{batch_id}").click().run()
    other = signed_in("maya", Role.MANAGER)
    other.button(key=f"{PAGE}.release.{batch_id}").click().run()
    # when the ops manager tries to reprioritise it from their stale page
    olive.button(key=f"{PAGE}.reprioritise.{batch_id}").click().run()
    # then the page says it has gone to the partner and that nothing changed
    [error] = olive.error
    assert "is released" in error.value and "It has already gone to spree-berlin" in error.value
    assert error.value.endswith("Nothing was changed.")


def test_the_what_if_shows_shifted_starts_when_the_express_weight_changes_and_apply_saves_them(olive, routed):
    assert metrics(olive) == {"Jobs that would start earlier": "0", "Jobs that would start later": "0"}

    olive.slider(key=f"{PAGE}.rules.priority.express").set_value(1.0).run()

    # the UK batch (the express mug and two standard ones) loses its lead on Berlin's sublimation line to the
    # high-value German batch: its three jobs start later, the eight German mugs earlier
    assert metrics(olive) == {"Jobs that would start earlier": "8", "Jobs that would start later": "3"}
    shifts = olive.dataframe[-1].value
    assert (shifts["shift_min"] > 0).sum() == 3 and (shifts["shift_min"] < 0).sum() == 8
    assert olive.get("plotly_chart")
    olive.button(key=f"{PAGE}.apply").click().run()
    assert not olive.error
    assert "Production rules saved: 1 open job(s) re-scored" in olive.toast[0].value
    stored = routed.rows(select(t.settings.c.value).where(t.settings.c.key == b.RULES_KEY))[0][0]
    assert stored["priority"]["express"] == 1.0
    assert metrics(olive) == {"Jobs that would start earlier": "0", "Jobs that would start later": "0"}
    rows = board(olive).set_index("region")
    assert rows.loc["eu", "priority"] > rows.loc["uk", "priority"]


class AcceptingPartner:
    """Stands in for the partner HTTP client (the port's edge): accepts every job."""

    def submit_job(self, endpoint, body):
        from adapters.partners import PartnerJob

        return PartnerJob(id=f"pj-{body['external_id']}", external_id=body["external_id"], status="queued",
                          created=True)


def partner_event(api, job_id: str, status: str, at: datetime) -> None:
    body = json.dumps({"event_id": f"evt-{job_id}-{status}", "occurred_at": at.isoformat(),
                       "job": {"external_id": job_id, "status": status}})
    with api.services.uow() as uow:
        inbox_id = uow.inbox.receive(source="partner:spree-berlin", event_id=f"evt-{job_id}-{status}",
                                     topic=f"job.{status}", body=body, at=at)
        uow.commit()
    assert apply_partner_event(inbox_id, uow=api.services.uow(), now=at) == "applied"


def test_the_control_room_shows_partner_load_lag_and_on_time_starts(routed, tmp_path):
    # given the UK mugs submitted to Berlin six hours ago: one started printing after an hour (on time),
    # one was printed after five (late), one has not started yet (late, and the lag)
    api = ApiHarness(routed.url, tmp_path, blind_index_key=KEYS["PRESSROOM_BLIND_INDEX_KEY"])
    sent = datetime.now(UTC) - timedelta(hours=6)
    batch_id = routed.batch("uk")
    with api.services.uow() as uow:
        release(uow.batches.get(batch_id), uow=uow, at=sent, source="user:olive", reason="test")
        uow.commit()
    assert submit_batch(batch_id, uow=api.services.uow(), client=AcceptingPartner(), endpoint_for=lambda p: p,
                        file_url=lambda asset: "http://files", callback_url=lambda p: "http://cb",
                        now=lambda: sent) == "submitted"
    first, second, _third = [row.id for row in routed.rows(select(t.print_jobs.c.id)
                                                           .where(t.print_jobs.c.batch_id == batch_id)
                                                           .order_by(t.print_jobs.c.id))]
    partner_event(api, first, "printing", sent + timedelta(hours=1))
    partner_event(api, second, "printed", sent + timedelta(hours=5))
    api.services.engine.dispose()
    # when the ops manager opens the control room
    at = AppTest.from_file(str(ENTRYPOINT), default_timeout=30).run()
    sign_in(at, "olive", STAFF[Role.OPS_MANAGER]["password"])
    # then Berlin's row shows 2 jobs there (printing, waiting), a 6-hour lag and 1 of 3 started on time
    [panel] = [frame.value for frame in at.dataframe if "on_time" in frame.value.columns]
    berlin = panel.set_index("name").loc["Spree Druckerei"]
    assert berlin["in_flight"] == 2 and "sublimation 2/60" in berlin["by_method"]
    assert berlin["lag"] == "6.0 h"
    assert berlin["on_time"] == pytest.approx(1 / 3) and berlin["decided"] == 3
    assert panel.set_index("name").loc["Pacific Press", "in_flight"] == 0


def test_apply_saves_a_weight_moved_in_the_same_interaction_as_the_click(olive, routed):
    # a slider released and Apply clicked at once arrive in one rerun; the saved rules are the moved ones
    olive.slider(key=f"{PAGE}.rules.priority.express").set_value(0.75)
    olive.button(key=f"{PAGE}.apply").click().run()

    assert not olive.error
    stored = routed.rows(select(t.settings.c.value).where(t.settings.c.key == b.RULES_KEY))[0][0]
    assert stored["priority"]["express"] == 0.75
