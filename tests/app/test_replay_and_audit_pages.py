"""The replay console and the audit log as ops managers and managers use them (real Redis dead letters, the
dashboard's SQLite database), and a support agent kept out of both."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import dramatiq
import pytest
import redis
from dramatiq import Message
from sqlalchemy import insert, select, update
from streamlit.testing.v1 import AppTest

from adapters.broker import make_broker
from core.settings import Settings
from core.states import Role
from db import tables as t
from tests.app.conftest import ENTRYPOINT, KEYS, ROOT, STAFF
from tests.app.helpers import open_page, reachable_pages, sign_in, texts, unescaped
from tests.conftest import REDIS_URL

CONSOLE, AUDIT = "replay_console", "audit_log"
NOW = datetime.now(UTC)


@pytest.fixture
def broker_redis(redis_url, database_url, monkeypatch) -> redis.Redis:
    """The dashboard's REDIS_URL is the test Redis (emptied); its actions send through the real Redis broker."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setattr(dramatiq.broker, "global_broker", dramatiq.broker.global_broker)  # restored after
    return redis.Redis.from_url(redis_url)


def dead_letter(order_id: str) -> str:
    """A render that used up its retries, dead-lettered by Dramatiq's own Redis commands (enqueue, fetch, nack)."""
    broker = make_broker(Settings.from_env({**KEYS, "REDIS_URL": REDIS_URL}))
    redis_id = str(uuid.uuid4())
    message = Message(queue_name="render", actor_name="render.render_asset", args=(), kwargs={"order_id": order_id},
                      options={"redis_message_id": redis_id, "retries": 8, "max_retries": 8,
                               "traceback": "Traceback (most recent call last):\n  ...\n"
                                            "core.errors.StorageUnavailable: object store down\n"})
    broker.do_enqueue("render", redis_id, message.encode())
    assert len(broker.do_fetch("render", 1)) == 1
    broker.do_nack("render", redis_id)
    broker.close()
    return f"dlq:render:{redis_id}"


def failed_webhook(engine) -> str:
    """A partner's job.status event we could not match to a job an hour ago (rejected)."""
    body = json.dumps({"event_id": "evt_lost", "type": "job.status",
                       "job": {"external_id": "job_x", "status": "queued"}})
    with engine.begin() as conn:
        conn.execute(insert(t.webhook_inbox).values(
            source="partner:inkhaus", event_id="evt_lost", topic="job.status", body=body,
            received_at=NOW - timedelta(hours=1), processed_at=NOW - timedelta(minutes=59), status="rejected",
            error="unknown job"))
        return f"inbox:{conn.scalar(select(t.webhook_inbox.c.id))}"


def signed_in(role: Role, page: str) -> AppTest:
    at = AppTest.from_file(str(ENTRYPOINT), default_timeout=30).run()
    sign_in(at, STAFF[role]["username"], STAFF[role]["password"])
    return open_page(at, page)


