"""ASGI entry for uvicorn (`uvicorn api.asgi:app`): the API's composition root reads the environment."""

from __future__ import annotations

import logging

from api.main import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
app = create_app()
