"""The command line: daemons (`xinference-local`, `-supervisor`, `-worker`) and the
client commands (`xinference launch/list/terminate/...`)."""

import asyncio
import os
from typing import Any, Optional, Tuple

import click

from .. import __version__
from ..constants import (
    API_KEY_ENV,
    DEFAULT_HOST,
    DEFAULT_LOG_LEVEL,
    DEFAULT_PORT,
    ENDPOINT_ENV,
    TRUST_REMOTE_CODE_ENV,
    WORKER_TIMEOUT,
)
from . import commands, registry_commands, replica_commands  # noqa: F401  they declare the client commands
from .endpoint import CLIENT_COMMANDS
from .logs import setup_logging

LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)


def _host_port(f):
    f = click.option("-H", "--host", default=DEFAULT_HOST, show_default=True, help="Address to bind.")(f)
    f = click.option("-p", "--port", default=DEFAULT_PORT, show_default=True, type=int, help="REST port.")(f)
    f = click.option("--log-level", default=DEFAULT_LOG_LEVEL, type=LOG_LEVELS, show_default=True)(f)
    return f


def _ui_option(f):
    return click.option("--ui/--no-ui", "ui", default=True, show_default=True,
                        help='Serve the web UI at /ui (needs pip install "xinference[ui]").')(f)


def _worker_timeout_option(f):
    return click.option("--worker-timeout", default=WORKER_TIMEOUT, show_default=True, type=float,
                        help="Seconds without a heartbeat before a worker is dropped.")(f)


def _load_auth(ctx: click.Context, _: click.Parameter, value: Optional[str]) -> Any:
    if not value:
        return None
    from ..api.auth.config import AuthConfigError, load_auth_config

    try:
        return load_auth_config(value)
    except AuthConfigError as e:
        raise click.BadParameter(str(e)) from None


def _origins(ctx: click.Context, _: click.Parameter, value: Tuple[str, ...]) -> Tuple[str, ...]:
    out = []
    for item in value:
        for origin in item.split(","):
            origin = origin.strip().rstrip("/")
            if origin and origin != "*" and "://" not in origin:
                raise click.BadParameter(f"{origin!r} is not an origin like https://app.example.com (or *)")
            if origin:
                out.append(origin)
    return tuple(out)


def _rest_security_options(f):
    f = click.option("--auth-config", "auth", default=None, type=click.Path(dir_okay=False), callback=_load_auth,
                     help="JSON file of users, permissions and API keys (Xinference's format): every route "
                          "but /status then needs a key or a login token.")(f)
    f = click.option("--allowed-origins", "allowed_origins", multiple=True, callback=_origins,
                     help="Browser origins (besides this server's own and loopback ones) that may call the "
                          "API, comma-separated or repeated; * allows any.")(f)
    return f


def _trust_remote_code_option(f):
    return click.option("--trust-remote-code", is_flag=True, default=False, envvar=TRUST_REMOTE_CODE_ENV,
                        show_envvar=True,
                        help="Let model folders run their own Python code (Hugging Face's trust_remote_code). "
                             "Off by default: only for models you trust.")(f)


def _restore_option(f):
    return click.option("--no-restore", "no_restore", is_flag=True, default=False,
                        help="Start without the models that ran before the last stop (and forget them). "
                             "By default a restart brings them back.")(f)


def _shutdown_option(f):
    return click.option("--shutdown-timeout", default=30.0, show_default=True, type=click.FloatRange(0, 3600),
                        help="On SIGINT/SIGTERM, seconds to let running requests finish before stopping "
                             "(new ones get 503); a second signal stops at once.")(f)


def _allow_remote_code(enabled: bool) -> None:
    # read by the worker and inherited by every model process it starts
    if enabled:
        os.environ[TRUST_REMOTE_CODE_ENV] = "1"
    else:
        os.environ.pop(TRUST_REMOTE_CODE_ENV, None)