def listed(at: AppTest):
    return at.dataframe[0].value  # the list; the dry run's plan is the second table


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def test_an_ops_manager_lists_dry_runs_and_replays_failed_work_once_audited(broker_redis, engine, orders):
    # given a dead-lettered render and a rejected partner webhook
    letter, webhook = dead_letter(orders.ada_id), failed_webhook(engine)
    olive = signed_in(Role.OPS_MANAGER, CONSOLE)
    assert not olive.exception and not olive.error
    # then both are listed, with their stage, actor and error, and would be replayed
    rows = listed(olive).set_index("key")
    assert rows.loc[letter, ["stage", "actor", "error", "replay"]].tolist() == [
        "render", "render.render_asset", "core.errors.StorageUnavailable: object store down", "yes"]
    assert rows.loc[webhook, ["stage", "actor", "source", "error"]].tolist() == [
        "webhooks", "webhooks.apply_partner_event", "partner:inkhaus", "unknown job"]

    # when she narrows to the render stage, then only the dead letter is left; the partner filter the reverse
    olive.multiselect(key=f"{CONSOLE}.stages").set_value(["render"]).run()
    assert listed(olive)["key"].tolist() == [letter]
    olive.multiselect(key=f"{CONSOLE}.stages").set_value([]).run()
    olive.text_input(key=f"{CONSOLE}.source").input("inkhaus").run()
    assert listed(olive)["key"].tolist() == [webhook]
    olive.text_input(key=f"{CONSOLE}.source").input("").run()

    # when she dry-runs, then it shows exactly what a replay would do, and nothing has moved
    olive.button(key=f"{CONSOLE}.dry_run").click().run()
    assert metrics(olive) == {"Would replay": "2", "Dead letters back on their queue": "1",
                              "Webhooks re-applied": "1"}
    assert sorted(olive.dataframe[1].value["key"]) == sorted([letter, webhook])
    assert broker_redis.zcard("dramatiq:render.XQ") == 1

    # when she replays
    olive.button(key=f"{CONSOLE}.replay").click().run()
    # then the render is back on its queue (off the dead letters), the webhook's apply command is queued
    assert not olive.exception and not olive.error
    assert "Replayed 1 dead letter(s) and re-applied 1 webhook(s)" in olive.toast[0].value
    assert broker_redis.zcard("dramatiq:render.XQ") == 0
    queued = {q: [json.loads(broker_redis.hget(f"dramatiq:{q}.msgs", i))
                  for i in broker_redis.lrange(f"dramatiq:{q}", 0, -1)] for q in ("render", "webhooks")}
    assert [(m["actor_name"], m["kwargs"], m["options"]["replays"]) for m in queued["render"]] == [
        ("render.render_asset", {"order_id": orders.ada_id}, 1)]
    assert [(m["actor_name"], m["kwargs"]) for m in queued["webhooks"]] == [
        ("webhooks.apply_partner_event", {"inbox_id": int(webhook.split(":")[1])})]
    # and a second replay would do nothing: the dead letter is gone, the webhook is being applied
    assert listed(olive)[["key", "replay"]].values.tolist() == [
        [webhook, "being applied right now (re-driven moments ago)"]]
    assert metrics(olive)["Would replay"] == "0"
    assert olive.button(key=f"{CONSOLE}.replay").disabled
    # and the replay is in the audit log, by her, with what it replayed
    with engine.connect() as conn:
        [row] = conn.execute(select(t.audit_log).where(t.audit_log.c.action == "replay.run")).all()
    assert (row.actor, row.after["dead_letters"], row.after["webhooks"]) == ("olive", 1, 1)
    assert sorted(item["key"] for item in row.before["items"]) == sorted([letter, webhook])


def test_a_contradictory_age_filter_says_what_to_fix_and_lists_nothing(broker_redis, engine, orders):
    dead_letter(orders.ada_id)
    olive = signed_in(Role.OPS_MANAGER, CONSOLE)
    olive.number_input(key=f"{CONSOLE}.min_age").set_value(60.0).run()
    olive.number_input(key=f"{CONSOLE}.max_age").set_value(10.0).run()
    [error] = olive.error
    assert "minimum age is above the maximum" in error.value and "Nothing is listed" in error.value
    assert not olive.dataframe


def test_when_redis_does_not_answer_the_console_says_so_and_still_lists_failed_webhooks(database_url, engine,
                                                                                        monkeypatch):
    webhook = failed_webhook(engine)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")  # nothing listens on the discard port
    olive = signed_in(Role.OPS_MANAGER, CONSOLE)
    [warning] = olive.warning
    assert "The broker's Redis did not answer" in warning.value and "dead letters" in warning.value
    assert not olive.exception and not olive.error
    assert listed(olive)["key"].tolist() == [webhook]
    # and a replay now is refused before anything changes: it can't see the dead letters it would move
    olive.button(key=f"{CONSOLE}.dry_run").click().run()
    olive.button(key=f"{CONSOLE}.replay").click().run()
    assert any("did not answer" in e.value for e in olive.error)
    with engine.connect() as conn:
        assert conn.scalar(select(t.webhook_inbox.c.status)) == "rejected"
        assert conn.execute(select(t.audit_log).where(t.audit_log.c.action == "replay.run")).all() == []


