"""The daemons: local cluster, supervisor, worker.

Each runs one xoscar main pool in this process. Where there is a REST server, uvicorn
runs as a task on the pool's own event loop (handlers await actor refs directly);
model replicas live in sub-processes that the worker starts. A first SIGINT/SIGTERM
stops gracefully: the REST server refuses new requests (503) and lets the running ones
finish, a worker's replicas leave the routing and finish theirs, up to
--shutdown-timeout; a second signal stops at once. Then every replica is terminated and
the pool stopped: nothing is left behind.
"""

import asyncio
import logging
import signal
import socket
from contextlib import nullcontext
from typing import Any, Callable, Coroutine, Optional

import uvicorn
import xoscar as xo

from ..api.app import create_app
from ..api.settings import ServerSettings
from ..constants import WORKER_TIMEOUT, XINFERENCE_STATE_DIR
from ..core.discovery import supervisor_address_from
from ..core.launched_store import LaunchedStore
from ..core.supervisor import SupervisorActor
from ..core.worker import ProcessDownRelay, WorkerActor
from .web_ui import UI_PATH, attach_ui, redirect_root, self_url

logger = logging.getLogger(__name__)

KEEP_ALIVE_S = 75
# Seconds a graceful stop waits for running requests (streams included) to finish.
SHUTDOWN_TIMEOUT_S = 30.0
LOOPBACK = "127.0.0.1"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Server(uvicorn.Server):
    def capture_signals(self):  # type: ignore[override]
        # The daemon owns signals: it must clean up replicas after uvicorn stops.
        return nullcontext()


