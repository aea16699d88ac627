"""Finds a model's replicas once, then sends each request to the least busy one.

The supervisor is asked where a model lives only on a cache miss; afterwards the
REST process talks to the ModelActors directly. A replica that cannot be reached
(its process or worker gone) is marked down and the request goes to another replica
at once (`open`, `call`: the one failover path of every endpoint); a background check
asks the supervisor again until the replica answers or is gone from the model.

A request's `model` may be a model uid, a LoRA adapter's name or a model name: each
string is resolved once to (model uid, adapter), and every string that resolves to
one model shares that model's replicas, in-flight counts and request limit.
"""

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Dict,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
)

from ..constants import ROUTE_TTL_S
from ..core.placement import pick_replica
from ..core.remote import CONNECTION_ERRORS, ReplicaHandle, unreachable
from ..core.supervisor_api import SupervisorAPI
from ..errors import ModelNotFoundError, ModelNotReadyError, TooManyRequestsError
from .inflight import current
from .prefix_affinity import PrefixAffinity

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Replicas one request tries before it gives up (each failure is quick: refused or closed).
MAX_ATTEMPTS = 4
# A request goes to the replica holding its prompt's beginning unless that replica runs
# this many more requests than the least busy one (then balancing wins).
AFFINITY_SLACK = 2
# Seconds between checks of a replica marked down (growing to the last).
RECHECK_DELAYS = (0.5, 1.0, 2.0, 4.0)
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
    handle: Optional[ReplicaHandle]  # None until connected
    inflight: int = 0
    served: int = 0
    down: bool = False  # could not be reached; skipped until a check finds it again


class ModelFacts(NamedTuple):
    """What a front end checks a request against before it reaches a replica."""

    model_uid: str
    abilities: Tuple[str, ...]  # "chat", "generate", "vision", "tools", "reasoning", ...
    context_length: Optional[int]  # the context the replicas were launched with


@dataclass
class ModelRoute:
    model_uid: str
    replicas: List[Replica]
    request_limits: Optional[int]
    lora_names: List[str] = field(default_factory=list)  # the model's LoRA adapters
    abilities: Tuple[str, ...] = ()
    context_length: Optional[int] = None
    cursor: int = 0
    inflight: int = field(default=0)
    fetched: float = field(default_factory=time.monotonic)
    refreshing: bool = False


class Lease(NamedTuple):
    """A held slot on one replica of a model, and the LoRA adapter the request's
    `model` named (None: it named the model itself)."""

    replica: Replica
    route: ModelRoute
    lora_name: Optional[str]

    @property
    def handle(self) -> ReplicaHandle:
        assert self.replica.handle is not None  # only a connected replica is leased
        return self.replica.handle


