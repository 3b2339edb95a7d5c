"""The whole system as separate processes (API, workers, scheduler, dashboard) on real HTTP, Redis and a DB."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_KEYS

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class System:
    env: dict[str, str]
    logs: Path
    api_url: str = ""
    dashboard_url: str = ""
    metrics_port: int = 0
    partner_url: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, *argv: str, **extra_env: str) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(list(argv), cwd=ROOT, env={**self.env, **extra_env}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def wait_http(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            self.assert_alive()
            time.sleep(0.3)
        raise AssertionError(f"{url} did not answer within {timeout}s; logs in {self.logs}")

    def assert_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
        if dead:
            tails = {n: (self.logs / f"{n}.log").read_text()[-3000:] for n in dead}
            raise AssertionError(f"processes died: {dead}\n{tails}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


@pytest.fixture
def system(pg_url, redis_url, tmp_path) -> System:
    """API + stage workers + scheduler on PostgreSQL and Redis, like the Procfile, on free ports."""
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, **TEST_KEYS, "DATABASE_URL": pg_url, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT),
           "OBJECT_STORE_DIR": str(tmp_path / "objects"), "RECONCILE_EVERY_S": "1", "PRESSROOM_PROMETHEUS": "1",
           "BATCH_MAX_WAIT_S": "3"}
    system = System(env=env, logs=logs)
    api_port, partner_port = free_port(), free_port()
    system.api_url = f"http://127.0.0.1:{api_port}"
    system.partner_url = f"http://127.0.0.1:{partner_port}"
    system.env["PRESSROOM_API_URL"] = system.api_url
    system.env["PARTNER_API_BASE"] = system.partner_url
    try:
        system.start("api", str(BIN / "uvicorn"), "api.asgi:app", "--host", "127.0.0.1", "--port", str(api_port))
        system.metrics_port = free_port()
        system.start("worker", sys.executable, "-m", "workers", "workers.actors", "--processes", "1",
                     "--threads", "4", dramatiq_prom_port=str(system.metrics_port))
        system.start("scheduler", sys.executable, "-m", "workers.scheduler")
        system.start("partners", sys.executable, "-m", "sims.partner", "--port", str(partner_port),
                     "--time-scale", "36000", "--callback-base", system.api_url, "--seed", "5",
                     "--duplicate-rate", "0.1", "--reorder-rate", "0.1", "--defect-rate", "0.05")
        system.wait_http(f"{system.partner_url}/healthz")
        system.wait_http(f"{system.api_url}/healthz")
        yield system
    finally:
        system.stop()
