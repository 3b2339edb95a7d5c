"""How long a worker process takes from spawn to its first message, as the soak's supervisor restarts one.

    python -m battery.worker_boot [--rounds 5] [--prefix soak] [--prepare-rounds 3]
    python -m battery.worker_boot --lives SOAK_LOG_DIR      (a kept sigkill soak's logs: SOAK_KEEP_LOGS=1)

Each round spawns the soak's worker command (`python -m workers workers.actors --processes 1 --threads 8`, the
soak's environment, its own redis-server and a scratch database) with one `qa.inspect` message already queued (a
job that does not exist: the actor loads its rules and the job, finds none, and acks), and times spawn → Dramatiq's
"ready for action" line → the message acked; then SIGKILLs the process group, as the sigkill scenario does.
Under SIGKILLs every 2 s a worker is killed about 4 s after it is ready: what it does after "ready" must fit.

Then, in this process, what a QA worker's first inspection of a design costs before it can compare a photo: the
print file (a 4500x5400 RGBA PNG like the soak's tee print) read, decoded and prepared, against the prepared
reference read back from the object store (adapters.prepared, local folder store as in the soak).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from battery.system import SHARED_PG, PrivateRedis, soak_database, soak_env
from bench.common import Stack, free_port


def _queued(client) -> int:
    from adapters.broker import queue_stats  # noqa: PLC0415

    return sum(s.depth + s.in_flight + s.delayed for s in queue_stats(client, ("qa",)))


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live children: the worker command's whole process group
    (Dramatiq's parent, its worker process and the Prometheus exporter it forks)."""
    import psutil  # noqa: PLC0415

    total = 0.0
    try:
        parent = psutil.Process(pid)
        for process in (parent, *parent.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
    except psutil.NoSuchProcess:
        pass
    return total


def measure(rounds: int, workdir: Path, *, prefix: str = "soak", server: str = SHARED_PG) -> list[tuple[float, ...]]:
    """(spawn → ready, spawn → first message acked) in seconds and the process group's CPU seconds at each, per
    round: wall times mean little on a loaded machine, CPU seconds do."""
    import dramatiq  # noqa: PLC0415

    from adapters.broker import make_broker  # noqa: PLC0415
    from core.commands import InspectJob, actor_name  # noqa: PLC0415
    from core.settings import Settings  # noqa: PLC0415

    redis = PrivateRedis(workdir)
    redis.start()
    results = []
    try:
        with soak_database(server, prefix=prefix) as url:
            stack = Stack(url, redis_url=redis.url, workdir=workdir / "logs", extra_env=soak_env())
            broker = make_broker(Settings.from_env({"REDIS_URL": redis.url, "DATABASE_URL": url}))
            client = redis.client()
            try:
                for n in range(rounds):
                    broker.enqueue(dramatiq.Message(queue_name=InspectJob.QUEUE, actor_name=actor_name(InspectJob),
                                                    args=(f"job-missing-{n}",), kwargs={}, options={}))
                    spawned = time.monotonic()
                    worker = stack.start(f"worker-boot{n}", sys.executable, "-m", "workers", "workers.actors",
                                         "--processes", "1", "--threads", "8", dramatiq_prom_port=str(free_port()))
                    ready = acked = cpu_ready = cpu_acked = None
                    while (ready is None or acked is None) and time.monotonic() - spawned < 180:
                        if ready is None and "ready for action" in worker.log.read_text(errors="replace"):
                            ready, cpu_ready = time.monotonic() - spawned, _cpu(worker.popen.pid)
                        if acked is None and _queued(client) == 0:
                            acked, cpu_acked = time.monotonic() - spawned, _cpu(worker.popen.pid)
                        if worker.popen.poll() is not None:
                            raise RuntimeError(f"worker exited: {worker.log.read_text()[-2000:]}")
                        time.sleep(0.05)
                    os.killpg(worker.popen.pid, signal.SIGKILL)
                    worker.popen.wait(10)
                    if ready is None or acked is None:
                        raise RuntimeError("worker not ready or message not acked within 180 s")
                    results.append((ready, acked, cpu_ready, cpu_acked))
                    print(f"  round {n + 1}: ready {ready:.2f} s ({cpu_ready:.2f} s CPU), first message acked "
                          f"{acked:.2f} s ({cpu_acked:.2f} s CPU) after spawn", flush=True)
            finally:
                stack.stop()
    finally:
        redis.stop()
    return results


def _print_file() -> bytes:
    """A 4500x5400 RGBA print file with shapes and a transparent margin, PNG at the renderer's level 1."""
    import io  # noqa: PLC0415
    import random  # noqa: PLC0415

    from PIL import Image, ImageDraw  # noqa: PLC0415

    rng = random.Random(9)
    image = Image.new("RGBA", (4500, 5400), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((300, 300, 4200, 4980), fill=(30, 90, 200, 255))
    for _ in range(160):
        x, y, w, h = rng.randrange(300, 4000), rng.randrange(300, 4800), rng.randrange(60, 700), rng.randrange(60, 700)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256), 255))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def measure_prepare(rounds: int, workdir: Path) -> list[tuple[float, float, float]]:
    """(read + decode + prepare, encode + store, read back from the store) in seconds, per round."""
    import io  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    from adapters.objectstore import LocalVersionedStore  # noqa: PLC0415
    from adapters.prepared import StoredPreparations  # noqa: PLC0415
    from core.qa import PreparedReference, prepare_reference  # noqa: PLC0415

    store = LocalVersionedStore(workdir / "objects")
    store.put("assets/boot/print.png", _print_file(), content_type="image/png")
    stored = StoredPreparations(store, PreparedReference, prefix="cache/qa-references")
    results = []
    for n in range(rounds):
        started = time.perf_counter()
        with Image.open(io.BytesIO(store.get("assets/boot/print.png"))) as image:
            prepared = prepare_reference(np.asarray(image.convert("RGBA")), substrate=(255, 255, 255))
        made = time.perf_counter()
        stored.save(f"boot-{n}", prepared)
        saved = time.perf_counter()
        assert stored.load(f"boot-{n}") is not None
        results.append((made - started, saved - made, time.perf_counter() - saved))
        print(f"  prepare {n + 1}: read+decode+prepare {results[-1][0]:.2f} s, encode+store {results[-1][1]:.3f} s, "
              f"read back {results[-1][2]:.3f} s ({prepared.nbytes / 1e6:.1f} MB)", flush=True)
    return results


