"""The running system once for tests/browser (PG, Redis, API, workers, scheduler, sims, dashboard), and Chromium.

Package-scoped, not session-scoped: the processes stop as soon as the last browser test is done, so their
workers never take messages from the tests that run after them on the same Redis database.

The processes are started with tests/e2e's `System` helper; the world every browser test works on is made by
sending orders through the real pipeline (see `world.py`). Screenshots of every step, and of the page when a
test fails, go to test-artifacts/browser/<test name>/; the processes' logs to test-artifacts/browser/logs/.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.browser.dashboard import TIMEOUT_MS
from tests.browser.world import World, build_world
from tests.conftest import REDIS_URL, TEST_KEYS, _admin_engine, migrated_and_seeded, service_missing
from tests.e2e.conftest import BIN, ROOT, System, free_port

CHROMIUM = Path(os.environ.get("PRESSROOM_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so the page fixture knows whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="package")
def artifacts() -> Path:
    """test-artifacts/browser/ with an empty logs/ folder (each test empties its own folder as it starts)."""
    shutil.rmtree(ARTIFACTS / "logs", ignore_errors=True)
    (ARTIFACTS / "logs").mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="package")
def chromium_path() -> Path:
    """Debian's Chromium (never a downloaded one); missing it fails in CI and skips on a developer's machine."""
    if not CHROMIUM.exists():
        service_missing("Chromium", FileNotFoundError(f"{CHROMIUM}: apt-get install -y chromium"))
    return CHROMIUM


@pytest.fixture(scope="package")
def browser_pg_url(pg_server) -> str:
    """One migrated and seeded PostgreSQL database for all the browser tests; dropped afterwards."""
    name = f"pressroom_b_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    try:
        migrated_and_seeded(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="package")
def browser_redis_url() -> str:
    """The test Redis database (PRESSROOM_TEST_REDIS_URL), emptied once before the system starts."""
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.flushdb()
        client.close()
    except Exception as error:
        service_missing("Redis", error)
    return REDIS_URL


def distinct_free_ports(*names: str) -> dict[str, int]:
    ports: dict[str, int] = {}
    while len(ports) < len(names):
        port = free_port()
        if port not in ports.values():
            ports[names[len(ports)]] = port
    return ports


def start_dashboard(system: System, port: int) -> None:
    """`streamlit run` as the Procfile has it, headless and without a file watcher."""
    system.start("dashboard", str(BIN / "streamlit"), "run", "app/streamlit_app.py", "--server.port", str(port),
                 "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
                 "--browser.gatherUsageStats", "false")
    system.dashboard_url = f"http://127.0.0.1:{port}"


def wait_for_dashboard(system: System, attempts: int = 3) -> None:
    """Wait for the dashboard; start it again on another port if its port was taken before it could bind
    (any process's outgoing connection may be given a port free_port() handed out)."""
    for _ in range(attempts):
        process = system.processes["dashboard"]
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{system.dashboard_url}/_stcore/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        if process.poll() is None or "is not available" not in (system.logs / "dashboard.log").read_text():
            break
        start_dashboard(system, free_port())
    system.assert_alive()
    raise AssertionError(f"the dashboard did not answer at {system.dashboard_url}; logs in {system.logs}")


@pytest.fixture(scope="package")
def running_system(chromium_path, browser_pg_url, browser_redis_url, artifacts, tmp_path_factory) -> System:
    """Every Procfile process on free ports, like `make run` but on PostgreSQL, with a fast demo pace."""
    objects = tmp_path_factory.mktemp("browser-objects")
    ports = distinct_free_ports("api", "dashboard", "partners", "carrier", "smtp", "mail_http", "sms", "metrics")
    api_url = f"http://127.0.0.1:{ports['api']}"
    env = {**os.environ, **TEST_KEYS, "DATABASE_URL": browser_pg_url, "REDIS_URL": browser_redis_url,
           "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "OBJECT_STORE_DIR": str(objects),
           "RECONCILE_EVERY_S": "1", "BATCH_MAX_WAIT_S": "2", "QA_UNDO_WINDOW_S": "1",
           "PRESSROOM_API_URL": api_url, "PARTNER_API_BASE": f"http://127.0.0.1:{ports['partners']}",
           "EASYPOST_API_BASE": f"http://127.0.0.1:{ports['carrier']}/v2",
           "TRACKING_URL": f"http://127.0.0.1:{ports['carrier']}/track/{{code}}",
           "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(ports["smtp"]), "SMS_URL": f"http://127.0.0.1:{ports['sms']}"}
    system = System(env=env, logs=artifacts / "logs", api_url=api_url, partner_url=env["PARTNER_API_BASE"],
                    metrics_port=ports["metrics"])
    try:
        system.start("api", str(BIN / "uvicorn"), "api.asgi:app", "--host", "127.0.0.1", "--port", str(ports["api"]))
        system.start("worker", sys.executable, "-m", "workers", "workers.actors", "--processes", "1",
                     "--threads", "4", dramatiq_prom_port=str(ports["metrics"]))
        system.start("scheduler", sys.executable, "-m", "workers.scheduler")
        system.start("partners", sys.executable, "-m", "sims.partner", "--port", str(ports["partners"]),
                     "--time-scale", "36000", "--callback-base", api_url, "--seed", "7", "--defect-rate", "0",
                     "--duplicate-rate", "0.05", "--reorder-rate", "0.05")
        system.start("carrier", sys.executable, "-m", "sims.carrier", "--port", str(ports["carrier"]),
                     "--webhook-url", f"{api_url}/webhooks/carrier/easypost", "--time-scale", "3600",
                     "--seed", "7")
        system.start("mail", sys.executable, "-m", "sims.smtp_sink", "--smtp-port", str(ports["smtp"]),
                     "--http-port", str(ports["mail_http"]))
        system.start("sms", sys.executable, "-m", "sims.sms", "--port", str(ports["sms"]))
        start_dashboard(system, ports["dashboard"])
        for url in (f"{system.partner_url}/healthz", f"{api_url}/healthz", f"http://127.0.0.1:{ports['sms']}/",
                    f"http://127.0.0.1:{ports['carrier']}/", f"http://127.0.0.1:{ports['mail_http']}/"):
            system.wait_http(url)
        wait_for_dashboard(system)
        yield system
    finally:
        system.stop()


@pytest.fixture(scope="package")
def world(running_system, browser_pg_url) -> World:
    """Orders pushed through the real pipeline into the states the flows start from (see world.build_world)."""
    built = build_world(running_system, browser_pg_url)
    yield built
    built.close()


@pytest.fixture(scope="package")
def browser(chromium_path):
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def shots(request, artifacts):
    """`shots(page, "step")` saves NN-step.png under the test's own artefact folder."""
    folder = artifacts / request.node.name
    shutil.rmtree(folder, ignore_errors=True)  # only this run's pictures
    folder.mkdir(parents=True)
    taken = []

    def shoot(page, step: str) -> Path:
        path = folder / f"{len(taken) + 1:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)
        return path

    shoot.folder = folder
    return shoot


@pytest.fixture
def new_page(request, browser, world, shots):
    """`new_page()` opens a fresh browser context (a new dashboard session); failures are screenshot."""
    contexts = []

    def make():
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    failed = any(getattr(getattr(request.node, f"report_{when}", None), "failed", False)
                 for when in ("setup", "call"))
    for n, context in enumerate(contexts, start=1):
        for m, page in enumerate(context.pages, start=1):
            if failed:  # what each page showed, as a picture and as the accessibility tree the locators read
                with contextlib.suppress(PlaywrightError):
                    page.screenshot(path=str(shots.folder / f"failure-{n}-{m}.png"), full_page=True)
                    (shots.folder / f"failure-{n}-{m}.txt").write_text(page.locator("body").aria_snapshot())
        context.close()


@pytest.fixture
def page(new_page):
    return new_page()
