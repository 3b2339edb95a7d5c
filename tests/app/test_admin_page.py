"""The admin pages as a manager uses them: partners, templates, prohibited words, QA rules, flags and staff."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import db
from core.services import admin as a
from core.states import Role
from db import tables as t
from tests.app.conftest import ENTRYPOINT, KEYS, ROOT, STAFF
from tests.app.helpers import open_page, reachable_pages, sign_in
from tests.conftest import ApiHarness, settings_for

ADMIN_PAGES = ("admin_partners", "admin_templates", "admin_rules", "admin_flags", "admin_staff")
STRONG = "Blue-Heron-Press-42"


def signed_in(username: str, role: Role, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ENTRYPOINT), default_timeout=30).run()
    sign_in(at, username, STAFF[role]["password"])
    return open_page(at, page) if page else at


@pytest.fixture
def maya(database_url) -> AppTest:
    return signed_in("maya", Role.MANAGER)


def rows(engine, statement):
    with engine.connect() as conn:
        return conn.execute(statement).all()


def audit(engine, action: str):
    log = t.audit_log
    return rows(engine, select(log.c.actor, log.c.target_id, log.c.before, log.c.after).where(log.c.action == action))


def problems(at: AppTest) -> list[str]:
    return [error.value for error in at.error]


# ---- partners ---------------------------------------------------------------------------------------------------


def test_a_manager_raises_a_partners_capacity_and_routing_reads_it_audited(maya, engine):
    page = open_page(maya, "admin_partners")

    page.number_input(key="admin_partners.capacity.dtg.acme-columbus").set_value(200.0)
    page.button(key="admin_partners.save.acme-columbus").click().run()

    assert not page.exception and not problems(page)
    assert "Partner acme-columbus saved" in page.toast[0].value
    with db.SqlUnitOfWork(db.make_session_factory(engine)) as uow:
        assert uow.partners.capacity()["acme-columbus"] == {"dtg": 200.0, "sublimation": 80.0, "inkjet": 40.0}
    [(actor, target, before, after)] = audit(engine, a.EDIT_PARTNER)
    assert (actor, target) == ("maya", "acme-columbus")
    assert before == {"capacity_per_hour": {"dtg": 120, "inkjet": 40, "sublimation": 80}}
    assert after == {"capacity_per_hour": {"dtg": 200, "inkjet": 40, "sublimation": 80}}
    assert "dtg 200/h" in page.expander[0].label


def test_a_negative_capacity_is_refused_with_a_clear_error_and_nothing_changes(maya, engine):
    page = open_page(maya, "admin_partners")

    page.number_input(key="admin_partners.capacity.inkjet.acme-columbus").set_value(-5.0)
    page.button(key="admin_partners.save.acme-columbus").click().run()

    [error] = problems(page)
    assert "capacity for inkjet cannot be negative" in error and error.endswith("Nothing was changed.")
    [capacity] = rows(engine, select(t.partners.c.capacity_per_hour).where(t.partners.c.id == "acme-columbus"))
    assert capacity[0]["inkjet"] == 40 and audit(engine, a.EDIT_PARTNER) == []


# ---- prohibited words -------------------------------------------------------------------------------------------


def test_a_word_added_on_the_page_is_refused_at_the_very_next_checkout(maya, database_url, engine, tmp_path):
    api = ApiHarness(database_url, tmp_path, blind_index_key=KEYS["PRESSROOM_BLIND_INDEX_KEY"])
    artwork = api.upload()["id"]
    body = api.order_body(artwork)
    body["lines"][0]["texts"] = {"headline": "Zorblax Fan Club"}
    page = open_page(maya, "admin_rules")

    page.text_input(key="admin_rules.word").input("  ZORBLAX ")
    page.button(key="admin_rules.add_word").click().run()
    response = api.client.post("/v1/orders", json=body)

    assert not problems(page)
    assert "zorblax" in page.dataframe[0].value["word"].tolist()
    assert response.status_code == 422, response.text
    assert {e["field"]: e["code"] for e in response.json()["errors"]} == {"lines[0].texts.headline": "prohibited_word"}
    assert [row[:2] for row in audit(engine, a.ADD_WORD)] == [("maya", "zorblax")]
    # and removing it lets the same checkout through
    page.selectbox(key="admin_rules.remove_choice").set_value("zorblax")
    page.button(key="admin_rules.remove_word").click().run()
    assert api.client.post("/v1/orders", json=body).status_code == 201
    api.services.engine.dispose()


def test_an_empty_or_duplicate_word_is_refused(maya, engine):
    page = open_page(maya, "admin_rules")
    before = rows(engine, select(t.prohibited_words.c.word))

    page.text_input(key="admin_rules.word").input("   ")
    page.button(key="admin_rules.add_word").click().run()
    assert "empty entry would match nothing" in problems(page)[0]
    page.text_input(key="admin_rules.word").input(before[0][0].upper())
    page.button(key="admin_rules.add_word").click().run()
    assert "is already on the list" in problems(page)[0]
    assert rows(engine, select(t.prohibited_words.c.word)) == before


# ---- templates --------------------------------------------------------------------------------------------------


def test_a_manager_previews_saves_a_template_version_and_sees_the_diff(maya, engine):
    page = open_page(maya, "admin_templates")
    page.selectbox(key="admin_templates.key").set_value("tee-front").run()
    editor = page.text_area(key="admin_templates.spec.tee-front.1")
    spec = json.loads(editor.value)
    spec["texts"][0]["size_pt"] = [50, 120]

    editor.input(json.dumps(spec, indent=2)).run()

    assert not page.exception and not problems(page)
    assert len(page.get("image")) == 1, "the edited template is previewed"
    changes = page.dataframe[-1].value
    assert changes[["field", "change", "before", "after"]].values.tolist() == [
        ["texts[0].size_pt", "changed", "[60, 140]", "[50, 120]"]]
    assert rows(engine, select(t.templates.c.current_version).where(t.templates.c.key == "tee-front")) == [(1,)]

    page.text_input(key="admin_templates.note").input("smaller headline for long names")
    page.button(key="admin_templates.save").click().run()

    assert not problems(page) and "version 2 saved" in page.toast[0].value
    assert rows(engine, select(t.templates.c.current_version).where(t.templates.c.key == "tee-front")) == [(2,)]
    versions = page.dataframe[0].value
    assert versions["version"].tolist() == [2, 1] and versions["note"].tolist()[0] == "smaller headline for long names"
    diff = page.dataframe[1].value  # the comparison defaults to the previous version → the newest
    assert diff["field"].tolist() == ["texts[0].size_pt"]
    [(actor, key, before, after)] = audit(engine, a.SAVE_TEMPLATE)
    assert (actor, key, before["version"], after["version"]) == ("maya", "tee-front", 1, 2)
    assert after["texts[0].size_pt"] == [50, 120]


def test_a_broken_template_is_explained_and_cannot_be_saved(maya, engine):
    page = open_page(maya, "admin_templates")
    page.selectbox(key="admin_templates.key").set_value("tee-front").run()
    editor = page.text_area(key="admin_templates.spec.tee-front.1")
    spec = json.loads(editor.value)

    editor.input(editor.value.replace('"dpi": 300', '"dpi": 300,,')).run()
    assert "not valid JSON" in problems(page)[0] and page.button(key="admin_templates.save").disabled

    spec["texts"][0]["box_in"] = [0.5, 14.5, 40, 3]
    editor.input(json.dumps(spec)).run()
    assert "texts[0].box_in" in problems(page)[0] and "not inside" in problems(page)[0]
    assert page.button(key="admin_templates.save").disabled
    tv = t.template_versions
    assert rows(engine, select(tv.c.version).where(tv.c.template_key == "tee-front")) == [(1,)]


# ---- QA rules ---------------------------------------------------------------------------------------------------


def test_the_spot_check_rate_saved_on_the_page_is_what_the_qa_worker_reads(maya, database_url, engine):
    from workers.bootstrap import Container

    page = open_page(maya, "admin_rules")
    page.number_input(key="admin_rules.qa.rate").set_value(5.0)
    page.number_input(key="admin_rules.qa.shift_mm").set_value(2.5)
    page.button(key="admin_rules.save_qa").click().run()

    assert not problems(page) and "5 % spot checks" in page.toast[0].value
    rules = Container(settings_for(database_url, **{})).qa_rules()
    assert rules.spot_checks.rate == pytest.approx(0.05)
    assert rules.tolerances.shift_mm == 2.5 and rules.tolerances.delta_e_global == 4.0
    [(actor, _, before, after)] = audit(engine, a.EDIT_QA_RULES)
    assert before["spot_check_rate"] == 0.015 and after["spot_check_rate"] == pytest.approx(0.05)


def test_a_tolerance_of_zero_or_a_rate_above_100_percent_is_refused(maya, engine):
    page = open_page(maya, "admin_rules")

    page.number_input(key="admin_rules.qa.rate").set_value(150.0)
    page.button(key="admin_rules.save_qa").click().run()
    assert "from 0 to 100 %, not 150 %" in problems(page)[0]
    page.number_input(key="admin_rules.qa.rate").set_value(2.0)
    page.number_input(key="admin_rules.qa.blob_mm").set_value(0.0)
    page.button(key="admin_rules.save_qa").click().run()
    assert "Largest blot or smudge (mm) must be above 0" in problems(page)[0]
    assert rows(engine, select(t.settings.c.key).where(t.settings.c.key == a.QA_RULES_KEY)) == []


def test_priority_weights_saved_from_the_admin_page_are_the_batch_builders_rules(maya, engine):
    page = open_page(maya, "admin_rules")

    page.slider(key="admin_rules.rules.priority.express").set_value(2.0).run()
    page.button(key="admin_rules.apply_rules").click().run()

    assert not problems(page) and "Production rules saved" in page.toast[0].value
    [(value,)] = rows(engine, select(t.settings.c.value).where(t.settings.c.key == "production_rules"))
    assert value["priority"]["express"] == 2.0


# ---- feature flags ----------------------------------------------------------------------------------------------


def test_a_manager_turns_human_review_on_for_one_partner_and_a_bad_rollout_is_refused(maya, engine):
    page = open_page(maya, "admin_flags")
    page.selectbox(key="admin_flags.scope").set_value("partner").run()
    page.selectbox(key="admin_flags.scope_id").set_value("spree-berlin")

    page.number_input(key="admin_flags.rollout").set_value(140)
    page.button(key="admin_flags.save").click().run()
    assert "from 0 to 100 %, not 140" in problems(page)[0]
    page.number_input(key="admin_flags.rollout").set_value(25)
    page.button(key="admin_flags.save").click().run()

    assert not problems(page)
    flags = rows(engine, select(t.feature_flags.c.key, t.feature_flags.c.scope, t.feature_flags.c.scope_id,
                                t.feature_flags.c.enabled, t.feature_flags.c.rollout_percent))
    assert [tuple(f) for f in flags] == [("qa.human_review", "partner", "spree-berlin", True, 25)]
    assert page.dataframe[0].value["rollout_percent"].tolist() == [25]
    page.button(key="admin_flags.remove").click().run()
    assert rows(engine, select(t.feature_flags.c.key)) == []
    assert [r[1] for r in audit(engine, a.SET_FLAG) + audit(engine, a.REMOVE_FLAG)] == [
        "qa.human_review@partner:spree-berlin"] * 2


# ---- staff ------------------------------------------------------------------------------------------------------


def create(page: AppTest, username: str, role: str, password: str) -> AppTest:
    page.text_input(key="admin_staff.new.username").input(username)
    page.selectbox(key="admin_staff.new.role").set_value(role)
    page.text_input(key="admin_staff.new.password").input(password)
    return page.button(key="admin_staff.create").click().run()


def test_a_manager_creates_an_account_that_signs_in_with_its_role(maya, engine):
    page = open_page(maya, "admin_staff")

    create(page, "jordan", "ops_manager", "short1!")
    assert "at least 12 characters" in problems(page)[0]
    create(page, "olive", "ops_manager", STRONG)
    assert "The username 'olive' is taken" in problems(page)[0]
    create(page, "jordan", "ops_manager", STRONG)

    assert not problems(page) and "jordan" in page.dataframe[0].value["username"].tolist()
    [hashed] = rows(engine, select(t.staff_users.c.password_hash).where(t.staff_users.c.username == "jordan"))
    assert hashed[0].startswith("$argon2id$") and STRONG not in hashed[0]
    jordan = sign_in(AppTest.from_file(str(ENTRYPOINT), default_timeout=30).run(), "jordan", STRONG)
    assert "batch_builder" in reachable_pages(jordan) and "admin_staff" not in reachable_pages(jordan)
    assert [row[:2] for row in audit(engine, a.CREATE_USER)] == [("maya", "jordan")]


def test_a_disabled_user_is_signed_out_on_their_very_next_click(maya, engine, database_url):
    olive = signed_in("olive", Role.OPS_MANAGER, "batch_builder")
    assert not olive.error
    page = open_page(maya, "admin_staff")

    page.selectbox(key="admin_staff.user").set_value("olive").run()
    page.button(key="admin_staff.disable").click().run()
    olive.run()  # olive's next click

    assert not problems(page) and "olive is disabled" in page.toast[0].value
    assert reachable_pages(olive) == set()
    assert any("account is disabled" in info.value for info in olive.info)
    assert sign_in(olive, "olive", STAFF[Role.OPS_MANAGER]["password"]).text_input(key="auth.username")
    assert reachable_pages(olive) == set()
    [(actor, target, before, after)] = audit(engine, a.SET_USER_ACTIVE)
    assert (actor, target, before, after) == ("maya", "olive", {"active": True}, {"active": False})


def test_a_manager_cannot_disable_themselves_or_demote_the_last_manager(maya, engine):
    page = open_page(maya, "admin_staff")
    page.selectbox(key="admin_staff.user").set_value("maya").run()

    page.button(key="admin_staff.disable").click().run()
    assert "cannot disable your own account" in problems(page)[0]
    page.selectbox(key="admin_staff.role.maya").set_value("support_agent")
    page.button(key="admin_staff.change_role").click().run()
    assert "maya is the last active manager" in problems(page)[0]

    assert rows(engine, select(t.staff_users.c.role, t.staff_users.c.active)
                .where(t.staff_users.c.username == "maya")) == [(Role.MANAGER, True)]


def test_a_role_change_applies_on_the_users_next_click(maya, engine):
    sam = signed_in("sam", Role.SUPPORT_AGENT)
    assert "admin_staff" not in reachable_pages(sam)
    page = open_page(maya, "admin_staff")
    page.selectbox(key="admin_staff.user").set_value("sam").run()

    page.selectbox(key="admin_staff.role.sam").set_value("manager")
    page.button(key="admin_staff.change_role").click().run()
    sam.run()

    assert not problems(page)
    assert set(ADMIN_PAGES) <= reachable_pages(sam)


# ---- who may open them ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.QA_INSPECTOR, Role.OPS_MANAGER, Role.SUPPORT_AGENT])
def test_other_roles_cannot_open_the_admin_pages(database_url, role):
    at = signed_in(STAFF[role]["username"], role)

    assert not set(ADMIN_PAGES) & reachable_pages(at)
    for page_id in ADMIN_PAGES:
        direct = AppTest.from_file(str(ROOT / "pages" / f"{page_id}.py"), default_timeout=30)
        direct.session_state["auth.user"] = STAFF[role]["username"]
        direct.run()
        assert "can't open this page" in direct.error[0].value
        assert not direct.button and not direct.dataframe


def test_an_action_is_refused_to_a_user_whose_role_was_taken_away_meanwhile(maya, engine):
    page = open_page(maya, "admin_rules")
    with engine.begin() as conn:  # another manager demotes maya while her page is open (sam is made manager)
        conn.execute(t.staff_users.update().where(t.staff_users.c.username == "sam").values(role=Role.MANAGER))
        conn.execute(t.staff_users.update().where(t.staff_users.c.username == "maya").values(role=Role.SUPPORT_AGENT))

    page.text_input(key="admin_rules.word").input("zorblax")
    page.button(key="admin_rules.add_word").click().run()

    assert rows(engine, select(t.prohibited_words.c.word).where(t.prohibited_words.c.word == "zorblax")) == []
