"""Finds a model's replicas once, then sends each request to the least busy one.

The supervisor is asked where a model lives only on a cache miss; afterwards the
REST process talks to the ModelActors directly. A replica that fails to answer
drops the cached entry so the next request asks again.

A request's `model` may be a model uid, a LoRA adapter's name or a model name: each
string is resolved once to (model uid, adapter), and every string that resolves to
one model shares that model's replicas, in-flight counts and request limit.
"""

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, List, NamedTuple, Optional, Tuple

import xoscar as xo
from xoscar.errors import ActorNotExist, ServerClosed

from ..core.placement import pick_replica
from ..errors import TooManyRequestsError
from .inflight import current

# What a replica whose process or worker went away raises.
CONNECTION_ERRORS = (ServerClosed, ConnectionError, ActorNotExist, OSError)
# What a replica reports about its load (LLMEngine.stats, DynamicBatcher.stats); summed over replicas.
LOAD_KEYS = ("slots_total", "slots_busy", "slots_free", "queue_length",
             "batches", "batched_requests")
# What a replica reports about how its engine runs the model (the same on every replica).
ENGINE_KEYS = ("device", "dtype", "packed", "batching")
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
    model_uid: str
    replicas: List[Replica]
    request_limits: Optional[int]
    lora_names: List[str] = field(default_factory=list)  # the model's LoRA adapters
    cursor: int = 0
    inflight: int = field(default=0)


class Lease(NamedTuple):
    """A held slot on one replica of a model, and the LoRA adapter the request's
    `model` named (None: it named the model itself)."""

    replica: Replica
    route: ModelRoute
    lora_name: Optional[str]


class ReplicaRouter:
    def __init__(self, supervisor: Any):
        self._supervisor = supervisor
        # what a request's `model` string resolved to: (model uid, LoRA adapter or None)
        self._names: Dict[str, Tuple[str, Optional[str]]] = {}
        # model uid -> its replicas
        self._routes: Dict[str, ModelRoute] = {}
        self._lock = asyncio.Lock()

    def _cached(self, model: str) -> Optional[Tuple[ModelRoute, Optional[str]]]:
        name = self._names.get(model)
        route = self._routes.get(name[0]) if name else None
        return (route, name[1]) if route and name else None

    async def _route(self, model: str) -> Tuple[ModelRoute, Optional[str]]:
        found = self._cached(model)
        if found is not None:
            return found
        async with self._lock:
            found = self._cached(model)
            if found is None:
                where = await self._supervisor.locate(model)
                uid = where["model_uid"]
                if uid not in self._routes:
                    replicas = [
                        Replica(r["replica_uid"], r["address"],
                                await xo.actor_ref(r["address"], r["replica_uid"]))
                        for r in where["replicas"]
                    ]
                    self._routes[uid] = ModelRoute(uid, replicas, where["request_limits"],
                                                   list(where.get("lora_names") or []))
                self._names[model] = (uid, where["lora_name"])
                found = self._routes[uid], where["lora_name"]
        return found

    async def stats(self, model: str) -> List[Dict[str, Any]]:
        """What this REST server sent to each ready replica since it found them, and
        each replica's own load (slots, queue) where it answers in time."""
        route, _ = await self._route(model)
        loads = await asyncio.gather(*(self._load(r) for r in route.replicas))
        return [
            {"replica_uid": r.replica_uid, "address": r.address, "inflight": r.inflight,
             "served": r.served, **load}
            for r, load in zip(route.replicas, loads)
        ]

    async def load(self, model: str) -> Dict[str, Any]:
        """Slots and queue summed over the replicas, and the engine's device and dtype:
        {} if none answered."""
        total: Dict[str, Any] = {}
        for row in await self.stats(model):
            for key in LOAD_KEYS:
                if key in row:
                    total[key] = total.get(key, 0) + int(row[key])
            for key in ENGINE_KEYS:
                if key in row:
                    total.setdefault(key, row[key])
        return total

    @staticmethod
    async def _load(replica: Replica) -> Dict[str, Any]:
        try:
            # xo.wait_for: a hung replica process would never answer asyncio's cancel
            desc = await xo.wait_for(replica.ref.describe(), LOAD_TIMEOUT_S)
        except (asyncio.TimeoutError, *CONNECTION_ERRORS):
            return {}
        return {k: desc[k] for k in (*LOAD_KEYS, *ENGINE_KEYS) if k in desc}

    def invalidate(self, model: str) -> None:
        """Forgets where `model` lives, and every other name that led to the same model."""
        uid = self._names.get(model, (model, None))[0]
        self._routes.pop(uid, None)
        self._names.pop(model, None)
        for name in [n for n, (u, _) in self._names.items() if u == uid]:
            del self._names[name]

    def forget_names(self) -> None:
        """Resolves every name again on next use (a launch may have made a model name
        ambiguous); routes and their in-flight counts stay."""
        self._names.clear()

    @asynccontextmanager
    async def acquire(self, model: str) -> AsyncIterator[Lease]:
        route, lora_name = await self._route(model)
        req = current()
        if req is not None:
            req.routed(route.model_uid)
        if route.request_limits is not None and route.inflight >= route.request_limits:
            raise TooManyRequestsError(
                f"Model {route.model_uid} is serving {route.inflight} requests, its limit "
                f"(request_limits={route.request_limits}); retry later."
            )
        i = pick_replica([r.inflight for r in route.replicas], route.cursor)
        route.cursor = (i + 1) % len(route.replicas)
        replica = route.replicas[i]
        replica.inflight += 1
        route.inflight += 1
        try:
            yield Lease(replica, route, lora_name)
        except CONNECTION_ERRORS:
            self.invalidate(model)
            raise
        finally:
            replica.inflight -= 1
            replica.served += 1
            route.inflight -= 1
