"""The exception inbox and the order timeline's support buttons, as a support agent uses them, on entries the
real stages raised (an address the carrier sim refuses, a customer's change request) and real messages."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select
from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

import db
from adapters.broker import DramatiqBus
from adapters.carrier import EasyPostCarrier
from adapters.email import SmtpMailer
from adapters.objectstore import make_object_store
from adapters.payments import SimPayments
from adapters.sms import HttpSms
from app import actions, support
from core.commands import QUEUES, Address
from core.notifications import Channel, Milestone, notification_links
from core.services import exceptions as ex
from core.services.customer_changes import request_change
from core.services.notify import send_notification
from core.services.shipping import buy_label
from core.settings import Settings
from core.states import OrderStatus, Role
from db import tables as t
from sims.carrier import BackgroundServer, CarrierSimConfig
from sims.smtp_sink import SmtpSink
from tests.app.conftest import ENTRYPOINT, KEYS, ROOT, STAFF, TRACKING
from tests.app.helpers import open_page, reachable_pages, sign_in, unescaped

PAGE = "exception_inbox"
NOWHERE = Address(name="Ada Lovelace", line1="1 Nowhere Lane", city="Boston", region="MA", postal_code="2134",
                  country="US")
DELIVERABLE = {"name": "Ada Lovelace", "line1": "350 5th Ave", "line2": "", "city": "New York", "region": "NY",
               "postal_code": "10118", "country": "US"}
SHIP_FROM = Address(name="Pressroom Fulfilment", line1="55 Water St", city="Brooklyn", region="NY",
                    postal_code="11201", country="US")
REQUEST = "Please print 'Best Mum Ever' instead"


@pytest.fixture(scope="module")
def carrier_sim() -> Iterator[BackgroundServer]:
    with BackgroundServer(CarrierSimConfig(seed=5)) as server:
        yield server


@dataclass
class Inbox:
    """Ada's order held for an address the carrier cannot find; Grace's with a change request waiting."""

    url: str
    ada: str
    grace: str
    address_alert: int
    request_alert: int
    broker: StubBroker
    payments: SimPayments

    def rows(self, statement):
        engine = db.make_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(statement).all()
        finally:
            engine.dispose()

    def status(self, order_id: str) -> str:
        return self.rows(select(t.orders.c.status).where(t.orders.c.id == order_id))[0][0]

    def alert(self, alert_id: int):
        return self.rows(select(t.alerts).where(t.alerts.c.id == alert_id))[0]

    def audit(self, action: str) -> list[tuple]:
        return [tuple(r) for r in self.rows(select(t.audit_log.c.actor, t.audit_log.c.target_id)
                                            .where(t.audit_log.c.action == action).order_by(t.audit_log.c.id))]

    def queued(self, queue: str) -> list[dict]:
        import dramatiq

        return [dramatiq.Message.decode(m).kwargs for m in self.broker.queues[queue].queue]

    def uow(self) -> db.SqlUnitOfWork:
        engine = db.make_engine(self.url)
        return db.SqlUnitOfWork(db.make_session_factory(engine))


@pytest.fixture(scope="module")
def _inbox_template(_dashboard_template, tmp_path_factory, carrier_sim) -> tuple[Path, str, str]:
    folder = tmp_path_factory.mktemp("exception_inbox")
    path = folder / "inbox.db"
    shutil.copy(_dashboard_template[0], path)
    orders = _dashboard_template[1]
    url = f"sqlite:///{path}"
    settings = Settings.from_env({**KEYS, "DATABASE_URL": url, "OBJECT_STORE_DIR": str(folder / "objects")})
    db.configure(settings)
    engine = db.make_engine(url)
    uow = db.SqlUnitOfWork(db.make_session_factory(engine))
    now = datetime.now(UTC)
    with uow:  # Ada's order has passed QA, with a street the carrier cannot find
        order = uow.orders.get(orders.ada_id)
        order.shipping_address = NOWHERE
        for status in (OrderStatus.READY_FOR_PRODUCTION, OrderStatus.IN_PRODUCTION, OrderStatus.QA,
                       OrderStatus.READY_TO_SHIP):
            order.advance(status, at=now, source="test")
        uow.commit()
    carrier = EasyPostCarrier("EZTK_inbox_test", carrier_sim.api_base, timeout_s=5)
    assert buy_label(orders.ada_id, uow=uow, carrier=carrier, store=make_object_store(settings),
                     now=lambda: datetime.now(UTC), new_id=lambda p: f"{p}_inbox_test",
                     ship_from=SHIP_FROM) == "needs_address"
    with SmtpSink() as sink:  # Ada's "received" e-mail went out: a line support can resend
        mailer = SmtpMailer("127.0.0.1", sink.smtp_port, "Pressroom <orders@pressroom.dev>")
        assert send_notification(orders.ada_id, Milestone.RECEIVED, Channel.EMAIL, uow=uow, mailer=mailer,
                                 sms=HttpSms("http://127.0.0.1:1", "unused"),
                                 links=notification_links(settings, now=now), now=lambda: datetime.now(UTC)) == "sent"
        assert len(httpx.get(f"{sink.http_url}/messages").json()) == 1
    assert request_change(orders.grace_id, REQUEST, request_id="req-1", uow=uow,
                          now=datetime.now(UTC)) == "requested"
    engine.dispose()
    return path, orders.ada_id, orders.grace_id


@pytest.fixture
def inbox(_inbox_template, database_url, carrier_sim, monkeypatch) -> Inbox:
    path, ada, grace = _inbox_template
    shutil.copy(path, make_url(database_url).database)
    stub = StubBroker()
    for queue in QUEUES:
        stub.declare_queue(queue)
    payments = SimPayments()
    monkeypatch.setattr(actions, "bus_override", DramatiqBus(stub))
    monkeypatch.setattr(support, "carrier_override", EasyPostCarrier("EZTK_inbox_test", carrier_sim.api_base,
                                                                     timeout_s=5))
    monkeypatch.setattr(support, "payments_override", payments)
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        alerts = dict(conn.execute(select(t.alerts.c.kind, t.alerts.c.id)).all())
    engine.dispose()
    return Inbox(url=database_url, ada=ada, grace=grace, address_alert=alerts["address"],
                 request_alert=alerts["change_request"], broker=stub, payments=payments)


def signed_in(role: Role, page: str = PAGE) -> AppTest:
    at = AppTest.from_file(str(ENTRYPOINT), default_timeout=30).run()
    sign_in(at, STAFF[role]["username"], STAFF[role]["password"])
    return open_page(at, page)


@pytest.fixture
def sam(inbox) -> AppTest:
    return signed_in(Role.SUPPORT_AGENT)


def text(at: AppTest) -> str:
    return "\n".join(unescaped(m.value) for m in (*at.markdown, *at.caption))


def click(at: AppTest, action: str, alert_id: int) -> AppTest:
    return at.button(key=f"{PAGE}.{action}.{alert_id}").click().run()


def ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


# ---- the inbox -----------------------------------------------------------------------------------------------


def test_support_sees_open_exceptions_oldest_first_with_counts_and_suggested_actions(sam, inbox):
    ok(sam)
    assert {m.label: m.value for m in sam.metric} == {"Address problems": "1", "Parcel problems": "0",
                                                     "Failed notifications": "0", "Change requests": "1"}
    page = text(sam)
    assert page.index(f"#{inbox.address_alert}") < page.index(f"#{inbox.request_alert}")
    assert "cannot verify the shipping address" in page and REQUEST in page
    buttons = [b.key for b in sam.button if b.key and b.key.startswith(PAGE)]
    assert buttons == [f"{PAGE}.{a}.{inbox.address_alert}" for a in ("verify_address", "contact", "refund",
                                                                      "resolve")] + [
        f"{PAGE}.{a}.{inbox.request_alert}" for a in ("contact", "verify_address", "refund", "resolve")]
    # the address form starts from the order's address, for support to correct
    assert sam.text_input(key=f"{PAGE}.address.{inbox.address_alert}.line1").value == "1 Nowhere Lane"


def test_a_corrected_address_is_verified_the_order_released_and_the_entry_resolved(sam, inbox):
    for field, value in DELIVERABLE.items():
        sam.text_input(key=f"{PAGE}.address.{inbox.address_alert}.{field}").input(value)
    sam.text_input(key=f"{PAGE}.note.{inbox.address_alert}").input("customer phoned")
    click(sam, "verify_address", inbox.address_alert)

    ok(sam)
    assert "released" in sam.toast[0].value
    assert {m.label: m.value for m in sam.metric}["Address problems"] == "0"
    assert inbox.status(inbox.ada) == OrderStatus.READY_TO_SHIP
    assert {"order_id": inbox.ada} in inbox.queued("shipping")
    assert inbox.alert(inbox.address_alert).resolution == "verify_address"
    assert inbox.audit("exception.verify_address") == [("sam", str(inbox.address_alert))]


def test_an_address_the_carrier_still_refuses_says_why_changes_nothing_and_offers_its_suggestion(sam, inbox):
    click(sam, "verify_address", inbox.address_alert)  # the address as it is: still undeliverable

    [error] = sam.error
    assert "still cannot deliver" in error.value and "correct the address" in error.value
    assert inbox.status(inbox.ada) == OrderStatus.ON_HOLD and inbox.alert(inbox.address_alert).cleared_at is None
    assert inbox.audit("exception.verify_address") == []
    sam.button(key=f"{PAGE}.suggest.{inbox.address_alert}").click().run()
    assert sam.text_input(key=f"{PAGE}.address.{inbox.address_alert}.postal_code").value == "02134"


def test_resolving_needs_a_note_then_closes_the_entry_and_leaves_the_order_held(sam, inbox):
    click(sam, "resolve", inbox.address_alert)
    assert "Write a note" in sam.error[0].value and inbox.alert(inbox.address_alert).cleared_at is None

    sam.text_input(key=f"{PAGE}.note.{inbox.address_alert}").input("waiting for the customer's reply")
    click(sam, "resolve", inbox.address_alert)

    ok(sam)
    assert f"{PAGE}.resolve.{inbox.address_alert}" not in [b.key for b in sam.button]
    assert inbox.status(inbox.ada) == OrderStatus.ON_HOLD
    assert inbox.alert(inbox.address_alert).resolved_by == "sam"


def test_contacting_the_customer_about_a_change_request_sends_the_exception_message(sam, inbox):
    click(sam, "contact", inbox.request_alert)

    ok(sam)
    assert "on its way to the customer" in sam.toast[0].value
    sent = [m for m in inbox.queued("notify") if m["order_id"] == inbox.grace]
    # Grace gave no phone number: the e-mail only
    assert [(m["milestone"], m["channel"]) for m in sent] == [("exception", "email")]
    assert inbox.audit("exception.contact") == [("sam", str(inbox.request_alert))]


def test_a_refund_is_refused_for_an_order_that_is_not_on_hold(sam, inbox):
    click(sam, "refund", inbox.request_alert)

    assert "only an order on hold" in sam.error[0].value
    assert not inbox.payments.voided and inbox.alert(inbox.request_alert).cleared_at is None


def test_an_entry_someone_else_resolved_meanwhile_says_so_and_changes_nothing(sam, inbox):
    ex.resolve(inbox.request_alert, "answered by phone", uow=inbox.uow(), actor="olive", at=datetime.now(UTC))
    click(sam, "contact", inbox.request_alert)

    assert "already resolved by olive" in sam.error[0].value
    assert inbox.queued("notify") == [] and inbox.alert(inbox.request_alert).resolution == "resolve"


def test_a_user_whose_role_changed_mid_session_cannot_act_and_a_qa_inspector_cannot_open_the_inbox(sam, inbox):
    engine = db.make_engine(inbox.url)
    with engine.begin() as conn:
        conn.execute(t.staff_users.update().where(t.staff_users.c.username == "sam").values(role="qa_inspector"))
    engine.dispose()
    sam.text_input(key=f"{PAGE}.note.{inbox.address_alert}").input("done")
    click(sam, "resolve", inbox.address_alert)
    assert any("can't do this" in e.value for e in sam.error)
    assert inbox.alert(inbox.address_alert).cleared_at is None

    quinn = AppTest.from_file(str(ENTRYPOINT), default_timeout=30).run()
    sign_in(quinn, "quinn", STAFF[Role.QA_INSPECTOR]["password"])
    assert PAGE not in reachable_pages(quinn)
    direct = AppTest.from_file(str(ROOT / "pages" / f"{PAGE}.py"), default_timeout=30)
    direct.session_state["auth.user"] = "quinn"
    direct.run()
    assert "can't open this page" in direct.error[0].value and not direct.button


# ---- the order timeline: resend and cancel ---------------------------------------------------------------------


def timeline_of(inbox: Inbox, term: str) -> AppTest:
    at = signed_in(Role.SUPPORT_AGENT, "order_timeline")
    at.text_input(key="timeline.query").input(term).run()
    return at


def test_a_notification_line_has_a_resend_button_that_queues_the_message_again(inbox):
    at = timeline_of(inbox, inbox.ada)
    [resend] = [b for b in at.button if b.label == "Resend"]
    resend.click().run()

    ok(at)
    assert "queued again" in at.toast[0].value
    assert {"order_id": inbox.ada, "milestone": "received", "channel": "email", "resend": 1} in inbox.queued("notify")
    assert [actor for actor, _ in inbox.audit("notification.resend")] == ["sam"]


def test_a_resend_to_a_customer_who_opted_out_is_refused(inbox):
    at = timeline_of(inbox, inbox.ada)
    engine = db.make_engine(inbox.url)
    with engine.begin() as conn:
        customer = conn.scalar(select(t.orders.c.customer_id).where(t.orders.c.id == inbox.ada))
        conn.execute(t.customers.update().where(t.customers.c.id == customer).values(email_opt_out=True))
    engine.dispose()
    [resend] = [b for b in at.button if b.label == "Resend"]
    resend.click().run()

    assert "opted out" in at.error[0].value and inbox.queued("notify") == []


def test_support_cancels_an_order_before_the_gate_with_a_reason(inbox):
    at = timeline_of(inbox, inbox.grace)
    at.button(key="timeline.cancel").click().run()
    assert "Say why" in at.error[0].value and inbox.status(inbox.grace) == OrderStatus.ACCEPTED

    at.text_input(key="timeline.cancel_reason").input("customer asked by phone")
    at.button(key="timeline.cancel").click().run()

    ok(at)
    assert "cancelled" in at.toast[0].value
    assert inbox.status(inbox.grace) == OrderStatus.CANCELLED
    assert len(inbox.payments.voided) == 1
    assert inbox.audit("order.cancel") == [("sam", inbox.grace)]


def test_an_order_that_passed_the_gate_meanwhile_is_not_cancelled(inbox):
    at = timeline_of(inbox, inbox.grace)
    at.text_input(key="timeline.cancel_reason").input("customer asked by phone")
    with inbox.uow() as uow:  # the batch went to the partner while support was reading
        order = uow.orders.get(inbox.grace)
        for status in (OrderStatus.RENDERING, OrderStatus.READY_FOR_PRODUCTION, OrderStatus.IN_PRODUCTION):
            order.advance(status, at=datetime.now(UTC), source="test")
        uow.commit()
    at.button(key="timeline.cancel").click().run()

    assert "already in production" in at.error[0].value
    assert inbox.status(inbox.grace) == OrderStatus.IN_PRODUCTION and not inbox.payments.voided
    assert "timeline.cancel" not in [b.key for b in at.button]  # and the button is gone past the gate


def test_an_order_held_after_the_gate_offers_no_cancel(inbox):
    at = timeline_of(inbox, inbox.ada)
    ok(at)
    assert "timeline.cancel" not in [b.key for b in at.button]


@pytest.mark.parametrize("term", [TRACKING, TRACKING.lower(), f"  {TRACKING} "])
def test_order_search_finds_an_order_by_its_tracking_number(inbox, term):
    at = timeline_of(inbox, term)
    ok(at)
    assert at.radio(key="timeline.selected").value == inbox.ada