def _run_local(host: str, port: int, log_level: str, launch: Optional[str], worker_timeout: float,
               ui: bool = True, auth: Any = None, allowed_origins: Tuple[str, ...] = (),
               trust_remote_code: bool = False, restore: bool = True,
               shutdown_timeout: float = 30.0) -> None:
    from ..api.settings import ServerSettings
    from .daemons import run_local
    from .ready import announce

    setup_logging(log_level)
    _allow_remote_code(trust_remote_code)
    settings = ServerSettings(host=host, port=port, allowed_origins=allowed_origins, auth=auth)

    async def on_ready() -> None:
        await asyncio.to_thread(announce, f"http://{host}:{port}", launch, settings)

    asyncio.run(run_local(settings, worker_timeout, on_ready, ui, restore, shutdown_timeout))


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@_host_port
@_ui_option
@_rest_security_options
@_trust_remote_code_option
@_restore_option
@_shutdown_option
@click.version_option(version=__version__, message="%(version)s")
@click.pass_context
def cli(ctx: click.Context, host: str, port: int, log_level: str, ui: bool, auth: Any,
        allowed_origins: Tuple[str, ...], trust_remote_code: bool, no_restore: bool,
        shutdown_timeout: float) -> None:
    """Xinference: serve LLMs behind an OpenAI-compatible API.

    With no command, starts a local cluster (like xinference-local)."""
    if ctx.invoked_subcommand is None:
        _run_local(host, port, log_level, None, WORKER_TIMEOUT, ui, auth, allowed_origins, trust_remote_code,
                   not no_restore, shutdown_timeout)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@_host_port
@click.option("--launch", "launch", default=None, metavar="MODEL_NAME",
              help="Launch this builtin model once the cluster is up, e.g. gemma-3.")
@_worker_timeout_option
@_ui_option
@_rest_security_options
@_trust_remote_code_option
@_restore_option
@_shutdown_option
def local_main(host: str, port: int, log_level: str, launch: Optional[str], worker_timeout: float, ui: bool,
               auth: Any, allowed_origins: Tuple[str, ...], trust_remote_code: bool, no_restore: bool,
               shutdown_timeout: float) -> None:
    """Start a supervisor, a worker, the REST API and the web UI on this machine."""
    _run_local(host, port, log_level, launch, worker_timeout, ui, auth, allowed_origins, trust_remote_code,
               not no_restore, shutdown_timeout)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@_host_port
@click.option("--supervisor-port", default=None, type=int, help="Internal (xoscar) port [default: free port].")
@_worker_timeout_option
@_ui_option
@_rest_security_options
@_restore_option
@_shutdown_option
def supervisor_main(host: str, port: int, log_level: str, supervisor_port: Optional[int], worker_timeout: float,
                    ui: bool, auth: Any, allowed_origins: Tuple[str, ...], no_restore: bool,
                    shutdown_timeout: float) -> None:
    """Start a supervisor, the REST API and the web UI; workers join with xinference-worker."""
    from ..api.settings import ServerSettings
    from .daemons import run_supervisor

    setup_logging(log_level)
    settings = ServerSettings(host=host, port=port, allowed_origins=allowed_origins, auth=auth)
    asyncio.run(run_supervisor(settings, supervisor_port, worker_timeout, ui, not no_restore, shutdown_timeout))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-e", "--endpoint", required=True, envvar=ENDPOINT_ENV, help="REST endpoint of the supervisor.")
@click.option("-H", "--host", default=DEFAULT_HOST, show_default=True, help="Address this worker binds and announces.")
@click.option("--worker-port", default=None, type=int, help="Internal (xoscar) port [default: free port].")
@click.option("--log-level", default=DEFAULT_LOG_LEVEL, type=LOG_LEVELS, show_default=True)
@click.option("--api-key", default=None, envvar=API_KEY_ENV, show_envvar=True,
              help="An admin API key, when the supervisor runs with --auth-config.")
@_trust_remote_code_option
@_shutdown_option
def worker_main(endpoint: str, host: str, worker_port: Optional[int], log_level: str, api_key: Optional[str],
                trust_remote_code: bool, shutdown_timeout: float) -> None:
    """Start a worker that joins the supervisor behind ENDPOINT."""
    from .daemons import run_worker

    setup_logging(log_level)
    _allow_remote_code(trust_remote_code)
    asyncio.run(run_worker(endpoint, host, worker_port, api_key, shutdown_timeout))


for _command in CLIENT_COMMANDS:
    cli.add_command(_command)

__all__ = ["cli", "local_main", "supervisor_main", "worker_main"]