# ---- audit log ------------------------------------------------------------------------------------------------


def audit(engine, *rows: dict) -> None:
    with engine.begin() as conn:
        conn.execute(insert(t.audit_log), [{"order_id": None, "before": None, "after": None} | row for row in rows])


@pytest.fixture
def history(engine, orders) -> None:
    audit(engine,
          {"at": NOW - timedelta(days=3), "actor": "olive", "action": "batch.hold", "target_type": "batch",
           "target_id": "bat_old", "before": {"status": "open", "size": 4}, "after": {"status": "held", "size": 4}},
          {"at": NOW - timedelta(hours=2), "actor": "quinn", "action": "qa.approve", "target_type": "inspection",
           "target_id": "ins_1", "order_id": orders.ada_id, "before": {"status": "needs_review"},
           "after": {"verdict": "approve", "reason": None}},
          {"at": NOW - timedelta(minutes=5), "actor": "olive", "action": "batch.release", "target_type": "batch",
           "target_id": "bat_new", "before": {"status": "open"}, "after": {"status": "released"}})


def table(at: AppTest):
    return at.dataframe[0].value  # then one diff table per row, in the same order


def staff_actions(at: AppTest) -> list[str]:
    """The actions listed, without the sign-ins (signing in to look is itself audited)."""
    return [action for action in table(at)["action"] if not action.startswith("auth.")]


def test_a_manager_searches_the_audit_log_newest_first_with_each_change_as_a_diff(database_url, history, orders):
    maya = signed_in(Role.MANAGER, AUDIT)
    assert not maya.exception and not maya.error
    assert staff_actions(maya) == ["batch.release", "qa.approve", "batch.hold"]
    assert table(maya)["action"].tolist()[0] == "auth.login"  # her own sign-in, a moment ago
    rows = table(maya).set_index("action")
    assert rows.loc["qa.approve", "order_number"] == orders.ada_number
    # each row opens on its diff: what changed, from what to what
    hold = maya.dataframe[1 + table(maya)["action"].tolist().index("batch.hold")].value
    assert hold.to_dict("records") == [{"field": "status", "change": "changed", "before": "open", "after": "held"}]

    searches = {f"{AUDIT}.actor": ("OLIVE", ["batch.release", "batch.hold"]),
                f"{AUDIT}.action": ("qa.", ["qa.approve"]),
                f"{AUDIT}.target": ("bat_old", ["batch.hold"]),
                f"{AUDIT}.order": (orders.ada_number.lower(), ["qa.approve"])}
    for key, (term, expected) in searches.items():
        maya.text_input(key=key).input(term).run()
        assert table(maya)["action"].tolist() == expected, key  # (sign-ins match none of these)
        maya.text_input(key=key).input("").run()

    # a date range keeps both of its days
    today = NOW.date()
    maya.date_input(key=f"{AUDIT}.since").set_value(today - timedelta(days=3)).run()
    maya.date_input(key=f"{AUDIT}.until").set_value(today - timedelta(days=3)).run()
    assert table(maya)["action"].tolist() == ["batch.hold"]
    maya.date_input(key=f"{AUDIT}.since").set_value(today).run()
    [error] = maya.error
    assert "ends before it starts" in error.value


def test_the_audit_log_pages_through_many_actions_and_says_when_nothing_matches(database_url, engine):
    audit(engine, *({"at": NOW - timedelta(minutes=n), "actor": "olive", "action": "batch.hold",
                     "target_type": "batch", "target_id": f"bat_{n:02d}"} for n in range(30)))
    maya = signed_in(Role.MANAGER, AUDIT)
    maya.text_input(key=f"{AUDIT}.actor").input("olive").run()
    assert len(table(maya)) == 25 and table(maya)["target"].iloc[0] == "batch bat_00"
    assert "Page 1 of 2, newest first." in texts(maya)
    maya.number_input(key=f"{AUDIT}.page").set_value(2).run()
    assert table(maya)["target"].tolist() == [f"batch bat_{n:02d}" for n in range(25, 30)]
    maya.text_input(key=f"{AUDIT}.action").input("nothing.like.this").run()
    assert "No staff action matches" in maya.info[0].value


