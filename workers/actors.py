"""Every Dramatiq actor of Pressroom, declared on the process's broker: `dramatiq workers.actors`."""

from __future__ import annotations

import logging
import os

from workers.bootstrap import container

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
logging.getLogger("httpx").setLevel(logging.WARNING)
container()  # sets the global broker before any actor below is declared
if os.environ.get("PRESSROOM_STAGE_CPU") == "1":  # CPU per actor for the pipeline benchmark (workers/cpu.py)
    from workers.cpu import StageCpu

    container().broker.add_middleware(StageCpu(container().redis))

from workers import notify, production, qa, render, shipping  # noqa: E402,F401  (declare the stage actors)
