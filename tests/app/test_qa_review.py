"""The QA review page as an inspector uses it, on needs-review items made by the real QA stage."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select
from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

import db
from adapters.broker import DramatiqBus
from adapters.ids import TimeOrderedIds
from app import actions
from core.commands import QUEUES
from core.services.qa import QaRules, apply_due_verdicts, inspect_job
from core.states import DefectReason, InspectionStatus, JobStatus, OrderStatus, Role
from db import tables as t
from tests.app.conftest import ENTRYPOINT, KEYS, ROOT, STAFF
from tests.app.helpers import open_page, reachable_pages, sign_in
from tests.conftest import ApiHarness
from tests.unit.test_qa_stage import camera, printed_order

PAGE = "qa_review"


@dataclass
class Reviews:
    """Two printed orders whose inspections wait for a human (the first prints of a new template version)."""

    orders: list[str]
    inspections: list[str]
    url: str

    def rows(self, statement):
        engine = db.make_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(statement).all()
        finally:
            engine.dispose()

    def order_status(self, order_id: str) -> str:
        return self.rows(select(t.orders.c.status).where(t.orders.c.id == order_id))[0][0]

    def inspection_status(self, inspection_id: str) -> str:
        return self.rows(select(t.inspections.c.status).where(t.inspections.c.id == inspection_id))[0][0]

    def after_the_undo_window(self) -> int:
        """The scheduler's beat once the inspectors' undo window has passed: their verdicts take effect."""
        engine = db.make_engine(self.url)
        try:
            rules = QaRules()
            later = datetime.now(UTC) + timedelta(seconds=rules.undo_window_s + 1)
            return apply_due_verdicts(uow=db.SqlUnitOfWork(db.make_session_factory(engine), None), now=later,
                                      new_id=TimeOrderedIds().new, rules=rules)
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def _reviews_template(_dashboard_template, tmp_path_factory) -> tuple[Path, Path, list[str], list[str]]:
    folder = tmp_path_factory.mktemp("qa_review")
    path = folder / "reviews.db"
    shutil.copy(_dashboard_template[0], path)
    api = ApiHarness(f"sqlite:///{path}", folder, blind_index_key=KEYS["PRESSROOM_BLIND_INDEX_KEY"])
    orders = []
    for _ in range(2):
        order_id, job_id = printed_order(api)
        svc = api.services
        assert inspect_job(job_id, uow=svc.uow(), store=svc.store, fetch_photo=camera(api, job_id, None),
                           new_id=svc.ids.new, now=svc.now, rules=QaRules()) == "review"
        orders.append(order_id)
    with api.services.engine.connect() as conn:
        inspections = list(conn.scalars(select(t.inspections.c.id).order_by(t.inspections.c.created_at)))
    api.services.engine.dispose()
    return path, folder / "objects", orders, inspections


@pytest.fixture
def reviews(_reviews_template, database_url, monkeypatch) -> Reviews:
    path, objects, orders, inspections = _reviews_template
    shutil.copy(path, make_url(database_url).database)
    monkeypatch.setenv("OBJECT_STORE_DIR", str(objects))
    return Reviews(orders=orders, inspections=inspections, url=database_url)


@pytest.fixture
def broker(monkeypatch) -> StubBroker:
    stub = StubBroker()
    for queue in QUEUES:
        stub.declare_queue(queue)
    monkeypatch.setattr(actions, "bus_override", DramatiqBus(stub))
    return stub


@pytest.fixture
def quinn(reviews, broker) -> AppTest:
    at = AppTest.from_file(str(ENTRYPOINT), default_timeout=30).run()
    sign_in(at, "quinn", STAFF[Role.QA_INSPECTOR]["password"])
    return open_page(at, PAGE)


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def test_an_inspector_sees_the_queue_oldest_first_with_the_pictures_side_by_side(quinn, reviews):
    assert not quinn.exception and not quinn.error
    assert metrics(quinn) == {"Waiting for review": "2", "Decided today": "0"}
    assert "new template: 2" in quinn.markdown[0].value.replace("\\", "")
    assert quinn.selectbox(key=f"{PAGE}.selected").value == reviews.inspections[0]
    assert len(quinn.get("image")) == 2
    quinn.toggle(key=f"{PAGE}.heatmap").set_value(True)
    quinn.toggle(key=f"{PAGE}.zoom").set_value(True)
    quinn.slider(key=f"{PAGE}.blend").set_value(50).run()
    assert not quinn.exception and not quinn.error and len(quinn.get("image")) == 2


def test_approving_passes_the_item_readies_the_order_and_selects_the_next(quinn, reviews):
    quinn.button(key=f"{PAGE}.approve").click().run()

    assert not quinn.exception and not quinn.error
    assert "Approved" in quinn.toast[0].value
    assert metrics(quinn) == {"Waiting for review": "1", "Decided today": "1"}
    assert quinn.selectbox(key=f"{PAGE}.selected").value == reviews.inspections[1]
    assert quinn.button(key=f"{PAGE}.undo.{reviews.inspections[0]}"), "the verdict can be undone for a while"
    assert reviews.after_the_undo_window() == 1
    assert reviews.inspection_status(reviews.inspections[0]) == InspectionStatus.PASSED
    assert reviews.order_status(reviews.orders[0]) == OrderStatus.READY_TO_SHIP
    audit = reviews.rows(select(t.audit_log.c.actor, t.audit_log.c.target_id)
                         .where(t.audit_log.c.action == "qa.approve"))
    assert [tuple(row) for row in audit] == [("quinn", reviews.inspections[0])]


def test_rejecting_with_a_reason_orders_a_reprint_with_that_reason(quinn, reviews):
    first = reviews.inspections[0]
    quinn.selectbox(key=f"{PAGE}.reason.{first}").set_value(DefectReason.INK_BLOT)
    quinn.button(key=f"{PAGE}.reject").click().run()

    assert not quinn.exception and not quinn.error
    reviews.after_the_undo_window()
    assert reviews.inspection_status(first) == InspectionStatus.FAILED
    jobs = reviews.rows(select(t.print_jobs.c.status, t.print_jobs.c.attempt, t.print_jobs.c.reason_code)
                        .where(t.print_jobs.c.order_id == reviews.orders[0]).order_by(t.print_jobs.c.attempt))
    assert [tuple(job) for job in jobs] == [(JobStatus.QA_FAILED, 1, None), (JobStatus.PENDING, 2, "ink_blot")]
    assert reviews.order_status(reviews.orders[0]) == OrderStatus.IN_PRODUCTION


def test_an_inspector_undoes_a_verdict_and_the_item_returns_to_the_queue_unchanged(quinn, reviews):
    first = reviews.inspections[0]
    quinn.button(key=f"{PAGE}.approve").click().run()
    quinn.button(key=f"{PAGE}.undo.{first}").click().run()

    assert not quinn.exception and not quinn.error
    assert "back in the queue" in quinn.toast[0].value
    assert metrics(quinn) == {"Waiting for review": "2", "Decided today": "0"}
    assert f"{PAGE}.undo.{first}" not in [button.key for button in quinn.button]
    assert reviews.after_the_undo_window() == 0
    assert reviews.inspection_status(first) == InspectionStatus.NEEDS_REVIEW
    assert reviews.order_status(reviews.orders[0]) == OrderStatus.QA
    audit = reviews.rows(select(t.audit_log.c.action).where(t.audit_log.c.target_id == first)
                         .order_by(t.audit_log.c.id))
    assert [action for (action,) in audit] == ["qa.approve", "qa.undo"]


def test_a_rejection_without_a_reason_code_says_what_to_do_and_changes_nothing(quinn, reviews):
    quinn.button(key=f"{PAGE}.reject").click().run()

    [error] = quinn.error
    assert "Choose a reason code" in error.value
    assert reviews.inspection_status(reviews.inspections[0]) == InspectionStatus.NEEDS_REVIEW


def test_a_support_agent_cannot_open_the_qa_review_page(reviews):
    at = AppTest.from_file(str(ENTRYPOINT), default_timeout=30).run()
    sign_in(at, "sam", STAFF[Role.SUPPORT_AGENT]["password"])

    assert PAGE not in reachable_pages(at)
    direct = AppTest.from_file(str(ROOT / "pages" / f"{PAGE}.py"), default_timeout=30)
    direct.session_state["auth.user"] = STAFF[Role.SUPPORT_AGENT]["username"]
    direct.run()
    assert "can't open this page" in direct.error[0].value
    assert not direct.button and not direct.metric
