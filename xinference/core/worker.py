"""WorkerActor: one per machine. Starts a sub-process per replica and reports in."""

import asyncio
import logging
import os
import signal
from typing import Any, Dict, List, Optional, Set

import xoscar as xo

from ..constants import (
    CHECK_MEMORY,
    HEARTBEAT_INTERVAL,
    MAX_REPLICAS_PER_WORKER,
    trust_remote_code_allowed,
)
from ..errors import InvalidRequestError, LaunchFailedError, ModelNotFoundError, XinferenceError
from ..model.hub import cache
from ..model.launch_env import check_launch_env
from ..model.memory import MemoryNeed
from ..model.model_type import Plan
from ..model.plans import load_plan
from ..model.remote_code import check_allowed
from .discovery import supervisor_address_from
from .model_actor import ModelActor
from .placement import WorkerView, allocate_gpus, check_gpu_memory, choose_workers
from .resources import gpu_status, machine_status, unheld_bytes

logger = logging.getLogger(__name__)

WORKER_UID = "worker"


class ProcessDownRelay:
    """The pool's `on_process_down` hook, bound to the worker once it exists.

    xoscar calls it (sync, from the pool's loop) every ~0.5 s while a crashed sub
    pool is still registered; the worker removes it, which stops the calls.
    """

    def __init__(self) -> None:
        self.worker: Optional[Any] = None
        self._pending: set = set()

    def __call__(self, pool: Any, address: str) -> None:
        if self.worker is None or address in self._pending:
            return
        self._pending.add(address)
        task = asyncio.get_event_loop().create_task(self.worker.sub_pool_down(address))
        task.add_done_callback(lambda _t: self._pending.discard(address))


