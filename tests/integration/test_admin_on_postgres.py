"""Admin changes on PostgreSQL: intake reads a new prohibited word at once; two managers never remove the last one."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import select

import db
from adapters.passwords import hash_password
from core.errors import PressroomError
from core.services import admin as a
from core.states import Role
from db import tables as t
from tests.conftest import ApiHarness

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_a_word_added_by_a_manager_is_refused_by_the_running_api_at_the_next_checkout(pg_url, tmp_path):
    api = ApiHarness(pg_url, tmp_path)
    body = api.order_body(api.upload()["id"])
    body["lines"][0]["texts"] = {"headline": "Zorblax Rules"}
    assert api.client.post("/v1/orders", json=api.order_body(api.upload()["id"])).status_code == 201  # warm

    a.add_prohibited_word("zorblax", uow=api.services.uow(), actor="maya", at=AT)
    response = api.client.post("/v1/orders", json=body)

    assert response.status_code == 422
    assert [e["code"] for e in response.json()["errors"]] == ["prohibited_word"]
    api.services.engine.dispose()


def test_two_managers_demoting_each_other_at_once_leave_one_manager(pg_url):
    engine = db.make_engine(pg_url)
    factory = db.make_session_factory(engine)
    a.create_user("morgan", "manager", "Blue-Heron-Press-42", uow=db.SqlUnitOfWork(factory), actor="maya", at=AT,
                  hash_password=hash_password)
    start, outcomes = threading.Barrier(2), {}

    def demote(actor: str, target: str) -> None:
        start.wait()
        try:
            a.change_role(target, "ops_manager", uow=db.SqlUnitOfWork(factory), actor=actor, at=AT)
            outcomes[actor] = "done"
        except PressroomError as error:
            outcomes[actor] = error.message

    threads = [threading.Thread(target=demote, args=pair) for pair in (("maya", "morgan"), ("morgan", "maya"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with engine.connect() as conn:
        managers = conn.scalars(select(t.staff_users.c.username).where(t.staff_users.c.role == Role.MANAGER)).all()
    assert len(managers) == 1
    assert sorted(outcomes.values())[0] == "done" and "is the last active manager" in sorted(outcomes.values())[1]
    engine.dispose()
