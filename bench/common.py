"""What every benchmark shares: a scratch PostgreSQL database, the API as a real process, and honest statistics.

Absolute times on a shared 2-core machine are context; the ratio to a baseline measured in the same run is
the result. Every benchmark ends with one JSON line: {"bench": name, "ours": x, "baseline": y, "ratio": r, …}.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
UNLIMITED_STOCK = 1_000_000_000
"""Blanks per SKU in a benchmark's database and at its partner sim: a benchmark measures throughput, not running out."""
PG_SERVER = os.environ.get("PRESSROOM_BENCH_DATABASE_URL",
                           os.environ.get("PRESSROOM_TEST_DATABASE_URL",
                                          "postgresql+psycopg2://postgres@127.0.0.1:5432/test"))
REDIS_URL = os.environ.get("PRESSROOM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def say(message: str) -> None:
    """Progress goes to stderr so stdout stays the figures."""
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- statistics ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spread:
    """Median of repeated measurements with their min and max: the spread says how noisy the machine was."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(median=statistics.median(values), low=min(values), high=max(values), runs=len(values))

    def __str__(self) -> str:
        return f"{self.median:10.1f}  [{self.low:.1f} – {self.high:.1f}, n={self.runs}]"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def result_line(bench: str, *, ours: float, baseline: float, unit: str, goal: str, **extra: Any) -> dict[str, Any]:
    """Print and return the benchmark's one JSON line (ratio = ours / baseline)."""
    line = {"bench": bench, "ours": round(ours, 3), "baseline": round(baseline, 3),
            "ratio": round(ours / baseline, 3) if baseline else None, "unit": unit, "goal": goal, **extra}
    print(json.dumps(line), flush=True)
    return line


# ---- a scratch database and the API process ----------------------------------------------------------------


@contextmanager
def scratch_database(prefix: str = "pressroom_bench", server_url: str = PG_SERVER) -> Iterator[str]:
    """A fresh PostgreSQL database on `server_url`, migrated and seeded with the demo catalogue, stock unlimited,
    dropped afterwards."""
    from adapters.passwords import hash_password
    from db import make_engine
    from db.migrate import upgrade
    from db.seed import seed

    # no pool: the soak restarts the server under it before the database is dropped
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        engine = make_engine(url)
        seed(engine, hash_password=hash_password)
        with engine.begin() as conn:
            conn.execute(text("UPDATE partner_stock SET on_hand = :n"), {"n": UNLIMITED_STOCK})
        engine.dispose()
        yield url
    finally:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()


def flush_redis(url: str = REDIS_URL) -> None:
    """Empty the benchmarks' Redis database, which this process then holds until it exits (`hold_redis`)."""
    import redis

    hold_redis(url)
    redis.Redis.from_url(url).flushdb()


_HELD: dict[str, Any] = {}  # Redis URL -> this process's open lock file: the lock goes with the process


def hold_redis(url: str = REDIS_URL) -> None:
    """Take the Redis database at `url` for this benchmark until its process ends, however it ends.

    Benchmarks flush that database and keep their queues in it: a second one started beside the first
    flushed the first one's messages (a pipeline run then waited ten minutes for the reconciler to re-drive a
    label message an intake run had flushed). So the second one stops here, saying who holds it.

    Raises:
        SystemExit: another process holds it.
    """
    if url in _HELD:
        return
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    lock = (Path(tempfile.gettempdir()) / f"pressroom-bench-redis-{digest}.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise SystemExit(f"Redis at {url} is in use by another benchmark ({holder}). Wait for it to end, or give "
                         f"this one its own database: PRESSROOM_BENCH_REDIS_URL=redis://127.0.0.1:6379/12") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}: {' '.join(sys.argv)}")
    lock.flush()
    _HELD[url] = lock


@dataclass
class Process:
    """A child process of the benchmark, stopped (SIGTERM, then SIGKILL) when the benchmark ends."""

    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            self._resume()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def _resume(self) -> None:
        """SIGCONT the process (its group, if it leads one): a SIGSTOPped process (the sigstop soak's workers, when
        the soak is interrupted mid-stop) acts on the SIGTERM only once continued, and its children likewise."""
        try:
            if os.getpgid(self.popen.pid) == self.popen.pid:
                os.killpg(self.popen.pid, signal.SIGCONT)
            else:
                os.kill(self.popen.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


@dataclass
class Stack:
    """The processes a benchmark runs, with the environment they share."""

    database_url: str
    redis_url: str = REDIS_URL
    workdir: Path = field(default_factory=lambda: Path(os.environ.get("TMPDIR", "/tmp")) / "pressroom-bench")
    processes: list[Process] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def objects(self) -> Path:
        """This run's object store, as new as its scratch database and removed with its processes.

        One folder for every run let a run find the last ones' files: QA's prepared print files are kept by
        content hash, and the unique designs are the same from run to run, so a pipeline-unique run after
        another inspected against the earlier run's preparations (2.7 GB of files by then): 3,422 orders/hour
        against 1,890-2,789 for the same code on an empty store.
        """
        database = make_url(self.database_url).database if self.database_url else None
        return self.workdir / "objects" / (database or "none")

    def env(self) -> dict[str, str]:
        # The development keys (public, deterministic): a bench database holds only generated customers.
        env = {**os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
               "PYTHONPATH": str(ROOT), "OBJECT_STORE_DIR": str(self.objects), **self.extra_env}
        for name in ("PRESSROOM_ENV", "PRESSROOM_PII_KEYS", "PRESSROOM_BLIND_INDEX_KEY"):
            env.pop(name, None)
        env.pop("DRAMATIQ_PROM_PORT", None)
        return env

    def start(self, name: str, *argv: str, **env: str) -> Process:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"{name}.log"
        popen = subprocess.Popen(argv, cwd=ROOT, env={**self.env(), **env}, stdout=log.open("w"),
                                 stderr=subprocess.STDOUT, start_new_session=True)
        process = Process(name=name, popen=popen, log=log)
        self.processes.append(process)
        return process

    def start_api(self, app: str = "bench.asgi:app") -> str:
        port = free_port()
        self.start("api", str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port),
                   "--log-level", "warning", "--no-access-log")
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", self.processes[-1])
        return url

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        shutil.rmtree(self.objects, ignore_errors=True)