class ReplicaBalancer:
    def __init__(self, supervisor: SupervisorAPI):
        self._supervisor = supervisor
        # what a request's `model` string resolved to: (model uid, LoRA adapter or None)
        self._names: Dict[str, Tuple[str, Optional[str]]] = {}
        # model uid -> its replicas
        self._routes: Dict[str, ModelRoute] = {}
        self._lock = asyncio.Lock()
        self._checks: Dict[str, asyncio.Task] = {}  # model uid -> its replicas' recheck
        self._tasks: Set[asyncio.Task] = set()  # held so that they are not collected
        self._affinity = PrefixAffinity()

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _cached(self, model: str) -> Optional[Tuple[ModelRoute, Optional[str]]]:
        name = self._names.get(model)
        route = self._routes.get(name[0]) if name else None
        return (route, name[1]) if route and name else None

    async def _route(self, model: str) -> Tuple[ModelRoute, Optional[str]]:
        found = self._cached(model)
        if found is not None:
            route = found[0]
            if not route.refreshing and time.monotonic() - route.fetched > ROUTE_TTL_S:
                route.refreshing = True
                self._spawn(self._refresh_quietly(route))
            return found
        async with self._lock:
            found = self._cached(model)
            if found is None:
                where = await self._supervisor.locate(model)
                uid = where["model_uid"]
                if uid not in self._routes:
                    route = ModelRoute(uid, await _replicas(where, []), where["request_limits"])
                    _take_facts(route, where)
                    self._routes[uid] = route
                    if any(r.down for r in route.replicas):
                        self._watch(route)
                self._names[model] = (uid, where["lora_name"])
                found = self._routes[uid], where["lora_name"]
        return found

    async def _refresh(self, route: ModelRoute) -> None:
        """Asks the supervisor where the model's replicas are now; a replica it still
        lists keeps its counts and its down mark, a new one (relaunched) comes in up."""
        where = await self._supervisor.locate(route.model_uid)
        route.replicas = await _replicas(where, route.replicas)
        route.request_limits = where["request_limits"]
        _take_facts(route, where)
        route.fetched = time.monotonic()
        if any(r.down for r in route.replicas):
            self._watch(route)

    async def _refresh_quietly(self, route: ModelRoute) -> None:
        try:
            await self._refresh(route)
        except ModelNotFoundError:
            if self._routes.get(route.model_uid) is route:
                self.invalidate(route.model_uid)
        except Exception as e:  # noqa: BLE001 - none ready now: the cached list serves on
            logger.debug("refreshing %s: %s", route.model_uid, e)
        finally:
            route.refreshing = False
            route.fetched = time.monotonic()

    async def refresh(self, model: str) -> None:
        """Asks the supervisor for the model's replicas now (after scaling it)."""
        name = self._names.get(model, (model, None))[0]
        route = self._routes.get(name)
        if route is not None:
            await self._refresh_quietly(route)

    def exclude(self, model: str, replica_uid: str) -> None:
        """Sends no new request to that replica (it is being removed)."""
        route = self._routes.get(self._names.get(model, (model, None))[0])
        if route is not None:
            route.replicas = [r for r in route.replicas if r.replica_uid != replica_uid] or route.replicas

    async def facts(self, model: str) -> ModelFacts:
        route, _ = await self._route(model)
        return ModelFacts(route.model_uid, route.abilities, route.context_length)

    async def stats(self, model: str) -> List[Dict[str, Any]]:
        """What this REST server sent to each ready replica since it found them, and
        each replica's own load (slots, queue) where it answers in time."""
        route, _ = await self._route(model)
        loads = await asyncio.gather(*(self._load(r) for r in route.replicas))
        return [
            {"replica_uid": r.replica_uid, "address": r.address, "inflight": r.inflight,
             "served": r.served, **({"down": True} if r.down else {}), **load}
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
        if replica.down:
            return {}
        assert replica.handle is not None  # a replica not connected is down
        try:
            desc = await replica.handle.describe(LOAD_TIMEOUT_S)
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
        check = self._checks.pop(uid, None)
        if check is not None:
            check.cancel()

    def forget_names(self) -> None:
        """Resolves every name again on next use (a launch may have made a model name
        ambiguous); routes and their in-flight counts stay."""
        self._names.clear()

    # ---- leasing a replica -----------------------------------------------------------

    async def lease(self, model: str, avoid: Collection[str] = (), prefix: Sequence[bytes] = ()) -> Lease:
        """Holds a place on a reachable replica of `model` (not one in `avoid`): the one
        that served the longest of the prompt's `prefix` keys (prefix_affinity.py) unless
        it is much busier than the others, else the least busy; `release` gives it back."""
        route, lora_name = await self._route(model)
        req = current()
        if req is not None:
            req.routed(route.model_uid)
        if route.request_limits is not None and route.inflight >= route.request_limits:
            raise TooManyRequestsError(
                f"Model {route.model_uid} is serving {route.inflight} requests, its limit "
                f"(request_limits={route.request_limits}); retry later."
            )
        up = [r for r in route.replicas if not r.down and r.replica_uid not in avoid]
        if not up:
            # The supervisor may know of replicas this server has not seen (relaunched).
            try:
                await self._refresh(route)
            except ModelNotFoundError:
                self.invalidate(model)
                raise
            up = [r for r in route.replicas if not r.down and r.replica_uid not in avoid]
            if not up:
                raise ModelNotReadyError(
                    f"No replica of {route.model_uid} can be reached now; retry shortly.",
                    param="model")
        replica = self._by_prefix(route, up, prefix)
        if replica is None:
            replica = up[pick_replica([r.inflight for r in up], route.cursor % len(up))]
            route.cursor = (route.cursor + 1) % max(1, len(route.replicas))
        if prefix:
            self._affinity.remember(route.model_uid, list(prefix), replica.replica_uid)
        replica.inflight += 1
        route.inflight += 1
        return Lease(replica, route, lora_name)

    def _by_prefix(self, route: ModelRoute, up: List[Replica], prefix: Sequence[bytes]) -> Optional[Replica]:
        if not prefix or len(up) < 2:
            return None
        uid = self._affinity.lookup(route.model_uid, list(prefix))
        held = next((r for r in up if r.replica_uid == uid), None)
        if held is None or held.inflight > min(r.inflight for r in up) + AFFINITY_SLACK:
            return None
        return held

    @staticmethod
    def release(lease: Lease) -> None:
        lease.replica.inflight -= 1
        lease.replica.served += 1
        lease.route.inflight -= 1

    @asynccontextmanager
    async def acquire(self, model: str) -> AsyncIterator[Lease]:
        """A lease for the block's duration, without failover (what `open` builds on)."""
        lease = await self.lease(model)
        try:
            yield lease
        except BaseException as e:
            if unreachable(e):
                self.mark_down(lease, e)
            raise
        finally:
            self.release(lease)

    async def open(self, model: str, start: Callable[[Lease], Awaitable[T]],
                   prefix: Sequence[bytes] = ()) -> Tuple[Lease, T]:
        """Runs `start` on a replica of `model`; if that replica cannot be reached, marks
        it down and runs `start` on another at once. Returns what `start` returned with
        the lease still held: the caller releases it."""
        tried: Set[str] = set()
        while True:
            lease = await self.lease(model, tried, prefix)
            try:
                return lease, await start(lease)
            except BaseException as e:  # cancellation included: nothing stays held
                self.release(lease)
                if not unreachable(e):
                    raise
                self.mark_down(lease, e)
                tried.add(lease.replica.replica_uid)
                if len(tried) >= MAX_ATTEMPTS:
                    raise ModelNotReadyError(
                        f"No replica of {lease.route.model_uid} answered; retry shortly.",
                        param="model") from None

    async def call(self, model: str, fn: Callable[[Lease], Awaitable[T]], prefix: Sequence[bytes] = ()) -> T:
        """`open`, releasing the replica when `fn` is done."""
        lease, out = await self.open(model, fn, prefix)
        self.release(lease)
        return out

    # ---- replicas that could not be reached -------------------------------------------

    def mark_down(self, lease: Lease, error: BaseException) -> None:
        """Skips the lease's replica until a check finds it answering again."""
        replica, route = lease.replica, lease.route
        if replica.down:
            return
        replica.down = True
        logger.warning("replica %s of %s cannot be reached (%s: %s); trying the others",
                       replica.replica_uid, route.model_uid, type(error).__name__, error)
        self._watch(route)

    def _watch(self, route: ModelRoute) -> None:
        """Starts the route's recheck unless it runs."""
        uid = route.model_uid
        if uid not in self._checks and self._routes.get(uid) is route:
            task = self._spawn(self._recheck(route))
            self._checks[uid] = task
            task.add_done_callback(lambda t: self._checks.pop(uid, None) if self._checks.get(uid) is t else None)

    async def _recheck(self, route: ModelRoute) -> None:
        """Until no replica of the route is down: asks the supervisor which replicas the
        model has (one whose worker was lost goes) and whether a down one answers."""
        n = 0
        while any(r.down for r in route.replicas) and self._routes.get(route.model_uid) is route:
            await asyncio.sleep(RECHECK_DELAYS[min(n, len(RECHECK_DELAYS) - 1)])
            n += 1
            try:
                await self._refresh(route)
            except ModelNotFoundError:
                self.invalidate(route.model_uid)
                return
            except Exception as e:  # noqa: BLE001 - none ready, or the supervisor busy: later
                logger.debug("recheck of %s: %s", route.model_uid, e)
                continue
            for replica in [r for r in route.replicas if r.down]:
                if replica.handle is None and not await _connect(replica):
                    continue
                assert replica.handle is not None
                try:
                    await replica.handle.describe(LOAD_TIMEOUT_S)
                except (asyncio.TimeoutError, *CONNECTION_ERRORS):
                    continue
                replica.down = False
                logger.info("replica %s of %s answers again", replica.replica_uid, route.model_uid)


async def _replicas(where: Dict[str, Any], known: List[Replica]) -> List[Replica]:
    """The replicas `locate` listed, reusing `known` ones (their counts, their marks). One
    whose process cannot even be connected to comes in down, for the recheck."""
    by_uid = {r.replica_uid: r for r in known}
    out = []
    for r in where["replicas"]:
        old = by_uid.get(r["replica_uid"])
        if old is not None and old.address == r["address"] and old.handle is not None:
            out.append(old)
            continue
        replica = Replica(r["replica_uid"], r["address"], None)
        await _connect(replica)
        out.append(replica)
    return out


def _take_facts(route: ModelRoute, where: Dict[str, Any]) -> None:
    route.lora_names = list(where.get("lora_names") or [])
    route.abilities = tuple(where.get("model_ability") or ())
    ctx = where.get("context_length")
    route.context_length = int(ctx) if ctx else None


async def _connect(replica: Replica) -> bool:
    try:
        replica.handle = await ReplicaHandle.connect(replica.address, replica.replica_uid)
    except CONNECTION_ERRORS:
        replica.down = True
        return False
    return True
