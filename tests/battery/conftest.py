"""The battery's checks at CI size, on the real PostgreSQL and Redis of tests/conftest.py."""

from __future__ import annotations

import pytest

from battery.framework import Context, Figure, failures, table


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "battery: the reliability and security battery at CI size (issue 8)")


@pytest.fixture
def ctx(pg_url, redis_url, tmp_path) -> Context:
    return Context(pg_url=pg_url, redis_url=redis_url, workdir=tmp_path, size="ci")


def assert_figures(figures: list[Figure], *, known_findings: tuple[str, ...] = ()) -> None:
    """Every figure printed (pytest -s shows the table), and none failed.

    `known_findings` name figures (by their start) that may fail today for a reason reported in issue 8 and owned
    by someone else's code (the comment at the call says which); they stay in the table, PASS or FAIL.
    """
    print("\n" + table(figures))
    known = [f for f in figures if known_findings and f.figure.startswith(known_findings)]
    assert figures and not [f for f in failures(figures) if f not in known], "\n" + table(failures(figures))
