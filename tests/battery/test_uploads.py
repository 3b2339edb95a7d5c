"""Battery check 4: the hostile upload corpus and 50 benign print files through POST /v1/artwork on the API
process, each request timed and the process's peak RSS measured."""

from __future__ import annotations

import pytest

from battery import uploads
from tests.battery.conftest import assert_figures

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(240)]


def test_hostile_uploads_are_refused_with_their_code_and_benign_print_files_are_normalised(ctx):
    assert_figures(uploads.hostile_uploads(ctx))