class WorkerActor(xo.StatelessActor):
    def __init__(self, supervisor_address: str, main_pool: Any, endpoint: Optional[str] = None,
                 api_key: Optional[str] = None):
        super().__init__()
        self._supervisor_address = supervisor_address
        # the supervisor's REST endpoint: asked for its address again when heartbeats fail
        self._endpoint = endpoint
        self._api_key = api_key
        self._pool = main_pool
        # replica uid -> its report: sub pool "address", and the "plan" and "model" a
        # restarted supervisor needs to adopt it again
        self._replicas: Dict[str, Dict[str, Any]] = {}
        # replica uid -> GPU indices reserved for it
        self._gpus: Dict[str, List[int]] = {}
        self._launching: Dict[str, str] = {}
        # replica uids from the start of launch_replica until it returns or fails
        self._starting: Set[str] = set()
        # replica uid -> the cache entry (model version) it uses, launching ones included
        self._versions: Dict[str, str] = {}
        # replica uid -> bytes of memory the supervisor placed for it (launching ones too)
        self._reserve: Dict[str, int] = {}
        self._heartbeat: Optional[asyncio.Task] = None
        self._supervisor: Any = None
        self._closed = False

    @classmethod
    def default_uid(cls) -> str:
        return WORKER_UID

    async def __post_create__(self) -> None:
        self._supervisor = await xo.actor_ref(self._supervisor_address, "supervisor")
        await self._register()
        self._heartbeat = asyncio.create_task(self._heartbeat_loop())

    async def __pre_destroy__(self) -> None:
        if self._heartbeat:
            self._heartbeat.cancel()
        await self.shutdown()

    async def _register(self) -> None:
        # Replicas running here are reported too: a restarted supervisor adopts them.
        await self._supervisor.add_worker(self.address, self._status(), list(self._replicas.values()))

    async def _heartbeat_loop(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            try:
                known = await xo.wait_for(
                    self._supervisor.heartbeat(self.address, self._status(), list(self._replicas)),
                    timeout=max(HEARTBEAT_INTERVAL, 5.0),
                )
                failures = 0
                if not known:
                    # The supervisor restarted or dropped us: register again.
                    await self._register()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # supervisor unreachable: keep trying
                failures += 1
                logger.warning("heartbeat to %s failed: %s", self._supervisor_address, e)
                if failures >= 2:
                    await self._find_supervisor()

    async def _find_supervisor(self) -> None:
        """Asks the REST endpoint where the supervisor is now: one restarted on another
        internal port is joined with the replicas that kept running here."""
        if not self._endpoint:
            return
        try:
            address = await asyncio.to_thread(supervisor_address_from, self._endpoint, self._api_key, 1)
        except SystemExit as e:  # the key was refused: nothing to retry with
            logger.error("%s", e)
            return
        if address is None or address == self._supervisor_address:
            return
        logger.warning("the supervisor moved from %s to %s; registering there", self._supervisor_address, address)
        self._supervisor_address = address
        self._supervisor = await xo.actor_ref(address, "supervisor")
        try:
            await self._register()
        except Exception as e:  # noqa: BLE001 - the next heartbeat tries again
            logger.warning("registering with %s failed: %s", address, e)

    def _status(self) -> Dict[str, Any]:
        # trust_remote_code: the supervisor places models that need it only here if set;
        # reserved: per replica, what it reserved and does not hold yet (memory_available
        # counts what it holds already)
        return {**machine_status(), "reserved_gpus": sorted(self._reserved_gpus()),
                "trust_remote_code": trust_remote_code_allowed(),
                "reserved": {uid: unheld_bytes(self._replicas.get(uid, {}).get("pid"), reserve)
                             for uid, reserve in self._reserve.items()}}

    def _reserved_gpus(self) -> set:
        return {i for held in self._gpus.values() for i in held}

    async def status(self) -> Dict[str, Any]:
        return {**self._status(), "replicas": sorted(self._replicas)}

    async def memory_need(self, plan: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """What one replica of `plan` would hold in this machine's memory, from the
        weights as they are here (None: cannot say). On a GPU the weights and KV cache
        live in GPU memory, which the launch checks on the GPUs it reserves."""
        launch = load_plan(plan)
        need = await asyncio.to_thread(launch.memory_need)
        if need is None:
            return None
        free_gpus = [g for g in gpu_status() if g["index"] not in self._reserved_gpus()]
        if (launch.n_gpu == "auto" and free_gpus) or (isinstance(launch.n_gpu, int) and launch.n_gpu > 0):
            need = MemoryNeed(weights=0, overhead=need.overhead, basis=need.basis)
        return need.as_dict()

    async def launch_replica(
        self,
        replica_uid: str,
        plan: Dict[str, Any],
        env: Optional[Dict[str, str]] = None,
        model: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Starts a sub-process, loads the model there, returns the replica's description."""
        launch = load_plan(plan)
        # Checked by the supervisor and the REST layer too; again here because any actor
        # that reaches this one could ask, and these are what the new process runs with.
        env = check_launch_env(env)
        check_allowed(launch.model_name, launch.needs_remote_code)
        held = len(set(self._replicas) | self._starting)
        if held >= MAX_REPLICAS_PER_WORKER:
            raise InvalidRequestError(
                f"Worker {self.address} holds {held} replicas, the most it may "
                f"(XINFERENCE_MAX_REPLICAS_PER_WORKER={MAX_REPLICAS_PER_WORKER}).",
                param="replica", code="replica_limit")
        if not launch.model_path:
            self._versions[replica_uid] = launch.model_version
        self._starting.add(replica_uid)
        self._reserve[replica_uid] = int((model or {}).get("reserve") or 0)
        try:
            return await self._launch(replica_uid, launch, env, model)
        finally:
            self._starting.discard(replica_uid)
            if replica_uid not in self._replicas:
                self._versions.pop(replica_uid, None)
                self._reserve.pop(replica_uid, None)

    async def _launch(self, replica_uid: str, launch: Plan, env: Optional[Dict[str, str]],
                      model: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        # the Python the replica's process runs (None: this one's); a plan this worker
        # cannot run fails here, before any process starts
        python = launch.interpreter()
        if launch.model_path:
            # A wrong path fails at once, before any process starts. Everything else
            # (cache, download) happens in the replica's process: cancelling the launch
            # ends a download with it, and this actor's heartbeats never wait on one.
            await asyncio.to_thread(launch.resolve_weights)
        gpu_list = gpu_status()
        gpus = allocate_gpus([g["index"] for g in gpu_list], self._reserved_gpus(), launch.n_gpu)
        if gpus and CHECK_MEMORY:
            need = await asyncio.to_thread(launch.memory_need)
            if need is not None:
                check_gpu_memory(need, gpu_list, gpus)
        launch.n_gpu = len(gpus)
        plan = launch.model_dump()
        # The replica sees only the GPUs reserved for it (none: CPU only).
        env = {**(env or {}), "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}
        self._gpus[replica_uid] = gpus
        try:
            sub_address = await self._pool.append_sub_pool(
                label=replica_uid, env=env, start_python=python)
        except BaseException:
            self._gpus.pop(replica_uid, None)
            raise
        self._launching[replica_uid] = sub_address
        try:
            ref = await xo.create_actor(
                ModelActor, replica_uid, plan, uid=replica_uid, address=sub_address
            )
            need = await ref.fetch()
            if need is not None and CHECK_MEMORY and not gpus:
                self._check_fits(replica_uid, MemoryNeed.from_dict(need))
            info = await ref.load()
        except BaseException as e:
            self._gpus.pop(replica_uid, None)
            await self._remove_sub_pool(sub_address)
            if isinstance(e, XinferenceError):
                raise
            if isinstance(e, asyncio.CancelledError):
                raise
            raise LaunchFailedError(
                f"Replica {replica_uid} failed to start on {self.address}: "
                f"{type(e).__name__}: {e}"
            ) from None
        finally:
            self._launching.pop(replica_uid, None)
        report = {**info, "address": sub_address, "worker_address": self.address}
        self._replicas[replica_uid] = {**report, "plan": plan, "model": model or {}}
        return report

    def _check_fits(self, replica_uid: str, need: MemoryNeed) -> None:
        """Once the weights are on disk the estimate is exact (a download's size, the
        KV cache read from its header): if it grew past what was reserved for this
        replica, the rest must fit in what is free here, or the launch stops before
        loading rather than being killed for memory later."""
        reserved = self._reserve.get(replica_uid, 0)
        if need.total <= reserved:
            return
        status = machine_status()
        others = sum(unheld_bytes(self._replicas.get(uid, {}).get("pid"), r)
                     for uid, r in self._reserve.items() if uid != replica_uid)
        free = status["memory_available"] - others + reserved
        here = WorkerView(self.address, 0, free, memory_total=status["memory_total"])
        choose_workers([here], 1, need={self.address: need})  # raises with the figures
        self._reserve[replica_uid] = need.total

    async def progress(self, replica_uid: str) -> Dict[str, Any]:
        sub = self._launching.get(replica_uid)
        if sub is None:
            done = replica_uid in self._replicas
            return {"stage": "ready" if done else "pending", "progress": 1.0 if done else 0.0}
        try:
            ref = await xo.actor_ref(sub, replica_uid)
            return await xo.wait_for(ref.progress(), timeout=2)
        except Exception:
            return {"stage": "starting", "progress": 0.0}  # the sub-process is still starting

    async def terminate_replica(self, replica_uid: str) -> bool:
        held = self._forget(replica_uid)
        sub = held["address"] if held else self._launching.get(replica_uid)
        if sub is None:
            return False
        try:
            ref = await xo.actor_ref(sub, replica_uid)
            await xo.wait_for(ref.close(), timeout=10)
        except Exception as e:
            logger.debug("closing %s: %s", replica_uid, e)
        await self._remove_sub_pool(sub)
        return True

    async def sub_pool_down(self, sub_address: str) -> None:
        lost = [uid for uid, r in self._replicas.items() if r["address"] == sub_address]
        for uid in lost:
            self._forget(uid)
        await self._remove_sub_pool(sub_address)
        for uid in lost:
            logger.error("replica %s died (process %s ended)", uid, sub_address)
            try:
                await self._supervisor.replica_lost(uid, "its process ended unexpectedly")
            except Exception as e:
                logger.warning("could not report lost replica %s: %s", uid, e)

    def _forget(self, replica_uid: str) -> Optional[Dict[str, Any]]:
        """Drops a replica's bookkeeping and frees its GPUs; returns its report."""
        self._gpus.pop(replica_uid, None)
        self._versions.pop(replica_uid, None)
        self._reserve.pop(replica_uid, None)
        return self._replicas.pop(replica_uid, None)

    async def _remove_sub_pool(self, sub_address: str) -> None:
        try:
            await self._pool.remove_sub_pool(sub_address)
        except Exception as e:  # already gone
            logger.debug("remove_sub_pool %s: %s", sub_address, e)

    # ---- the download cache --------------------------------------------------

    async def list_cached_models(self, model_name: Optional[str] = None) -> List[Dict[str, Any]]:
        rows = []
        for entry in await asyncio.to_thread(lambda: list(cache.cached_entries())):
            if model_name and entry.get("model_name") != model_name:
                continue
            rows.append({**entry, "actor_ip_address": self.address,
                         "worker_ip": self.address.rsplit(":", 1)[0]})
        return rows

    async def cached_files(self, model_version: str) -> List[str]:
        try:
            return await asyncio.to_thread(cache.entry_files, model_version)
        except ModelNotFoundError:
            return []

    async def remove_cached(self, model_version: str) -> bool:
        """Deletes a cache entry unless a replica here uses it; False when absent."""
        users = sorted(uid for uid, v in self._versions.items() if v == model_version)
        try:
            await asyncio.to_thread(cache.remove_entry, model_version, users)
        except ModelNotFoundError:
            return False
        logger.info("removed cached %s", model_version)
        return True

    async def drain(self, timeout: float) -> None:
        """Before a graceful stop: the supervisor routes nothing new to the replicas here
        and waits (at most `timeout` s) until they finish what they run."""
        try:
            await xo.wait_for(self._supervisor.drain_worker(self.address, timeout), timeout + 10)
        except Exception as e:  # noqa: BLE001 - no supervisor to ask: stop anyway
            logger.warning("draining through %s failed: %s", self._supervisor_address, e)

    async def exit_process(self, supervisor_pid: int) -> None:
        """Stops every replica here and signs off; then this daemon exits, unless it is
        the supervisor's own process (xinference-local), which the caller stops."""
        await self.shutdown()
        if os.getpid() != supervisor_pid:
            asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), signal.SIGTERM)

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._heartbeat:
            self._heartbeat.cancel()
        for uid in list(self._replicas) + list(self._launching):
            await self.terminate_replica(uid)
        try:
            await xo.wait_for(self._supervisor.remove_worker(self.address), timeout=3)
        except Exception:
            pass
