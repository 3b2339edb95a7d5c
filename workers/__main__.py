"""`python -m workers <module> [dramatiq options]`: the Dramatiq CLI with Pressroom's process defaults.

The Prometheus exporter is forked by the CLI's main process and reads its bind address from the
environment when it starts, defaulting to 0.0.0.0; this entry point makes loopback the default.

Pressroom's own modules are compiled to `__pycache__` before the worker process is forked: with
PYTHONDONTWRITEBYTECODE=1 (the Dockerfile's, and the soak's environment) nothing else writes them, so every
worker start compiled the ~100 modules it imports again (≈ 0.2 s of CPU of a 1 s boot, for a worker the sigkill
soak restarts every 4 s). Up-to-date files are only stat'ed; a read-only tree (the image compiles at build) is
left alone.
"""

from __future__ import annotations

import compileall
import os
import sys
from pathlib import Path

from dramatiq.cli import main

PACKAGES = ("core", "db", "adapters", "workers")
"""What a worker process imports of ours."""


def cache_bytecode(root: Path = Path(__file__).resolve().parent.parent) -> None:
    for package in PACKAGES:
        compileall.compile_dir(root / package, quiet=2)


if __name__ == "__main__":
    os.environ.setdefault("dramatiq_prom_host", os.environ.get("PROMETHEUS_HOST", "127.0.0.1"))
    cache_bytecode()
    sys.exit(main())
