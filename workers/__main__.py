"""`python -m workers <module> [dramatiq options]`: the Dramatiq CLI with Pressroom's process defaults.

The Prometheus exporter is forked by the CLI's main process and reads its bind address from the
environment when it starts, defaulting to 0.0.0.0; this entry point makes loopback the default.
"""

from __future__ import annotations

import os
import sys

from dramatiq.cli import main

if __name__ == "__main__":
    os.environ.setdefault("dramatiq_prom_host", os.environ.get("PROMETHEUS_HOST", "127.0.0.1"))
    sys.exit(main())
