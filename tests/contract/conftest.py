"""Fixtures for contract tests: moto's S3 server as a real HTTP process, with fake credentials."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
STARTUP_TIMEOUT_S = 15.0


def _unavailable(reason: str) -> None:
    """On CI a missing S3 server is a failure (the suite must run there); on a laptop it is a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"moto_server is required on CI: {reason}", pytrace=False)
    pytest.skip(f"S3 contract tests need moto_server: {reason}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_listening(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a `moto_server` subprocess speaking S3 over HTTP on 127.0.0.1, stopped after the session."""
    executable = Path(sys.executable).with_name("moto_server")
    if not executable.exists():
        _unavailable(f"{executable} is missing (pip install 'moto[server]')")
    patch = pytest.MonkeyPatch()
    for name, value in FAKE_AWS_ENV.items():
        patch.setenv(name, value)
    patch.delenv("AWS_PROFILE", raising=False)
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    process = None
    try:
        with log_path.open("wb") as log:
            for _ in range(3):  # the free port can be taken between probing and binding
                port = _free_port()
                process = subprocess.Popen([str(executable), "-H", "127.0.0.1", "-p", str(port)],
                                           stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
                if _wait_until_listening(process, port):
                    break
                process.kill()
                process.wait()
                process = None
        if process is None:
            _unavailable(f"it did not start listening; log: {log_path.read_text(errors='replace')[-2000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        patch.undo()
