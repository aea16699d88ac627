"""What the client commands (`xinference launch/list/...`) share: the options that say
which cluster to talk to, a client of it, and how a client error ends a command.

Each module of client commands declares them with `client_command`; cli.py attaches
them to the `xinference` group (so that no command module imports cli.py)."""

import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, NoReturn, Optional

import click

from ..client import Client
from ..constants import API_KEY_ENV, DEFAULT_HOST, DEFAULT_PORT, ENDPOINT_ENV

API_KEY_META = "xinference.api_key"
CLIENT_COMMANDS: List[click.Command] = []


def client_command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """`click.command`, registered for the `xinference` group."""

    def register(f: Callable[..., Any]) -> click.Command:
        command = click.command(*args, **kwargs)(f)
        CLIENT_COMMANDS.append(command)
        return command

    return register


def _remember_api_key(ctx: click.Context, _: click.Parameter, value: Optional[str]) -> None:
    if value:
        ctx.meta[API_KEY_META] = value


def endpoint_option(f: Any) -> Any:
    f = click.option(
        "--api-key", default=None, envvar=API_KEY_ENV, show_envvar=True, expose_value=False,
        callback=_remember_api_key, help="API key (or login token) of a cluster started with --auth-config.",
    )(f)
    return click.option(
        "-e", "--endpoint", default=None, envvar=ENDPOINT_ENV, show_envvar=True,
        help=f"REST endpoint of the cluster [default: http://{DEFAULT_HOST}:{DEFAULT_PORT}]",
    )(f)


def api_key() -> Optional[str]:
    """The --api-key of the command being run (or $XINFERENCE_API_KEY)."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(API_KEY_META) if ctx is not None else None


def endpoint_url(endpoint: Optional[str]) -> str:
    return (endpoint or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}").rstrip("/")


def fail(e: Exception) -> NoReturn:
    click.echo(f"Error: {e}", err=True)
    sys.exit(1)


@contextmanager
def cluster(endpoint: Optional[str]) -> Iterator[Client]:
    """A client of the cluster; an error it raises (the server's refusal, an endpoint
    that does not answer) ends the command with its message and exit status 1."""
    try:
        with Client(endpoint_url(endpoint), api_key=api_key()) as client:
            yield client
    except RuntimeError as e:
        fail(e)
