"""The benchmarks' and soaks' child processes are stopped cleanly even while SIGSTOPped (the sigstop soak
interrupted mid-stop left a stopped worker behind)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from bench.common import Process

GRACEFUL = """
import signal, sys, time
def bye(*_):
    open(sys.argv[1], "w").write("terminated")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


def test_a_stopped_child_gets_its_sigterm_and_ends_cleanly(tmp_path):
    marker = tmp_path / "marker"
    popen = subprocess.Popen([sys.executable, "-c", GRACEFUL, str(marker)], stdout=subprocess.PIPE,
                             start_new_session=True, text=True)
    assert popen.stdout.readline().strip() == "ready"
    popen.send_signal(signal.SIGSTOP)
    time.sleep(0.1)

    Process("stopped", popen, tmp_path / "log").stop()

    assert popen.returncode == 0  # its SIGTERM handler ran, not the SIGKILL after the grace period
    assert marker.read_text() == "terminated"


HOLDER = """
import sys, time
from bench.common import hold_redis
hold_redis(sys.argv[1])
print("holding", flush=True)
time.sleep(60)
"""


def test_a_second_benchmark_on_the_same_redis_stops_before_flushing_the_first_ones_queues():
    from bench.common import flush_redis, hold_redis

    # given a benchmark holding a Redis database (nothing listens at this address: nothing may connect to it)
    url = f"redis://127.0.0.1:1/{time.monotonic_ns() % 10_000}"
    first = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "holding"
        # when a second one would flush it, then it stops first, saying who holds it and what to do instead
        with pytest.raises(SystemExit) as stopped:
            flush_redis(url)
        assert f"pid {first.pid}" in str(stopped.value) and "PRESSROOM_BENCH_REDIS_URL" in str(stopped.value)
    finally:
        first.kill()  # however the first one ends, SIGKILL included, the database is free again
        first.wait()
    hold_redis(url)
