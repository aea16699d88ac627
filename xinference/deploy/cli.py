"""The command line: daemons (`xinference-local`, `-supervisor`, `-worker`) and the
client commands (`xinference launch/list/terminate/...`)."""

import asyncio
from typing import Optional

import click

from .. import __version__
from ..constants import DEFAULT_HOST, DEFAULT_LOG_LEVEL, DEFAULT_PORT, ENDPOINT_ENV, WORKER_TIMEOUT
from .logs import setup_logging

LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)


def _endpoint_option(f):
    return click.option(
        "-e", "--endpoint", default=None, envvar=ENDPOINT_ENV, show_envvar=True,
        help=f"REST endpoint of the cluster [default: http://{DEFAULT_HOST}:{DEFAULT_PORT}]",
    )(f)


def _endpoint(endpoint: Optional[str]) -> str:
    return (endpoint or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}").rstrip("/")


def _host_port(f):
    f = click.option("-H", "--host", default=DEFAULT_HOST, show_default=True, help="Address to bind.")(f)
    f = click.option("-p", "--port", default=DEFAULT_PORT, show_default=True, type=int, help="REST port.")(f)
    f = click.option("--log-level", default=DEFAULT_LOG_LEVEL, type=LOG_LEVELS, show_default=True)(f)
    return f


def _ui_option(f):
    return click.option("--ui/--no-ui", "ui", default=True, show_default=True,
                        help='Serve the web UI at /ui (needs pip install "xinference[ui]").')(f)


def _run_local(host: str, port: int, log_level: str, launch: Optional[str], worker_timeout: float,
               ui: bool = True) -> None:
    from .daemons import run_local
    from .ready import announce

    setup_logging(log_level)

    async def on_ready() -> None:
        await asyncio.to_thread(announce, f"http://{host}:{port}", launch)

    asyncio.run(run_local(host, port, worker_timeout, on_ready, ui))


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@_host_port
@_ui_option
@click.version_option(version=__version__, message="%(version)s")
@click.pass_context
def cli(ctx: click.Context, host: str, port: int, log_level: str, ui: bool) -> None:
    """Xinference: serve LLMs behind an OpenAI-compatible API.

    With no command, starts a local cluster (like xinference-local)."""
    if ctx.invoked_subcommand is None:
        _run_local(host, port, log_level, None, WORKER_TIMEOUT, ui)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@_host_port
@click.option("--launch", "launch", default=None, metavar="MODEL_NAME",
              help="Launch this builtin model once the cluster is up, e.g. gemma-3.")
@click.option("--worker-timeout", default=WORKER_TIMEOUT, show_default=True, type=float,
              help="Seconds without a heartbeat before a worker is dropped.")
@_ui_option
def local_main(host: str, port: int, log_level: str, launch: Optional[str], worker_timeout: float, ui: bool) -> None:
    """Start a supervisor, a worker, the REST API and the web UI on this machine."""
    _run_local(host, port, log_level, launch, worker_timeout, ui)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@_host_port
@click.option("--supervisor-port", default=None, type=int, help="Internal (xoscar) port [default: free port].")
@click.option("--worker-timeout", default=WORKER_TIMEOUT, show_default=True, type=float,
              help="Seconds without a heartbeat before a worker is dropped.")
@_ui_option
def supervisor_main(host: str, port: int, log_level: str, supervisor_port: Optional[int], worker_timeout: float,
                    ui: bool) -> None:
    """Start a supervisor, the REST API and the web UI; workers join with xinference-worker."""
    from .daemons import run_supervisor

    setup_logging(log_level)
    asyncio.run(run_supervisor(host, port, supervisor_port, worker_timeout, ui))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-e", "--endpoint", required=True, envvar=ENDPOINT_ENV, help="REST endpoint of the supervisor.")
@click.option("-H", "--host", default=DEFAULT_HOST, show_default=True, help="Address this worker binds and announces.")
@click.option("--worker-port", default=None, type=int, help="Internal (xoscar) port [default: free port].")
@click.option("--log-level", default=DEFAULT_LOG_LEVEL, type=LOG_LEVELS, show_default=True)
def worker_main(endpoint: str, host: str, worker_port: Optional[int], log_level: str) -> None:
    """Start a worker that joins the supervisor behind ENDPOINT."""
    from .daemons import run_worker

    setup_logging(log_level)
    asyncio.run(run_worker(endpoint, host, worker_port))


from . import commands, registry_commands  # noqa: E402,F401  register the client commands on `cli`

__all__ = ["cli", "local_main", "supervisor_main", "worker_main"]
