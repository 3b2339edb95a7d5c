"""The benchmarks' and soaks' child processes are stopped cleanly even while SIGSTOPped (the sigstop soak
interrupted mid-stop left a stopped worker behind)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

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
