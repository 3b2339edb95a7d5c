"""Admin services on a seeded SQLite database: each change validated, audited, and read by the code it steers."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

import db
from adapters.passwords import hash_password, verify_password
from core.errors import NotFound, PressroomError
from core.flags import FeatureFlag, FlagInvalid, FlagScope
from core.render import RenderError
from core.services import admin as a
from core.services.qa import HUMAN_REVIEW_FLAG
from core.states import Role
from db import tables as t
from tests.unit.test_qa_stage import NO_SPOT_CHECKS, printed_order, run

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STRONG = "Blue-Heron-Press-42"


@pytest.fixture
def uow(engine):
    return db.SqlUnitOfWork(db.make_session_factory(engine))


def rows(engine, statement):
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(statement)]


def audit(engine, action: str):
    log = t.audit_log
    return rows(engine, select(log.c.actor, log.c.target_id, log.c.before, log.c.after).where(log.c.action == action))


# ---- partners ---------------------------------------------------------------------------------------------------


def test_deactivating_a_partner_takes_it_out_of_routing_capacity_and_is_audited(uow, engine):
    a.update_partner("spree-berlin", {"active": False}, uow=uow, actor="maya", at=AT)

    with uow:
        assert "spree-berlin" not in uow.partners.capacity()
    assert audit(engine, a.EDIT_PARTNER) == [("maya", "spree-berlin", {"active": True}, {"active": False})]


def test_dropping_a_print_method_drops_its_capacity_and_methods_keep_their_canonical_order(uow):
    after = a.update_partner("acme-columbus", {"print_methods": ["inkjet", "dtg"]}, uow=uow, actor="maya", at=AT)

    assert after["print_methods"] == ["dtg", "inkjet"] and after["capacity_per_hour"] == {"dtg": 120, "inkjet": 40}


@pytest.mark.parametrize(("changes", "message"), [
    ({"capacity_per_hour": {"dtg": -1, "sublimation": 80, "inkjet": 40}}, "cannot be negative"),
    ({"capacity_per_hour": {"dtg": "many", "sublimation": 80, "inkjet": 40}}, "must be a number"),
    ({"capacity_per_hour": {"dtg": float("inf"), "sublimation": 80, "inkjet": 40}}, "must be a number"),
    ({"print_methods": ["dtg", "screen"]}, "Unknown print method screen"),
    ({"print_methods": ["dtg", "uv"]}, "Give a capacity per hour for uv"),
    ({"print_methods": []}, "active partner needs at least one print method"),
    ({"country": "USA"}, "two-letter code"),
    ({"lat": 91}, "latitude must be within"),
    ({"city": " "}, "city cannot be empty"),
    ({"api_url": "http://evil"}, "cannot be edited here: api_url"),
    ({"active": True}, "nothing to save"),
])
def test_a_bad_partner_change_is_refused_with_the_reason_and_nothing_changes(uow, engine, changes, message):
    before = rows(engine, select(t.partners))

    with pytest.raises(a.AdminInvalid, match=message):
        a.update_partner("acme-columbus", changes, uow=uow, actor="maya", at=AT)

    assert rows(engine, select(t.partners)) == before and audit(engine, a.EDIT_PARTNER) == []


def test_an_unknown_partner_is_not_found(uow):
    with pytest.raises(NotFound):
        a.update_partner("nobody", {"active": False}, uow=uow, actor="maya", at=AT)


# ---- prohibited words -------------------------------------------------------------------------------------------


def test_an_added_word_is_in_the_list_intake_reads_and_a_removed_one_is_not(uow, engine):
    assert a.add_prohibited_word("  Zorblax   Fan ", uow=uow, actor="maya", at=AT) == "zorblax fan"
    with uow:
        assert "zorblax fan" in uow.catalogue.prohibited_words()

    a.remove_prohibited_word("ZORBLAX fan", uow=uow, actor="maya", at=AT)

    with uow:
        assert "zorblax fan" not in uow.catalogue.prohibited_words()
    assert [r[:4] for r in audit(engine, a.ADD_WORD) + audit(engine, a.REMOVE_WORD)] == [
        ("maya", "zorblax fan", None, {"word": "zorblax fan"}), ("maya", "zorblax fan", {"word": "zorblax fan"}, None)]


def test_empty_long_duplicate_and_unknown_words_are_refused(uow, engine):
    [(existing,)] = rows(engine, select(t.prohibited_words.c.word).limit(1))
    with pytest.raises(a.AdminInvalid, match="empty entry"):
        a.add_prohibited_word(" \t ", uow=uow, actor="maya", at=AT)
    with pytest.raises(a.AdminInvalid, match="at most 80"):
        a.add_prohibited_word("x" * 81, uow=uow, actor="maya", at=AT)
    with pytest.raises(a.AdminInvalid, match="already on the list"):
        a.add_prohibited_word(existing.upper(), uow=uow, actor="maya", at=AT)
    with pytest.raises(NotFound, match="not on the list"):
        a.remove_prohibited_word("zorblax", uow=uow, actor="maya", at=AT)


# ---- templates --------------------------------------------------------------------------------------------------


def tee_spec(uow) -> dict:
    with uow:
        return uow.templates.spec("tee-front", 1)


def test_the_preview_renders_an_edited_template_without_saving_it(uow, engine):
    spec = tee_spec(uow)
    spec["texts"][0]["colour"] = "#ff0000"

    image = a.preview_template("tee-front", spec, product_type="tshirt", print_method="dtg", colour="white")

    assert image[:3] == b"\xff\xd8\xff"  # a JPEG mock-up
    tv = t.template_versions
    assert rows(engine, select(tv.c.version).where(tv.c.template_key == "tee-front")) == [(1,)]


def test_a_saved_version_becomes_current_for_new_orders_while_version_1_stays_readable(uow, engine):
    spec = tee_spec(uow)
    spec["texts"][0]["max_chars"] = 24

    version = a.save_template_version("tee-front", spec, based_on=1, note="shorter headline", uow=uow, actor="maya",
                                      at=AT)

    assert version == 2
    with uow:
        assert uow.catalogue.variants(["TEE-DTG-BLK-M"])["TEE-DTG-BLK-M"].template.text_slots[0].max_chars == 24
        assert uow.templates.spec("tee-front", 1)["texts"][0]["max_chars"] == 30
    [(actor, key, before, after)] = audit(engine, a.SAVE_TEMPLATE)
    assert before == {"version": 1, "texts[0].max_chars": 30} and after == {"version": 2, "texts[0].max_chars": 24}


@pytest.mark.parametrize(("edit", "error", "message"), [
    (lambda s: s.pop("dpi"), a.AdminInvalid, "KeyError\\('dpi'\\)"),
    (lambda s: s.update(dpi="high"), a.AdminInvalid, "malformed"),
    (lambda s: s.update(colour_profile="CMYK"), RenderError, "only writes sRGB"),
    (lambda s: s["artwork"].pop("box_in"), a.AdminInvalid, "required field is missing"),
    (lambda s: s["texts"][0].pop("charset"), a.AdminInvalid, "required field is missing"),
    (lambda s: s["texts"][0].update(font="Comic.ttf"), RenderError, "Comic.ttf"),
    (lambda s: s["texts"][0].update(size_pt=[90, 10]), RenderError, "size_pt"),
    (lambda s: s.update(print_area_in=[300, 300]), RenderError, "print_area_in"),
    (lambda s: None, a.AdminInvalid, "same as version 1"),
])
def test_a_template_that_intake_or_the_renderer_could_not_use_is_not_saved(uow, engine, edit, error, message):
    spec = tee_spec(uow)
    edit(spec)

    with pytest.raises(error, match=message):
        a.save_template_version("tee-front", spec, based_on=1, note="try", uow=uow, actor="maya", at=AT)

    assert rows(engine, select(t.templates.c.current_version).where(t.templates.c.key == "tee-front")) == [(1,)]


def test_a_version_needs_a_note_and_the_editor_text_must_be_a_json_object(uow):
    spec = tee_spec(uow)
    spec["dpi"] = 200
    with pytest.raises(a.AdminInvalid, match="what this version changes"):
        a.save_template_version("tee-front", spec, based_on=1, note=" ", uow=uow, actor="maya", at=AT)
    with pytest.raises(a.AdminInvalid, match="line 1, column 2"):
        a.parse_spec("{,}")
    with pytest.raises(a.AdminInvalid, match="JSON object"):
        a.parse_spec(json.dumps([spec]))


# ---- QA rules and the flag the QA stage reads ----------------------------------------------------------------------


def test_stored_qa_rules_are_what_the_qa_stage_loads(uow, engine):
    assert a.load_qa_rules(uow).spot_checks.rate == 0.015  # nothing stored: the source guide's default

    a.save_qa_rules({"spot_check_rate": 0.05, "tolerances": {"delta_e_global": 6.0}}, uow=uow, actor="maya", at=AT)
    a.set_flag(key=HUMAN_REVIEW_FLAG, scope="partner", scope_id="acme-columbus", enabled=True, rollout_percent=30,
               uow=uow, actor="maya", at=AT)

    rules = a.load_qa_rules(uow)
    assert rules.spot_checks.rate == 0.05 and rules.tolerances.delta_e_global == 6.0
    assert rules.tolerances.blob_mm == 3.0 and rules.max_attempts == 3
    assert rules.flags == (FeatureFlag(key=HUMAN_REVIEW_FLAG, scope=FlagScope.PARTNER, scope_id="acme-columbus",
                                       enabled=True, rollout_percent=30),)
    [(_, key, before, after)] = audit(engine, a.EDIT_QA_RULES)
    assert key == a.QA_RULES_KEY and before["spot_check_rate"] == 0.015 and after["tolerances"]["delta_e_global"] == 6


@pytest.mark.parametrize(("document", "message"), [
    ({"spot_check_rate": -0.01}, "from 0 to 100 %"),
    ({"spot_check_rate": 1.5}, "from 0 to 100 %"),
    ({"spot_check_rate": "often"}, "must be a number"),
    ({"tolerances": {"shift_mm": 0}}, "must be above 0"),
    ({"tolerances": {"fade": 1.0}}, "above 0 and below 1"),
    ({"tolerances": {"ssim_min": 0.5}}, "Unknown QA tolerance ssim_min"),
])
def test_qa_rules_out_of_range_are_refused(uow, engine, document, message):
    with pytest.raises(a.AdminInvalid, match=message):
        a.save_qa_rules(document, uow=uow, actor="maya", at=AT)
    assert rows(engine, select(t.settings.c.key).where(t.settings.c.key == a.QA_RULES_KEY)) == []


def test_only_flags_the_code_reads_can_be_set_and_a_missing_one_cannot_be_removed(uow, engine):
    with pytest.raises(a.AdminInvalid, match="No code reads a flag called 'qa.nothing'"):
        a.set_flag(key="qa.nothing", scope="global", scope_id="", enabled=True, rollout_percent=100, uow=uow,
                   actor="maya", at=AT)
    with pytest.raises(FlagInvalid, match="from 0 to 100"):
        a.set_flag(key=HUMAN_REVIEW_FLAG, scope="global", scope_id="", enabled=True, rollout_percent=101, uow=uow,
                   actor="maya", at=AT)
    with pytest.raises(NotFound):
        a.remove_flag(key=HUMAN_REVIEW_FLAG, scope="global", scope_id="", uow=uow, actor="maya", at=AT)
    assert rows(engine, select(t.feature_flags.c.key)) == [] and audit(engine, a.SET_FLAG) == []


def test_setting_a_flag_again_changes_the_same_row_and_audits_before_and_after(uow, engine):
    for percent in (10, 60):
        a.set_flag(key=HUMAN_REVIEW_FLAG, scope="template", scope_id="mug-wrap", enabled=True,
                   rollout_percent=percent, uow=uow, actor="maya", at=AT)

    assert rows(engine, select(t.feature_flags.c.rollout_percent)) == [(60,)]
    [first, second] = audit(engine, a.SET_FLAG)
    assert first[2] is None and second[2]["rollout_percent"] == 10 and second[3]["rollout_percent"] == 60


def test_the_human_review_flag_sends_a_passing_print_at_that_partner_to_an_inspector(api):
    # given two good prints at acme-columbus, and the flag on there for every job
    flag = FeatureFlag(key=HUMAN_REVIEW_FLAG, scope=FlagScope.PARTNER, scope_id="acme-columbus", enabled=True)
    _, flagged_job = printed_order(api)
    _, other_job = printed_order(api)

    # when QA inspects one with the flag and the other with the flag at 0 %
    assert run(api, flagged_job, defect=None, rules=replace(NO_SPOT_CHECKS, flags=(flag,))) == "review"
    off = replace(flag, rollout_percent=0)
    assert run(api, other_job, defect=None, rules=replace(NO_SPOT_CHECKS, flags=(off,))) == "passed"

    # then the flagged one waits for a person, and says why
    with api.services.engine.connect() as conn:
        reasons = dict(conn.execute(select(t.inspections.c.job_id, t.inspections.c.review_reason)).all())
    assert reasons == {flagged_job: "flagged", other_job: None}


# ---- staff ------------------------------------------------------------------------------------------------------


def create(uow, username="jordan", role="ops_manager", password=STRONG) -> str:
    return a.create_user(username, role, password, uow=uow, actor="maya", at=AT, hash_password=hash_password)


def test_a_new_account_stores_only_an_argon2_hash_and_is_audited_without_it(uow, engine):
    create(uow)

    [(hashed, role, active)] = rows(engine, select(t.staff_users.c.password_hash, t.staff_users.c.role,
                                                   t.staff_users.c.active).where(t.staff_users.c.username == "jordan"))
    assert verify_password(hashed, STRONG) and role == Role.OPS_MANAGER and active
    [(actor, target, before, after)] = audit(engine, a.CREATE_USER)
    assert (actor, target, before, after) == ("maya", "jordan", None, {"role": "ops_manager", "active": True})


@pytest.mark.parametrize(("username", "role", "password", "message"), [
    ("Jo", "ops_manager", STRONG, "A username is 3–80 characters"),
    ("jordan smith", "ops_manager", STRONG, "A username is 3–80 characters"),
    ("olive", "ops_manager", STRONG, "'olive' is taken"),
    ("jordan", "admin", STRONG, "Unknown role 'admin'"),
    ("jordan", "ops_manager", "Short-1", "at least 12 characters"),
    ("jordan", "ops_manager", "jordan-Press-42", "must not contain the username"),
    ("jordan", "ops_manager", "aaaaaaaaaaaaaaa1", "repeats too few characters"),
    ("jordan", "ops_manager", "lowercaseonly", "Mix three kinds"),
])
def test_a_bad_new_account_is_refused_with_the_reason(uow, engine, username, role, password, message):
    before = rows(engine, select(t.staff_users.c.username))

    with pytest.raises(a.AdminInvalid, match=message):
        create(uow, username, role, password)

    assert rows(engine, select(t.staff_users.c.username)) == before


def test_a_long_passphrase_of_one_kind_is_strong_enough():
    assert a.password_problem("correct horse battery staple", username="jordan") is None


def test_the_last_active_manager_can_be_neither_disabled_nor_demoted_but_one_of_two_can(uow, engine):
    with pytest.raises(a.AdminInvalid, match="cannot disable your own account"):
        a.set_user_active("maya", False, uow=uow, actor="maya", at=AT)
    with pytest.raises(a.AdminInvalid, match="maya is the last active manager"):
        a.change_role("maya", "ops_manager", uow=uow, actor="maya", at=AT)
    create(uow, "morgan", "manager")
    a.set_user_active("morgan", False, uow=uow, actor="maya", at=AT)  # one of two managers can go
    with pytest.raises(a.AdminInvalid, match="maya is the last active manager"):  # then maya is the last again
        a.set_user_active("maya", False, uow=uow, actor="morgan", at=AT)

    a.set_user_active("morgan", True, uow=uow, actor="maya", at=AT)
    a.change_role("maya", "ops_manager", uow=uow, actor="morgan", at=AT)

    assert rows(engine, select(t.staff_users.c.username).where(t.staff_users.c.role == Role.MANAGER)) == [("morgan",)]
    assert [(r[1], r[2], r[3]) for r in audit(engine, a.CHANGE_ROLE)] == [
        ("maya", {"role": "manager"}, {"role": "ops_manager"})]


def test_re_enabling_an_account_clears_its_lockout(uow, engine):
    a.set_user_active("olive", False, uow=uow, actor="maya", at=AT)
    with engine.begin() as conn:
        conn.execute(t.staff_users.update().where(t.staff_users.c.username == "olive")
                     .values(failed_logins=5, locked_until=AT))

    a.set_user_active("olive", True, uow=uow, actor="maya", at=AT)

    assert rows(engine, select(t.staff_users.c.active, t.staff_users.c.failed_logins, t.staff_users.c.locked_until)
                .where(t.staff_users.c.username == "olive")) == [(True, 0, None)]


def test_no_op_and_unknown_account_changes_are_refused(uow):
    with pytest.raises(a.AdminInvalid, match="already enabled"):
        a.set_user_active("olive", True, uow=uow, actor="maya", at=AT)
    with pytest.raises(a.AdminInvalid, match="is a ops_manager already"):
        a.change_role("olive", "ops_manager", uow=uow, actor="maya", at=AT)
    with pytest.raises(NotFound):
        a.set_user_active("ghost", False, uow=uow, actor="maya", at=AT)
    with pytest.raises(NotFound):
        a.change_role("ghost", "manager", uow=uow, actor="maya", at=AT)


def test_every_admin_error_is_a_pressroom_error_with_a_code():
    assert issubclass(a.AdminInvalid, PressroomError) and a.AdminInvalid("x").code == "admin_invalid"
