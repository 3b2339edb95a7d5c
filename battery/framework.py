"""What every battery check shares: figures with their pass figure, the table, and the services a check runs on.

A check is a function `check(ctx) -> list[Figure]`. It drives the real system (PostgreSQL, Redis, processes,
HTTP, the sims) at the size `ctx.size` asks for ("ci" or "battery") and reports what it counted; a figure
passes or fails on what was counted, never on a timing alone unless the pass figure is a time bound.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SIZES = ("ci", "battery")


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """One counted result: what was measured, what it had to be, and whether it was."""

    test: str
    figure: str
    pass_figure: str
    passed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Where a check runs: a fresh migrated and seeded PostgreSQL database, an emptied Redis database, a folder."""

    pg_url: str
    redis_url: str
    workdir: Path
    size: str = "ci"

    def pick(self, ci, battery):
        """The CI-sized or the battery-sized value of a parameter."""
        return ci if self.size == "ci" else battery


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    run: Callable[[Context], list[Figure]]
    summary: str
    needs: tuple[str, ...] = field(default=("postgresql", "redis"))


def table(figures: list[Figure]) -> str:
    """The figures as a fixed-width table: test, figure, pass figure, PASS/FAIL."""
    rows = [("test", "figure", "pass figure", "result")]
    rows += [(f.test, f.figure, f.pass_figure, "PASS" if f.passed else "FAIL") for f in figures]
    widths = [min(70, max(len(r[i]) for r in rows)) for i in range(4)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def could_not_run(test: str, error: Exception) -> list[Figure]:
    """A check or scenario that broke off, as one failed figure (the traceback printed), so the others still run."""
    import traceback

    traceback.print_exc()
    return [Figure(test=test, figure=f"could not run: {type(error).__name__}: {str(error)[:150]}",
                   pass_figure="runs", passed=False)]


def failures(figures: list[Figure]) -> list[Figure]:
    return [f for f in figures if not f.passed]


def count_figure(test: str, what: str, got: int, want: int, *, unit: str = "") -> Figure:
    """An exact count: `got` must equal `want`."""
    suffix = f" {unit}" if unit else ""
    return Figure(test=test, figure=f"{what}: {got:,}{suffix}", pass_figure=f"= {want:,}{suffix}",
                  passed=got == want)


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "n/a"


# ---- services for the command line (pytest gets the same from tests/conftest.py's fixtures) ------------------


PG_URL = os.environ.get("PRESSROOM_TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BATTERY_REDIS_URL") or os.environ.get("PRESSROOM_TEST_REDIS_URL",
                                                                   "redis://127.0.0.1:6379/15")


@contextmanager
def fresh_context(size: str) -> Iterator[Context]:
    """A new PostgreSQL database (migrated, seeded; dropped afterwards), the battery's Redis database emptied,
    and a scratch folder; the same services the pytest fixtures give a test."""
    import redis
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.conftest import migrated_and_seeded

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).flushdb()
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"pressroom_battery_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="battery-"))
    try:
        migrated_and_seeded(url)
        yield Context(pg_url=url, redis_url=REDIS_URL, workdir=workdir, size=size)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
