"""SQL functions the read side shares that compile differently on PostgreSQL and SQLite."""

from __future__ import annotations

from sqlalchemy import Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement


class seconds_between(FunctionElement):  # noqa: N801 - reads as the SQL function it compiles to
    """Seconds from the first datetime to the second (float)."""

    type = Float()
    inherit_cache = True


@compiles(seconds_between)
def _seconds_pg(element, compiler, **kw) -> str:
    start, end = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - {compiler.process(start, **kw)}))"


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element, compiler, **kw) -> str:
    start, end = list(element.clauses)
    # julianday is a double of days: good to ~40 µs, so round to the millisecond to get 10.0, not 9.99998.
    days = f"(julianday({compiler.process(end, **kw)}) - julianday({compiler.process(start, **kw)}))"
    return f"ROUND({days} * 86400.0, 3)"
