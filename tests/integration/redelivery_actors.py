"""A worker module for the redelivery test: an actor that hangs on its first run, as if mid-label."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dramatiq

from adapters.broker import make_broker
from core.settings import Settings

broker = make_broker(Settings.from_env(os.environ))


@dramatiq.actor(queue_name="redelivery_test", actor_name="redelivery_test.hang_once", max_retries=0)
def hang_once(marker_dir: str) -> None:
    """Leave a mark per run; the first run hangs until the worker is killed."""
    folder = Path(marker_dir)
    run = len(list(folder.glob("run-*"))) + 1
    (folder / f"run-{run}-{os.getpid()}").touch()
    if run == 1:
        time.sleep(300)
