"""Every Dramatiq actor of Pressroom, declared on the process's broker: `dramatiq workers.actors`."""

from __future__ import annotations

import logging

from workers.bootstrap import container

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
logging.getLogger("httpx").setLevel(logging.WARNING)
container()  # sets the global broker before any actor below is declared

from workers import notify, production, qa, render, shipping  # noqa: E402,F401  (declare the stage actors)