def wait_http(url: str, process: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited: {process.log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s: {process.log.read_text()[-2000:]}")


@contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    """Stop the stack's processes however the benchmark ends, a SIGTERM included (its children run in their
    own sessions, so nothing else would stop them)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield stack
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


def upload_artwork(api_url: str) -> str:
    """The benches' artwork: 3000x3600 with 120 seeded shapes, through POST /v1/artwork.

    A design with structure, like a customer's: QA registers photo to print file on its features. A flat
    artwork (a few repeated squares) left short texts ("Crew 00042") with ~60 feature matches, and 49 of 80
    unique prints went to an inspector as doubtful; on this one they match ~500 and pass.
    """
    import io
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(9)
    image = Image.new("RGB", (3000, 3600), (30, 90, 200))
    draw = ImageDraw.Draw(image)
    for _ in range(120):
        x, y, w, h = rng.randrange(3000), rng.randrange(3600), rng.randrange(60, 500), rng.randrange(60, 500)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    data = io.BytesIO()
    image.save(data, format="PNG")
    response = httpx.post(f"{api_url}/v1/artwork", files={"file": ("design.png", data.getvalue(), "image/png")},
                          timeout=120)
    response.raise_for_status()
    return response.json()["id"]


# ---- closed-loop HTTP load from a second process ------------------------------------------------------------


def load(url: str, target: str, *, clients: int, seconds: float, warmup: float = 2.0,
         artwork_id: str | None = None) -> dict[str, Any]:
    """One closed-loop run of `bench.load` in its own process; returns its JSON figures."""
    argv = [sys.executable, "-m", "bench.load", "--url", url, "--target", target, "--clients", str(clients),
            "--seconds", str(seconds), "--warmup", str(warmup)]
    if artwork_id:
        argv += ["--artwork", artwork_id]
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=seconds + warmup + 120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Comparison:
    """Alternating runs of ours and the baseline (so drift in the machine's load hits both alike)."""

    ours: list[dict[str, Any]] = field(default_factory=list)
    baseline: list[dict[str, Any]] = field(default_factory=list)

    def spread(self, side: str, key: str) -> Spread:
        return Spread.of([run[key] for run in getattr(self, side)])

    def errors(self, side: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for run in getattr(self, side):
            for status, n in run["errors"].items():
                total[status] = total.get(status, 0) + n
        return total


def compare(url: str, ours: str, baseline: str, *, repetitions: int, clients: int, seconds: float,
            artwork_id: str | None = None) -> Comparison:
    comparison = Comparison()
    say(f"  warm-up: {ours} and {baseline}")
    load(url, ours, clients=clients, seconds=2, warmup=1, artwork_id=artwork_id)
    load(url, baseline, clients=clients, seconds=2, warmup=1, artwork_id=artwork_id)
    for rep in range(1, repetitions + 1):
        comparison.ours.append(load(url, ours, clients=clients, seconds=seconds, artwork_id=artwork_id))
        comparison.baseline.append(load(url, baseline, clients=clients, seconds=seconds, artwork_id=artwork_id))
        say(f"  [{rep}/{repetitions}] {ours}: {comparison.ours[-1]['per_s']:.0f}/s   "
            f"{baseline}: {comparison.baseline[-1]['per_s']:.0f}/s")
    return comparison


def report(bench: str, comparison: Comparison, *, unit: str, goal: str, what: str) -> dict[str, Any]:
    """The table for a throughput comparison, then its JSON line (ratio = our rate / the baseline's)."""
    print(f"\n{bench}: {what}")
    print(f"  {'':10} {'per s (median [min – max])':>38} {'p50 ms':>8} {'p99 ms':>8}  errors")
    for side in ("ours", "baseline"):
        p50, p99 = comparison.spread(side, "p50_ms").median, comparison.spread(side, "p99_ms").median
        print(f"  {side:10} {comparison.spread(side, 'per_s')!s:>38} {p50:8.1f} {p99:8.1f}  "
              f"{comparison.errors(side) or '-'}")
    ours, base = comparison.spread("ours", "per_s"), comparison.spread("baseline", "per_s")
    return result_line(bench, ours=ours.median, baseline=base.median, unit=unit, goal=goal,
                       ours_p50_ms=round(comparison.spread("ours", "p50_ms").median, 1),
                       ours_p99_ms=round(comparison.spread("ours", "p99_ms").median, 1),
                       baseline_p99_ms=round(comparison.spread("baseline", "p99_ms").median, 1),
                       spread=[round(ours.low, 1), round(ours.high, 1)], runs=ours.runs,
                       errors=comparison.errors("ours"))
