"""A SIGKILLed worker's in-flight message is redelivered within seconds on real Redis, not minutes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TEST_KEYS

ROOT = Path(__file__).resolve().parents[2]


def start_worker(redis_url: str, log: Path) -> subprocess.Popen:
    # The production defaults from core.settings (heartbeat timeout, maintenance chance), not test values.
    env = {**os.environ, **TEST_KEYS, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    dramatiq_cli = Path(sys.executable).with_name("dramatiq")
    return subprocess.Popen([str(dramatiq_cli), "tests.integration.redelivery_actors", "--processes", "1",
                             "--threads", "1", "--queues", "redelivery_test"],
                            cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for(predicate, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout:.0f}s")


@pytest.mark.integration
def test_a_sigkilled_workers_message_is_redelivered_within_seconds(redis_url, tmp_path, monkeypatch):
    # given a worker running a message that hangs
    monkeypatch.setenv("REDIS_URL", redis_url)
    for key, value in TEST_KEYS.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop("tests.integration.redelivery_actors", None)
    from tests.integration import redelivery_actors

    markers = tmp_path / "markers"
    markers.mkdir()
    first = start_worker(redis_url, tmp_path / "worker1.log")
    second = None
    try:
        redelivery_actors.hang_once.send(str(markers))
        wait_for(lambda: len(list(markers.glob("run-*"))) == 1, timeout=60)
        # when the worker is SIGKILLed mid-message (the whole process group: CLI parent and its child)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = time.monotonic()
        second = start_worker(redis_url, tmp_path / "worker2.log")
        # then another worker runs the same message again, within the heartbeat timeout plus a few seconds
        wait_for(lambda: len(list(markers.glob("run-*"))) == 2, timeout=60)
        print(f"redelivered {time.monotonic() - killed_at:.1f}s after SIGKILL")
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
