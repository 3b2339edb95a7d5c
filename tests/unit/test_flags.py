"""Feature flags: the most specific row decides, and the hashed rollout is stable, monotone and proportionate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.flags import FeatureFlag, FlagInvalid, FlagScope, checked_flag, in_rollout, is_enabled

FLAG = "qa.human_review"
subjects = st.text(min_size=1, max_size=40)
percents = st.integers(min_value=0, max_value=100)


def row(scope: FlagScope, scope_id: str = "", *, enabled: bool = True, percent: int = 100) -> FeatureFlag:
    return FeatureFlag(key=FLAG, scope=scope, scope_id=scope_id, enabled=enabled, rollout_percent=percent)


@given(subjects, percents, percents)
def test_a_subject_in_the_rollout_stays_in_it_as_the_percentage_grows(subject, low, high):
    low, high = sorted((low, high))

    if in_rollout(FLAG, subject, low):
        assert in_rollout(FLAG, subject, high)


@given(subjects, percents)
def test_the_same_subject_always_gets_the_same_answer(subject, percent):
    flags = [row(FlagScope.GLOBAL, percent=percent)]

    first = is_enabled(FLAG, subject_id=subject, flags=flags)

    assert all(is_enabled(FLAG, subject_id=subject, flags=flags) == first for _ in range(3))


@given(subjects)
def test_zero_percent_is_nobody_and_a_hundred_is_everybody(subject):
    assert not in_rollout(FLAG, subject, 0)
    assert in_rollout(FLAG, subject, 100)


@given(st.integers(min_value=0, max_value=100), st.text(min_size=1, max_size=8))
def test_about_that_percentage_of_subjects_is_in(percent, salt):
    # 4,000 subjects: the share is within 4 points of the percentage (over 5 standard deviations at 50 %)
    share = sum(in_rollout(FLAG, f"{salt}-job-{n}", percent) for n in range(4000)) / 4000

    assert share == pytest.approx(percent / 100, abs=0.04)


def test_two_flags_at_50_percent_do_not_pick_the_same_half():
    both = sum(in_rollout("a", f"job-{n}", 50) and in_rollout("b", f"job-{n}", 50) for n in range(4000))

    assert both / 4000 == pytest.approx(0.25, abs=0.03)


def test_the_most_specific_row_decides_and_no_row_means_off():
    flags = [row(FlagScope.GLOBAL), row(FlagScope.PARTNER, "acme", enabled=False), row(FlagScope.TEMPLATE, "mug")]

    assert is_enabled(FLAG, partner_id="pacific", template_key="tee", subject_id="j1", flags=flags)  # global
    assert not is_enabled(FLAG, partner_id="acme", template_key="tee", subject_id="j1", flags=flags)  # partner off
    assert is_enabled(FLAG, partner_id="acme", template_key="mug", subject_id="j1", flags=flags)  # template on
    assert not is_enabled("other.flag", partner_id="acme", template_key="mug", subject_id="j1", flags=flags)
    assert not is_enabled(FLAG, partner_id="acme", subject_id="j1", flags=[])


def test_a_partner_row_does_not_apply_to_another_partner_or_to_work_with_no_partner():
    flags = [row(FlagScope.PARTNER, "acme")]

    assert is_enabled(FLAG, partner_id="acme", subject_id="j1", flags=flags)
    assert not is_enabled(FLAG, partner_id="pacific", subject_id="j1", flags=flags)
    assert not is_enabled(FLAG, partner_id=None, subject_id="j1", flags=flags)


@pytest.mark.parametrize(("changes", "message"), [
    ({"key": "  "}, "Give the flag a key"),
    ({"key": "two words"}, "no spaces"),
    ({"scope": "country"}, "is not one of"),
    ({"scope": "global", "scope_id": "acme"}, "leave the partner/template empty"),
    ({"scope_id": ""}, "Choose the partner"),
    ({"rollout_percent": -1}, "from 0 to 100 %"),
    ({"rollout_percent": 101}, "from 0 to 100 %"),
    ({"rollout_percent": float("nan")}, "from 0 to 100 %"),
    ({"rollout_percent": "lots"}, "must be a number"),
    ({"rollout_percent": 12.5}, "whole percentage"),
])
def test_a_flag_that_cannot_work_is_refused_with_the_reason(changes, message):
    given_row = {"key": FLAG, "scope": "partner", "scope_id": "acme", "enabled": True, "rollout_percent": 50}

    with pytest.raises(FlagInvalid, match=message):
        checked_flag(**(given_row | changes))


def test_a_valid_flag_is_trimmed_and_typed():
    flag = checked_flag(key=" qa.human_review ", scope="template", scope_id=" tee-front ", enabled=1,
                        rollout_percent="25")

    assert flag == FeatureFlag(key=FLAG, scope=FlagScope.TEMPLATE, scope_id="tee-front", enabled=True,
                               rollout_percent=25)
