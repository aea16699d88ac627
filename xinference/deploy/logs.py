"""Logging set-up for the daemons."""

import logging

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT, force=True)
    # uvicorn's access log per request drowns everything else at INFO
    logging.getLogger("uvicorn.access").setLevel(max(logging.WARNING, logging.getLogger().level))
