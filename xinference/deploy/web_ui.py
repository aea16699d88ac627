"""Mounts the web UI on the REST app at /ui, with / redirecting there. The UI talks
to this same server through the Python client, over HTTP, like any other client."""

import logging
from typing import Any, Callable

from fastapi.responses import RedirectResponse

logger = logging.getLogger(__name__)

UI_PATH = "/ui"


def self_url(host: str, port: int) -> str:
    """A URL of this server that a client in this process can reach."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _login(auth: Any) -> Callable[[str, str], bool]:
    def check(username: str, password: str) -> bool:
        try:
            auth.login(username, password)
        except Exception:
            return False
        return True

    return check


def attach_ui(app: Any, endpoint: str, auth: Any = None) -> bool:
    """Mounts the UI when Gradio is installed; the REST API serves either way. With
    `auth` (the server's Authenticator) the page asks for a login and calls the API
    with that user's token."""
    try:
        import gradio as gr
    except ImportError:
        logger.info('The web UI needs Gradio: pip install "xinference[ui]"')
        return False
    try:
        from ..web.app import build_ui, mount_options

        options = mount_options()
        token_for = None
        if auth is not None:
            options.update(auth=_login(auth), auth_message="Log in with a user of the server's --auth-config.")
            token_for = auth.issue
        gr.mount_gradio_app(app, build_ui(endpoint, token_for), path=UI_PATH, **options)
    except Exception:
        logger.exception("the web UI could not be built; serving the REST API without it")
        return False

    redirect_root(app, UI_PATH.lstrip("/") + "/")
    return True


def redirect_root(app: Any, target: str) -> None:
    """GET / goes to the web UI, or to the API docs without it (never a bare 405).
    The target is relative, so that a reverse proxy's path prefix survives."""

    async def to_target() -> RedirectResponse:
        return RedirectResponse(url=target)

    app.add_api_route("/", to_target, include_in_schema=False)
