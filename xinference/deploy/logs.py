"""Logging set-up for the daemons."""

import logging

# request_tag: " [request id]" on lines logged while serving a request, else ""
FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(request_tag)s: %(message)s"


def setup_logging(level: str) -> None:
    from ..api.request_log import install_request_ids

    logging.basicConfig(level=level.upper(), format=FORMAT, force=True)
    install_request_ids()
    # uvicorn's access log per request drowns everything else at INFO
    logging.getLogger("uvicorn.access").setLevel(max(logging.WARNING, logging.getLogger().level))
