"""Battery check 6 at CI size: schemathesis (all phases, both data modes, every check plus the rules-agree-with-schema
hook; 20 examples per operation, 60 s) against the API process on PostgreSQL + Redis: 0 findings of any kind."""

from __future__ import annotations

import pytest

from battery import api_fuzz
from tests.battery.conftest import assert_figures

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(420)]


def test_schemathesis_finds_no_server_error_schema_violation_or_rule_the_schema_does_not_state(ctx):
    figures, findings = api_fuzz.fuzz(ctx)
    assert not findings, "\n".join(f.line() for f in findings)
    assert_figures(figures)
