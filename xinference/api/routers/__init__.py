"""The REST routes, one module per group; app.py includes them."""

from fastapi import Request

from ...core.supervisor_api import SupervisorAPI


def supervisor(request: Request) -> SupervisorAPI:
    """The supervisor's actor ref the app was made with, typed."""
    return request.app.state.supervisor