def test_the_csv_export_holds_every_match_with_before_and_after(database_url, history, orders):
    from app import audit as glue

    wanted, problem = glue.query(actor="olive", action="", target="", order_number="", since=None, until=None,
                                 page=1)
    assert problem is None
    lines = glue.export_csv(wanted).decode().splitlines()
    assert lines[0] == "at,actor,action,target_type,target_id,order_number,order_id,before,after"
    assert [line.split(",")[2] for line in lines[1:]] == ["batch.release", "batch.hold"]
    assert '"{""size"": 4, ""status"": ""held""}"' in lines[2]
    maya = signed_in(Role.MANAGER, AUDIT)
    assert maya.get("download_button")


def test_a_staff_action_about_an_order_is_on_its_timeline_once(database_url, engine, orders):
    # given two audited actions on Ada's order: one that wrote its own timeline line, one that did not
    written = NOW - timedelta(minutes=1)
    with engine.begin() as conn:
        conn.execute(insert(t.order_events).values(order_id=orders.ada_id, at=written, type="qa.verdict_given",
                                                   source="user:quinn", payload={"verdict": "approve"},
                                                   dedupe_key="verdict:test"))
    audit(engine, {"at": written, "actor": "quinn", "action": "qa.approve", "target_type": "inspection",
                   "target_id": "ins_9", "order_id": orders.ada_id},
          {"at": NOW, "actor": "sam", "action": "order.edit_address", "target_type": "order",
           "target_id": orders.ada_id, "order_id": orders.ada_id, "before": {"city": "London"},
           "after": {"city": "Leeds"}})
    # when support opens the order's timeline
    sam = signed_in(Role.SUPPORT_AGENT, "order_timeline")
    sam.text_input(key="timeline.query").input(orders.ada_number).run()
    lines = [unescaped(md.value) for md in sam.markdown if md.value.startswith("**")]
    # then the address change is its newest line, and the verdict appears once (its own line)
    assert lines[0] == f"**staff.action** — sam: order.edit_address on order {orders.ada_id}"
    assert sum("qa.approve" in line or "qa.verdict_given" in line for line in lines) == 1


@pytest.mark.parametrize("page", [CONSOLE, AUDIT])
def test_a_support_agent_can_open_neither_page(database_url, page):
    at = AppTest.from_file(str(ENTRYPOINT), default_timeout=30).run()
    sign_in(at, STAFF[Role.SUPPORT_AGENT]["username"], STAFF[Role.SUPPORT_AGENT]["password"])
    assert page not in reachable_pages(at)
    direct = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=30)
    direct.session_state["auth.user"] = STAFF[Role.SUPPORT_AGENT]["username"]
    direct.run()
    assert "can't open this page" in direct.error[0].value
    assert not direct.dataframe and not direct.button


def test_the_replay_action_refuses_a_role_that_may_not_replay(database_url, broker_redis, engine, orders):
    # given an ops manager's console, dry run shown
    letter = dead_letter(orders.ada_id)
    direct = AppTest.from_file(str(ROOT / "pages" / f"{CONSOLE}.py"), default_timeout=30)
    direct.session_state["auth.user"] = STAFF[Role.OPS_MANAGER]["username"]
    direct.run()
    direct.button(key=f"{CONSOLE}.dry_run").click().run()
    # when the user's role is changed to QA inspector before the click
    with engine.begin() as conn:
        conn.execute(update(t.staff_users).where(t.staff_users.c.username == STAFF[Role.OPS_MANAGER]["username"])
                     .values(role=Role.QA_INSPECTOR))
    direct.button(key=f"{CONSOLE}.replay").click().run()
    # then nothing is replayed and nothing audited
    assert any("Your role can't do this" in e.value for e in direct.error)
    assert [key for key, _ in broker_redis.zrange("dramatiq:render.XQ", 0, -1, withscores=True)] == [
        letter.rsplit(":", 1)[1].encode()]
    with engine.connect() as conn:
        assert conn.execute(select(t.audit_log).where(t.audit_log.c.action == "replay.run")).all() == []