class _Signals:
    """The first SIGINT/SIGTERM asks for a graceful stop (running requests finish, up to
    --shutdown-timeout); a second one, or a stop by request, stops at once."""

    def __init__(self) -> None:
        self.graceful = asyncio.Event()
        self.now = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)

    def _on_signal(self) -> None:
        if self.graceful.is_set():
            logger.warning("second signal: stopping now")
            self.now.set()
        else:
            logger.info("stopping: letting running requests finish (a second Ctrl+C stops at once)")
            self.graceful.set()

    async def first(self, *events: asyncio.Event) -> None:
        """Waits until any of `events` is set."""
        waits = [asyncio.create_task(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()


async def _create_pool(host: str, port: Optional[int]) -> "tuple[Any, ProcessDownRelay]":
    relay = ProcessDownRelay()
    pool = await xo.create_actor_pool(
        f"{host}:{port or free_port(host)}",
        n_process=0,
        auto_recover=False,
        on_process_down=relay,
    )
    return pool, relay


async def _start_worker(pool: Any, relay: ProcessDownRelay, supervisor_address: str,
                        endpoint: Optional[str] = None, api_key: Optional[str] = None) -> Any:
    worker = await xo.create_actor(
        WorkerActor, supervisor_address, pool, endpoint, api_key,
        uid=WorkerActor.default_uid(), address=pool.external_address
    )
    relay.worker = worker
    return worker


async def _serve_rest(supervisor: Any, supervisor_address: str, settings: ServerSettings,
                      signals: _Signals, on_ready: Optional[Callable[[], Coroutine[Any, Any, None]]] = None,
                      ui: bool = True, shutdown_timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
    host, port = settings.host, settings.port
    app = create_app(supervisor, supervisor_address, settings)
    app.state.request_exit = signals.now.set
    # Importing Gradio and building the page takes seconds: off the loop, which the
    # supervisor and the worker share.
    ui = ui and await asyncio.to_thread(attach_ui, app, self_url(host, port), app.state.auth)
    if not ui:
        redirect_root(app, "docs")
    # Keep idle connections longer than clients do (httpx, under the openai and ollama
    # SDKs, keeps them 5 s, uvicorn's own default): with equal timeouts a client reuses a
    # connection just as the server closes it, and its request fails with a reset.
    config = uvicorn.Config(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=3,
                            timeout_keep_alive=KEEP_ALIVE_S)
    server = _Server(config)
    serve = asyncio.create_task(server.serve())
    while not server.started:
        if serve.done():
            serve.result()  # port in use and the like: raise it
            return
        await asyncio.sleep(0.02)
    logger.info("Xinference REST API at http://%s:%d (docs at /docs)", host, port)
    if ui:
        logger.info("Web UI at http://%s:%d%s/", host, port, UI_PATH)
    if on_ready is not None:
        asyncio.create_task(on_ready())
    stopper = asyncio.create_task(signals.first(signals.graceful, signals.now))
    await asyncio.wait({serve, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if signals.graceful.is_set() and not signals.now.is_set() and not serve.done():
        drain = app.state.drain
        drain.begin()
        logger.info("refusing new requests; waiting for %d running (at most %g s)", drain.active,
                    shutdown_timeout)
        idle = asyncio.create_task(drain.wait_idle(shutdown_timeout))
        await asyncio.wait({serve, idle, asyncio.create_task(signals.now.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        if not idle.done() or not idle.result():
            logger.warning("stopping with %d request(s) still running", drain.active)
    server.should_exit = True
    await serve
    stopper.cancel()


async def _shutdown(pool: Any, worker: Any = None) -> None:
    if worker is not None:
        try:
            await xo.wait_for(worker.shutdown(), timeout=30)
        except Exception as e:
            logger.warning("worker shutdown: %s", e)
    await pool.stop()


def _store(settings: ServerSettings) -> LaunchedStore:
    return LaunchedStore.for_endpoint(XINFERENCE_STATE_DIR, settings.host, settings.port)


async def run_local(settings: ServerSettings, worker_timeout: float = WORKER_TIMEOUT,
                    on_ready: Optional[Callable[[], Coroutine[Any, Any, None]]] = None, ui: bool = True,
                    restore: bool = True, shutdown_timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
    signals = _Signals()
    # The actor pools take unauthenticated pickled messages: on one machine they
    # listen on loopback only, whatever address the REST API binds.
    pool, relay = await _create_pool(LOOPBACK, None)
    worker = None
    try:
        address = pool.external_address
        supervisor = await xo.create_actor(
            SupervisorActor, worker_timeout, store=_store(settings), restore=restore,
            uid=SupervisorActor.default_uid(), address=address
        )
        worker = await _start_worker(pool, relay, address)
        await _serve_rest(supervisor, address, settings, signals, on_ready, ui, shutdown_timeout)
    finally:
        logger.info("shutting down")
        await _shutdown(pool, worker)


async def run_supervisor(settings: ServerSettings, supervisor_port: Optional[int] = None,
                         worker_timeout: float = WORKER_TIMEOUT, ui: bool = True, restore: bool = True,
                         shutdown_timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
    signals = _Signals()
    pool, _ = await _create_pool(settings.host, supervisor_port)
    try:
        address = pool.external_address
        supervisor = await xo.create_actor(
            SupervisorActor, worker_timeout, store=_store(settings), restore=restore,
            uid=SupervisorActor.default_uid(), address=address
        )
        logger.info("supervisor at %s", address)
        await _serve_rest(supervisor, address, settings, signals, ui=ui, shutdown_timeout=shutdown_timeout)
    finally:
        logger.info("shutting down")
        await pool.stop()


async def run_worker(endpoint: str, host: str, worker_port: Optional[int] = None,
                     api_key: Optional[str] = None, shutdown_timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
    supervisor_address = await asyncio.to_thread(supervisor_address_from, endpoint, api_key)
    if supervisor_address is None:
        raise SystemExit(f"Cannot reach the supervisor's endpoint {endpoint}.")
    signals = _Signals()
    pool, relay = await _create_pool(host, worker_port)
    worker = None
    try:
        worker = await _start_worker(pool, relay, supervisor_address, endpoint, api_key)
        logger.info("worker at %s registered with supervisor %s", pool.external_address, supervisor_address)
        await signals.first(signals.graceful, signals.now)
        if not signals.now.is_set():
            # its replicas leave the routing and finish what they run; the supervisor
            # relaunches them on the other workers once this one has left
            draining = asyncio.create_task(worker.drain(shutdown_timeout))
            await asyncio.wait({draining, asyncio.create_task(signals.now.wait())},
                               return_when=asyncio.FIRST_COMPLETED)
    finally:
        logger.info("shutting down")
        await _shutdown(pool, worker)