_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \[PID (\d+)\] \[[^]]*\] \[([^]]*)\] \[\w+\] (.*)$")


def lives(logdir: Path) -> dict[str, list[float]]:
    """Per worker life of a sigkill soak (its supervisor.log and one log per life): spawn → ready, ready → killed,
    and what it finished: inspections, prepared print files read from the store or made, renders."""
    spawned, killed = {}, {}
    for line in (logdir / "supervisor.log").read_text().splitlines():
        at, what, _name, _pid, pid = line.split()
        (spawned if what == "started" else killed)[int(pid)] = float(at)
    found: dict[str, list[float]] = {"spawn → ready": [], "ready → killed": [], "inspections": [],
                                     "prepared read": [], "prepared made": [], "renders": []}
    for log in sorted(logdir.glob("worker*.log")):
        main_pid = ready = None
        counts = dict.fromkeys(("inspections", "prepared read", "prepared made", "renders"), 0)
        for raw in log.read_text(errors="replace").splitlines():
            match = _LINE.match(raw)
            if not match:
                continue
            at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC).timestamp()
            logger, message = match[3], match[4]
            if logger == "dramatiq.MainProcess":
                main_pid = int(match[2])
            elif "ready for action" in message and logger.startswith("dramatiq.WorkerProcess"):
                ready = at
            elif logger == "workers.qa" and message.startswith("inspected"):
                counts["inspections"] += 1
            elif logger == "adapters.prepared":
                counts["prepared read" if "read from the store" in message else "prepared made"] += 1
            elif logger == "core.services.render" and "render" in message:
                counts["renders"] += 1
        if main_pid in spawned and ready is not None:
            found["spawn → ready"].append(ready - spawned[main_pid])
        if main_pid in killed and ready is not None:
            found["ready → killed"].append(killed[main_pid] - ready)
        for what, n in counts.items():
            found[what].append(n)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m battery.worker_boot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefix", default="soak", help="scratch database name prefix")
    parser.add_argument("--prepare-rounds", type=int, default=3)
    parser.add_argument("--lives", type=Path, help="read a kept sigkill soak's logs instead of measuring")
    args = parser.parse_args(argv)
    if args.lives:
        for what, values in lives(args.lives).items():
            if values and what in ("spawn → ready", "ready → killed"):
                print(f"{what}: median {statistics.median(values):.2f} s, p90 "
                      f"{sorted(values)[int(len(values) * 0.9)]:.2f} s, n={len(values)}")
            elif values:
                print(f"{what}: {sum(values):.0f} in {len(values)} lives "
                      f"({sum(1 for v in values if v)} lives with any)")
        return 0
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="worker-boot-") as workdir:
        results = measure(args.rounds, Path(workdir), prefix=args.prefix) if args.rounds else []
        prepares = measure_prepare(args.prepare_rounds, Path(workdir)) if args.prepare_rounds else []
    if prepares:
        print("prepare a print file: median " + ", ".join(
            f"{what} {statistics.median(p[i] for p in prepares):.3f} s"
            for i, what in enumerate(("read+decode+prepare", "encode+store", "read back prepared"))))
    if not results:
        return 0
    ready, acked, cpu_ready, cpu_acked = zip(*results, strict=True)
    print(f"spawn → ready: median {statistics.median(ready):.2f} s (min {min(ready):.2f}, max {max(ready):.2f}), "
          f"CPU median {statistics.median(cpu_ready):.2f} s (min {min(cpu_ready):.2f}); "
          f"spawn → first message acked: median {statistics.median(acked):.2f} s (min {min(acked):.2f}, "
          f"max {max(acked):.2f}), CPU median {statistics.median(cpu_acked):.2f} s (min {min(cpu_acked):.2f}); "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
