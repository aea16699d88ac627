"""Finds a model's replicas once, then sends each request to the least busy one.

The supervisor is asked where a model lives only on a cache miss; afterwards the
REST process talks to the ModelActors directly. A replica that fails to answer
drops the cached entry so the next request asks again.
"""

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, List, Optional

import xoscar as xo
from xoscar.errors import ActorNotExist, ServerClosed

from ..core.placement import pick_replica
from ..errors import TooManyRequestsError

# What a replica whose process or worker went away raises.
CONNECTION_ERRORS = (ServerClosed, ConnectionError, ActorNotExist, OSError)
# What a replica reports about its engine's load (see LLMEngine.stats).
LOAD_KEYS = ("slots_total", "slots_busy", "slots_free", "queue_length")
LOAD_TIMEOUT_S = 2.0


@dataclass
class Replica:
    replica_uid: str
    address: str
    ref: Any
    inflight: int = 0
    served: int = 0


@dataclass
class ModelRoute:
    replicas: List[Replica]
    request_limits: Optional[int]
    cursor: int = 0
    inflight: int = field(default=0)


class ReplicaRouter:
    def __init__(self, supervisor: Any):
        self._supervisor = supervisor
        self._routes: Dict[str, ModelRoute] = {}
        self._lock = asyncio.Lock()

    async def _route(self, model_uid: str) -> ModelRoute:
        route = self._routes.get(model_uid)
        if route is not None:
            return route
        async with self._lock:
            route = self._routes.get(model_uid)
            if route is None:
                found = await self._supervisor.get_replicas(model_uid)
                limits = await self._supervisor.request_limits(model_uid)
                replicas = [
                    Replica(r["replica_uid"], r["address"], await xo.actor_ref(r["address"], r["replica_uid"]))
                    for r in found
                ]
                route = ModelRoute(replicas, limits)
                self._routes[model_uid] = route
        return route

    async def stats(self, model_uid: str) -> List[Dict[str, Any]]:
        """What this REST server sent to each ready replica since it found them, and
        each replica's own load (slots, queue) where it answers in time."""
        route = await self._route(model_uid)
        loads = await asyncio.gather(*(self._load(r) for r in route.replicas))
        return [
            {"replica_uid": r.replica_uid, "address": r.address, "inflight": r.inflight,
             "served": r.served, **load}
            for r, load in zip(route.replicas, loads)
        ]

    async def load(self, model_uid: str) -> Dict[str, int]:
        """Slots and queue summed over the replicas: {} if none answered."""
        total: Dict[str, int] = {}
        for row in await self.stats(model_uid):
            for key in LOAD_KEYS:
                if key in row:
                    total[key] = total.get(key, 0) + int(row[key])
        return total

    @staticmethod
    async def _load(replica: Replica) -> Dict[str, Any]:
        try:
            desc = await asyncio.wait_for(replica.ref.describe(), LOAD_TIMEOUT_S)
        except (asyncio.TimeoutError, *CONNECTION_ERRORS):
            return {}
        return {k: desc[k] for k in LOAD_KEYS if k in desc}

    def invalidate(self, model_uid: str) -> None:
        self._routes.pop(model_uid, None)

    @asynccontextmanager
    async def acquire(self, model_uid: str) -> AsyncIterator[Replica]:
        route = await self._route(model_uid)
        if route.request_limits is not None and route.inflight >= route.request_limits:
            raise TooManyRequestsError(
                f"Model {model_uid} is serving {route.inflight} requests, its limit "
                f"(request_limits={route.request_limits}); retry later."
            )
        i = pick_replica([r.inflight for r in route.replicas], route.cursor)
        route.cursor = (i + 1) % len(route.replicas)
        replica = route.replicas[i]
        replica.inflight += 1
        route.inflight += 1
        try:
            yield replica
        except CONNECTION_ERRORS:
            self.invalidate(model_uid)
            raise
        finally:
            replica.inflight -= 1
            replica.served += 1
            route.inflight -= 1
