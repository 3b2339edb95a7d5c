"""Pages are layout (STYLE rule 8): they import only Streamlit, app.* and a little of core, and stay short."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"
PAGES = sorted(PAGES_DIR.glob("*.py"))
MAX_LINES = 120
ALLOWED = {"streamlit", "typing", "datetime", "__future__", "core.states", "core.policy"}
ALLOWED_PREFIXES = ("app.",)
# A SQL call is `select(` or `execute(` on its own, not a widget that happens to end in it (st.multiselect).
FORBIDDEN_SQL = re.compile(r"(?<![\w])(?:select|execute)\(|sqlalchemy")


def imported_modules(tree: ast.Module) -> list[str]:
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                modules.append("." * node.level + (node.module or ""))
            else:
                modules += [f"{node.module}.{alias.name}" if node.module in ("app", "core") else node.module
                            for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            modules.append("__import__()")
    return modules


def allowed(module: str) -> bool:
    return module in ALLOWED or module.startswith(ALLOWED_PREFIXES) or module.split(".")[0] == "streamlit"


def test_there_are_pages_to_check():
    assert PAGES, f"no pages found in {PAGES_DIR}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_page_imports_only_streamlit_app_and_core_vocabulary(page):
    tree = ast.parse(page.read_text(), filename=str(page))
    forbidden = [module for module in imported_modules(tree) if not allowed(module)]

    assert not forbidden, f"{page.name} imports {forbidden}: read via app.queries, act via app.actions"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_page_holds_no_sql(page):
    source = page.read_text()

    assert not FORBIDDEN_SQL.findall(source)


def test_the_sql_check_tells_a_query_from_a_widget():
    assert FORBIDDEN_SQL.search("rows = conn.execute(select(t.orders))")
    assert FORBIDDEN_SQL.search("q = sa.select(x)")
    assert not FORBIDDEN_SQL.search('st.multiselect("Stage", stages)')


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_page_stays_short(page):
    assert len(page.read_text().splitlines()) <= MAX_LINES


def test_the_scanner_catches_what_it_should():
    tree = ast.parse("import sqlalchemy\nfrom db import queries\nfrom app import auth\nimport pandas as pd\n"
                     "from core.states import OrderStatus\nfrom core import model\nfrom . import x\n")

    refused = [module for module in imported_modules(tree) if not allowed(module)]

    assert refused == ["sqlalchemy", "db", "pandas", "core.model", "."]
