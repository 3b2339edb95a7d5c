"""Job deadlines can be set from the environment, as the order stages' deadlines can (the soak shortens them)."""

from __future__ import annotations

from core.settings import DEFAULT_JOB_DEADLINES_S, Settings
from core.states import JobStatus


def test_a_job_deadline_is_read_from_the_environment_and_the_others_keep_their_defaults():
    # given the printed jobs' deadline set to 60 s in the environment
    settings = Settings.from_env({"PRESSROOM_JOB_DEADLINE_PRINTED_S": "60"})
    # then QA is expected within 60 s, and every other job status keeps its default
    assert settings.job_deadlines_s[JobStatus.PRINTED] == 60.0
    assert {s: v for s, v in settings.job_deadlines_s.items() if s != JobStatus.PRINTED} == {
        s: v for s, v in DEFAULT_JOB_DEADLINES_S.items() if s != JobStatus.PRINTED}
