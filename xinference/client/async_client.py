"""The asyncio twin of `Client`: the same methods, arguments and answers, awaited.

Both clients send the calls described in `calls`; this one with httpx, over one
connection pool per client (close it with `aclose()` or `async with`)."""

from typing import Any, Dict, Optional

import httpx

from . import calls, inference
from .async_handles import HANDLES, AsyncModelHandle
from .async_transport import method, send
from .calls import Call


class AsyncClient:
    def __init__(self, base_url: Optional[str] = None, api_key: Optional[str] = None, timeout: Optional[float] = None):
        self.base_url = calls.endpoint(base_url)
        # Each call sets its own timeout (`Call.bounded`); None here only stops httpx's
        # 5 s default from reaching a call that forgets to.
        self._http = httpx.AsyncClient(timeout=None)
        # Shared with the handles by reference, so that a login reaches them too.
        self._headers: Dict[str, str] = calls.auth_headers(api_key)
        self._timeout = timeout

    async def aclose(self) -> None:
        await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _send(self, call: Call[Any]) -> Any:
        return await send(self._http, self.base_url, self._headers, self._timeout, call)

    async def login(self, username: str, password: str) -> None:
        """Exchanges a username and password (of the server's --auth-config) for a
        token that the following calls send."""
        self._headers["Authorization"] = f"Bearer {await self._send(calls.login(username, password))}"

    async def get_model(self, model_uid: str) -> AsyncModelHandle:
        kind = await self._send(inference.get_model(model_uid))
        return HANDLES[kind](model_uid, self.base_url, self._http, self._headers)

    launch_model = method(calls.launch_model)
    terminate_model = method(calls.terminate_model)
    list_models = method(calls.list_models)
    describe_model = method(calls.describe_model)
    get_launch_model_progress = method(calls.get_launch_model_progress)
    cancel_launch_model = method(calls.cancel_launch_model)
    abort_request = method(calls.abort_request)
    add_model_replicas = method(calls.add_model_replicas)
    remove_model_replica = method(calls.remove_model_replica)
    get_model_replicas = method(calls.get_model_replicas)
    get_model_events = method(calls.get_model_events)
    abort_cluster = method(calls.abort_cluster)
    get_instance_info = method(calls.get_instance_info)
    list_model_registrations = method(calls.list_model_registrations)
    get_model_registration = method(calls.get_model_registration)
    register_model = method(calls.register_model)
    unregister_model = method(calls.unregister_model)
    list_cached_models = method(calls.list_cached_models)
    list_deletable_models = method(calls.list_deletable_models)
    confirm_and_remove_model = method(calls.confirm_and_remove_model)
    query_engine_by_model_name = method(calls.query_engine_by_model_name)
    get_workers_info = method(calls.get_workers_info)
    get_cluster_info = method(calls.get_cluster_info)
    _get_supervisor_internal_address = method(calls.get_supervisor_internal_address)


AsyncRESTfulClient = AsyncClient
