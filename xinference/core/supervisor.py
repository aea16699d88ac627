"""SupervisorActor: the registry of workers and models, and the name server."""

import asyncio
import logging
import os
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

import xoscar as xo

from ..constants import HEARTBEAT_INTERVAL, MAX_REPLICAS, WORKER_TIMEOUT
from ..errors import (
    ConflictError,
    InvalidRequestError,
    LaunchFailedError,
    ModelNotFoundError,
    ModelNotReadyError,
    XinferenceError,
)
from ..model.launch_env import check_launch_env
from ..model.plans import load_plan, model_type_name, plan_model
from ..model.registry import ModelRegistry
from ..types import LoRASpec
from .launched_store import LaunchedStore
from .model_restore import ModelRestore
from .records import ModelRecord, ReplicaRecord, WorkerRecord
from .replica_healing import ReplicaHealing
from .replica_placement import ReplicaPlacement
from .replica_scaling import ReplicaScaling, drain_replica

logger = logging.getLogger(__name__)

SUPERVISOR_UID = "supervisor"


class SupervisorActor(ReplicaPlacement, ReplicaHealing, ReplicaScaling, ModelRestore, xo.StatelessActor):
    def __init__(
        self, worker_timeout: float = WORKER_TIMEOUT, heartbeat_interval: float = HEARTBEAT_INTERVAL,
        store: Optional[LaunchedStore] = None, restore: bool = True,
    ):
        super().__init__()
        # what was launched, for a restart (None: kept nowhere); restore: bring it back
        self._store = store or LaunchedStore(None)
        self._restore_saved = restore
        self._restoring: Optional[asyncio.Task] = None
        self._worker_timeout = worker_timeout
        self._heartbeat_interval = heartbeat_interval
        self._workers: Dict[str, WorkerRecord] = {}
        self._models: Dict[str, ModelRecord] = {}
        self._launches: Dict[str, asyncio.Task] = {}
        self._healing: Dict[str, asyncio.Task] = {}  # replica uid -> its relaunch
        self._failed: Dict[str, str] = {}
        # the error a failed launch raised, for callers that report it later (Ollama's pull)
        self._launch_errors: Dict[str, XinferenceError] = {}
        # model uid -> replica processes that died under it (GET /metrics)
        self._replica_deaths: Dict[str, int] = {}
        self._watchdog: Optional[asyncio.Task] = None
        self._started = time.time()
        self._registry = ModelRegistry()

    @classmethod
    def default_uid(cls) -> str:
        return SUPERVISOR_UID

    async def __post_create__(self) -> None:
        loaded = self._registry.load_persisted()
        if loaded:
            logger.info("loaded %d registered model(s)", loaded)
        self._watchdog = asyncio.create_task(self._watch_workers())
        if self._restore_saved:
            self._restoring = asyncio.create_task(self._restore())
        else:
            self._forget_launched()

    async def __pre_destroy__(self) -> None:
        for task in (self._watchdog, self._restoring):
            if task:
                task.cancel()

    # ---- workers -----------------------------------------------------------

    async def add_worker(
        self, address: str, status: Dict[str, Any], replicas: Optional[List[Dict[str, Any]]] = None
    ) -> None:
        ref = await xo.actor_ref(address, "worker")
        self._workers[address] = WorkerRecord(address=address, status=status, ref=ref)
        logger.info("worker %s registered", address)
        for report in replicas or []:
            if not self._adopt(address, report):
                # relaunched elsewhere meanwhile (a restore that did not wait for this
                # worker): the copy here would hold memory with nothing routed to it
                logger.warning("worker %s runs %s, which runs elsewhere now; stopping it", address,
                               report["replica_uid"])
                await ref.terminate_replica(report["replica_uid"])

    def _adopt(self, worker_address: str, report: Dict[str, Any]) -> bool:
        """Takes back a replica a worker kept running while this supervisor was away;
        False when a replica of that name runs elsewhere."""
        meta = report.get("model") or {}
        model_uid = meta.get("model_uid")
        if not model_uid:
            return True
        replica = ReplicaRecord(
            replica_uid=report["replica_uid"],
            worker_address=worker_address,
            address=report["address"],
            ready=True,
            ready_since=time.monotonic(),
            context_length=report.get("context_length"),
            weights_bytes=report.get("weights_bytes"),
            reserve=int(meta.get("reserve") or 0),
        )
        record = self._models.get(model_uid)
        if record is None:
            record = ModelRecord(
                model_uid=model_uid,
                plan=load_plan(report["plan"]),
                replicas=[],
                request_limits=meta.get("request_limits"),
                launched=True,  # it ran before this supervisor started: it heals from now on
            )
            self._models[model_uid] = record
            self._failed.pop(model_uid, None)
        known = next((r for r in record.replicas if r.replica_uid == replica.replica_uid), None)
        if known is not None and known.ready:
            return known.worker_address == worker_address and known.address == replica.address
        if known is not None:  # being relaunched: the copy that kept running serves instead
            relaunch = self._healing.pop(known.replica_uid, None)
            if relaunch is not None:
                relaunch.cancel()
            record.replicas.remove(known)
            record.events.add("adopted", replica.replica_uid, f"kept running on worker {worker_address}")
        record.replicas.append(replica)
        record.wanted = max(record.wanted, len(record.replicas))
        logger.info("adopted replica %s of %s on %s", replica.replica_uid, model_uid, worker_address)
        return True

    async def heartbeat(self, address: str, status: Dict[str, Any], replicas: List[str]) -> bool:
        record = self._workers.get(address)
        if record is None:
            return False
        record.status = status
        record.last_seen = time.monotonic()
        # A replica the worker no longer has (its loss report went astray) is dropped.
        # A heartbeat sent just before a launch finished may arrive after it: skip
        # replicas that became ready moments ago.
        held = set(replicas)
        settled = time.monotonic() - 2 * self._heartbeat_interval
        for model in list(self._models.values()):
            for replica in list(model.replicas):
                if (replica.worker_address == address and replica.ready
                        and replica.ready_since < settled and replica.replica_uid not in held):
                    self._replica_down(model, replica, "crashed", f"worker {address} no longer runs it")
        return True

    async def drain_worker(self, address: str, timeout: float) -> None:
        """A worker about to stop: its replicas leave the routing now and finish what
        they run (at most `timeout` s); once it has left they are relaunched elsewhere."""
        leaving = [r for m in self._models.values() for r in m.replicas
                   if r.worker_address == address and r.ready]
        for replica in leaving:
            replica.draining = True
        await asyncio.gather(*(drain_replica(r, timeout) for r in leaving))

    async def remove_worker(self, address: str, reason: str = "it shut down") -> None:
        if self._workers.pop(address, None) is None:
            return
        logger.warning("worker %s removed: %s", address, reason)
        for record in list(self._models.values()):
            lost = [r for r in record.replicas if r.worker_address == address]
            for replica in lost:
                self._replica_down(record, replica, "worker_lost", f"worker {address} is gone ({reason})")

    async def _watch_workers(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._worker_timeout / 4))
            now = time.monotonic()
            for address, record in list(self._workers.items()):
                if now - record.last_seen > self._worker_timeout:
                    await self.remove_worker(
                        address, f"no heartbeat for {self._worker_timeout:g} s"
                    )

    async def list_workers(self) -> List[Dict[str, Any]]:
        return [w.view() for w in self._workers.values()]

    async def cluster_info(self) -> Dict[str, Any]:
        return {"address": self.address, "started": self._started, "workers": len(self._workers)}

    # ---- models ------------------------------------------------------------

    async def launch_model(self, request: Dict[str, Any], wait_ready: bool = True) -> str:
        req = dict(request)
        model_uid = req.pop("model_uid", None) or str(uuid.uuid4().hex[:12])
        replica = _replica_count(req.pop("replica", 1))
        worker_ip = req.pop("worker_ip", None)
        request_limits = req.pop("request_limits", None)
        env = check_launch_env(req.pop("env", None)) or None
        n_gpu = req.pop("n_gpu", "auto")
        if model_uid in self._models or model_uid in self._launches:
            raise ConflictError(f"Model {model_uid!r} is already running.", param="model_uid")
        owner = self._adapter_owner(model_uid)
        if owner is not None:
            raise ConflictError(
                f"{model_uid!r} is the name of a LoRA adapter of running model "
                f"{owner.model_uid}; model uids and adapter names share one namespace.",
                param="model_uid",
            )
        kind = model_type_name(req.pop("model_type", None))
        family = self._registry.get(kind, req.get("model_name", ""))
        pinned = self._registry.worker_ip(kind, family.model_name)  # type: ignore[attr-defined]
        if pinned and worker_ip and worker_ip != pinned:
            raise InvalidRequestError(
                f"{family.model_name} was registered on worker {pinned}; it cannot launch on "  # type: ignore[attr-defined]
                f"{worker_ip}.", param="worker_ip")
        worker_ip = worker_ip or pinned
        plan = plan_model(kind, family=family, **req)
        self._check_lora_names(model_uid, plan.adapters())
        plan.n_gpu = n_gpu
        placed = await self._place(plan, replica, worker_ip)
        if model_uid in self._models or model_uid in self._launches:  # taken while we asked
            raise ConflictError(f"Model {model_uid!r} is already running.", param="model_uid")
        record = ModelRecord(
            model_uid=model_uid,
            plan=plan,
            replicas=[ReplicaRecord(f"{model_uid}-{i}", addr, reserve=reserve)
                      for i, (addr, reserve) in enumerate(placed)],
            request_limits=request_limits,
            env=env,
            worker_ip=worker_ip,
            launch_request={**request, "model_uid": model_uid},
            wanted=replica,
        )
        self._models[model_uid] = record
        self._failed.pop(model_uid, None)
        self._launch_errors.pop(model_uid, None)
        task = asyncio.create_task(self._launch_replicas(record, env))
        self._launches[model_uid] = task
        if not wait_ready:
            task.add_done_callback(_retrieve)
            return model_uid
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if record.cancelled:  # POST /v1/models/{uid}/cancel: an answer, not a dropped call
                raise ConflictError(f"The launch of {model_uid} was cancelled.", param="model_uid",
                                    code="launch_cancelled") from None
            raise
        return model_uid

    async def launch_error(self, model_uid: str) -> Optional[XinferenceError]:
        """What the last launch of `model_uid` failed with, if it failed."""
        return self._launch_errors.get(model_uid)

    async def cancel_launch(self, model_uid: str) -> None:
        """Stops a launch in any stage (download included); its processes end and the
        model is forgotten. The bytes downloaded so far stay for the next launch."""
        task = self._launches.get(model_uid)
        record = self._models.get(model_uid)
        if task is None or record is None:
            if model_uid in self._models:
                raise InvalidRequestError(
                    f"Model {model_uid} is not launching (it is ready); terminate it instead.",
                    param="model_uid")
            raise self._not_found(model_uid)
        record.cancelled = True
        task.cancel()
        try:
            await task
        except BaseException:
            pass
        self._failed[model_uid] = "its launch was cancelled"
        logger.info("launch of %s cancelled", model_uid)

    async def _launch_replicas(self, record: ModelRecord, env: Optional[Dict[str, str]]) -> None:
        plan = record.plan.model_dump()

        async def one(replica: ReplicaRecord) -> None:
            worker = self._workers[replica.worker_address].ref
            info = await worker.launch_replica(replica.replica_uid, plan, env, record.replica_meta(replica))
            replica.address = info["address"]
            replica.context_length = info.get("context_length")
            replica.weights_bytes = info.get("weights_bytes")
            replica.ready = True
            replica.ready_since = time.monotonic()

        try:
            results = await asyncio.gather(
                *(one(r) for r in record.replicas), return_exceptions=True
            )

            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                await self._undo_launch(record)
                error = errors[0]
                if not isinstance(error, XinferenceError):
                    # e.g. the worker went away mid-launch: say so, not "internal error"
                    error = LaunchFailedError(
                        f"Launching {record.model_uid} failed: {type(error).__name__}: {error}"
                    )
                self._failed[record.model_uid] = f"its launch failed: {error}"
                self._launch_errors[record.model_uid] = error
                raise error
            record.launched = True
            self._persist()
            logger.info("model %s ready with %d replica(s)", record.model_uid, len(record.replicas))
        except asyncio.CancelledError:
            await self._undo_launch(record)
            raise
        finally:
            self._launches.pop(record.model_uid, None)

    async def _undo_launch(self, record: ModelRecord) -> None:
        self._models.pop(record.model_uid, None)
        for replica in record.replicas:
            worker = self._workers.get(replica.worker_address)
            if worker is not None:
                try:
                    await worker.ref.terminate_replica(replica.replica_uid)
                except Exception as e:
                    logger.debug("undo %s: %s", replica.replica_uid, e)

    def _check_lora_names(self, model_uid: str, lora_list: List[LoRASpec]) -> None:
        """Adapter names are model ids: each must be free among uids and adapters."""
        for spec in lora_list:
            name = spec.lora_name
            if name == model_uid:
                clash = "the uid of the model being launched"
            elif name in self._models:
                clash = "the uid of a running model"
            else:
                owner = self._adapter_owner(name)
                if owner is None:
                    continue
                clash = f"already a LoRA adapter of running model {owner.model_uid}"
            raise ConflictError(
                f"LoRA name {name!r} is {clash}; model uids and adapter names share one "
                "namespace, pick another lora_name.",
                param="peft_model_config",
            )

    def _adapter_owner(self, name: str) -> Optional[ModelRecord]:
        """The running model that has a LoRA adapter called `name`, if any."""
        return next((r for r in self._models.values() if name in r.lora_names), None)

    def _record(self, model_uid: str) -> ModelRecord:
        """The model whose uid is exactly `model_uid`."""
        record = self._models.get(model_uid)
        if record is None:
            raise self._not_found(model_uid)
        return record

    def _resolve(self, model: str, by_name: bool = False) -> Tuple[ModelRecord, Optional[str]]:
        """What a request's `model` names: a model uid, one of a model's LoRA adapters
        (then also the adapter's name), or with `by_name` a model name that only one
        running model has (OpenAI clients often send that)."""
        record = self._models.get(model)
        if record is not None:
            return record, None
        owner = self._adapter_owner(model)
        if owner is not None:
            return owner, model
        if by_name:
            named = [r for r in self._models.values() if r.plan.model_name == model]
            if len(named) == 1:
                return named[0], None
        raise self._not_found(model)

    def _not_found(self, model_uid: str) -> ModelNotFoundError:
        failed = self._failed.get(model_uid)
        message = (
            f"Model {model_uid} is not running: {failed}"
            if failed
            else f"Model not found in the model list, uid: {model_uid}."
        )
        return ModelNotFoundError(message, param="model", code="model_not_found")

    async def replica_lost(self, replica_uid: str, reason: str) -> None:
        for record in list(self._models.values()):
            for replica in list(record.replicas):
                if replica.replica_uid == replica_uid and not replica.restarting:
                    self._replica_deaths[record.model_uid] = self._replica_deaths.get(record.model_uid, 0) + 1
                    self._replica_down(record, replica, "crashed", reason)

    async def replica_deaths(self) -> Dict[str, int]:
        """model uid -> how many of its replica processes died since this supervisor started."""
        return dict(self._replica_deaths)

    async def terminate_model(self, model_uid: str) -> None:
        owner = None if model_uid in self._models else self._adapter_owner(model_uid)
        if owner is not None:
            raise InvalidRequestError(
                f"{model_uid} is a LoRA adapter of model {owner.model_uid}, not a model of its "
                f"own: terminate {owner.model_uid} to unload it (with all its adapters).",
                param="model_uid",
            )
        record = self._record(model_uid)
        task = self._launches.get(model_uid)
        if task is not None:
            task.cancel()
            try:
                await task
            except BaseException:
                pass
        self._models.pop(model_uid, None)
        self._persist()
        self._stop_healing(record)
        for replica in record.replicas:
            worker = self._workers.get(replica.worker_address)
            if worker is not None:
                await worker.ref.terminate_replica(replica.replica_uid)
        logger.info("model %s terminated", model_uid)

    async def stop_cluster(self) -> Dict[str, Any]:
        """Terminates every model and forgets them (a restart brings none back), then
        tells each worker on another machine or process to exit. The caller stops this
        process."""
        models = list(self._models)
        for uid in models:
            try:
                await self.terminate_model(uid)
            except XinferenceError as e:
                logger.warning("stopping %s: %s", uid, e.message)
        self._forget_launched()
        workers = list(self._workers.values())
        for worker in workers:
            try:
                await xo.wait_for(worker.ref.exit_process(os.getpid()), timeout=30)
            except Exception as e:  # noqa: BLE001 - a worker already gone stops nothing
                logger.warning("stopping worker %s: %s", worker.address, e)
        logger.info("cluster stopped: %d model(s), %d worker(s)", len(models), len(workers))
        return {"models": models, "workers": [w.address for w in workers]}

    async def describe_model(self, model_uid: str) -> Dict[str, Any]:
        record, lora_name = self._resolve(model_uid)
        return record.describe_adapter(lora_name) if lora_name else record.describe()

    async def list_models(self) -> Dict[str, Dict[str, Any]]:
        """Every model id: each running model, then each of its LoRA adapters."""
        listed: Dict[str, Dict[str, Any]] = {}
        for uid, record in self._models.items():
            listed[uid] = record.describe()
            for name in record.lora_names:
                listed[name] = record.describe_adapter(name)
        return listed

    async def model_progress(self, model_uid: str) -> Dict[str, Any]:
        """The launch's progress (0-1), its stage, and per replica the stage and the
        download's bytes, speed and ETA."""
        record, _ = self._resolve(model_uid)

        async def one(replica: ReplicaRecord) -> Dict[str, Any]:
            if replica.ready:
                report: Dict[str, Any] = {"stage": "ready", "progress": 1.0}
            else:
                worker = self._workers.get(replica.worker_address)
                try:
                    report = await worker.ref.progress(replica.replica_uid) if worker else {}
                except Exception:
                    report = {}
            return {"replica_uid": replica.replica_uid, "worker_address": replica.worker_address,
                    "stage": "pending", "progress": 0.0, **report}

        replicas = list(await asyncio.gather(*(one(r) for r in record.replicas)))
        values = [r["progress"] for r in replicas]
        stages = [r["stage"] for r in replicas]
        stage = next((s for s in ("downloading", "waiting_for_download", "starting", "loading",
                                  "pending") if s in stages), "ready")
        return {"progress": 1.0 if record.ready else round(sum(values) / max(1, len(values)), 4),
                "stage": "ready" if record.ready else stage, "replicas": replicas}

    async def locate(self, model: str) -> Dict[str, Any]:
        """Where a request's `model` goes: the model uid, the LoRA adapter to apply
        (None: the base model), the model's adapters, the ready replicas (the REST
        layer talks to them directly), the model's request limit, and its abilities
        and context length."""
        record, lora_name = self._resolve(model, by_name=True)
        ready = [r for r in record.replicas if r.ready and r.address and not (r.draining or r.removing)]
        if not ready:
            restarting = sum(r.restarting for r in record.replicas)
            why = (f"its {restarting} replica(s) are being relaunched after a failure" if restarting
                   else "it is still loading")
            raise ModelNotReadyError(f"Model {record.model_uid} has no ready replica: {why}; "
                                     "retry shortly.", param="model")
        desc = record.describe()
        return {
            "model_uid": record.model_uid,
            "lora_name": lora_name,
            "lora_names": record.lora_names,
            "replicas": [{"replica_uid": r.replica_uid, "address": str(r.address)} for r in ready],
            "request_limits": record.request_limits,
            # what the front ends check requests against, cached with the replicas
            "model_ability": list(desc.get("model_ability") or []),
            "context_length": desc.get("context_length"),
        }

    # ---- catalogue ---------------------------------------------------------

    async def list_model_registrations(self, model_type: str, detailed: bool = False) -> List[Dict[str, Any]]:
        return self._registry.rows(model_type, detailed)

    async def get_model_registration(self, model_type: str, model_name: str) -> Dict[str, Any]:
        return self._registry.registration(model_type, model_name)

    async def query_engines(self, model_name: str) -> Dict[str, List[Dict[str, Any]]]:
        engines: Dict[str, List[Dict[str, Any]]] = {}
        for row in self._registry.engines(model_name):
            engines.setdefault(row.pop("engine"), []).append(row)
        return engines

    async def register_model(self, model_type: str, model: Any, persist: bool,
                             worker_ip: Optional[str] = None) -> None:
        if worker_ip and not self._workers_at(worker_ip):
            raise InvalidRequestError(f"No worker at {worker_ip}.", param="worker_ip")
        family = self._registry.register(model_type, model, persist, worker_ip)
        logger.info("registered %s model %s%s", model_type, family.model_name,  # type: ignore[attr-defined]
                    " (persisted)" if persist else "")

    async def unregister_model(self, model_type: str, model_name: str) -> None:
        kind = model_type_name(model_type)
        users = [r.model_uid for r in self._models.values()
                 if r.plan.model_type == kind and r.plan.model_name == model_name]
        if users and self._registry.is_custom(kind, model_name):
            raise ConflictError(f"{model_name} is running as {', '.join(users)}; terminate it first.",
                                param="model_name")
        self._registry.unregister(kind, model_name)

    # ---- cache -------------------------------------------------------------

    def _workers_at(self, worker_ip: Optional[str]) -> List[WorkerRecord]:
        return [w for w in self._workers.values()
                if not worker_ip or w.address.rsplit(":", 1)[0] == worker_ip]

    def _cache_workers(self, worker_ip: Optional[str]) -> List[WorkerRecord]:
        workers = self._workers_at(worker_ip)
        if worker_ip and not workers:
            raise InvalidRequestError(f"No worker at {worker_ip}.", param="worker_ip")
        return workers

    async def list_cached_models(self, model_name: Optional[str] = None,
                                 worker_ip: Optional[str] = None) -> List[Dict[str, Any]]:
        rows: List[Dict[str, Any]] = []
        for worker in self._cache_workers(worker_ip):
            rows += await worker.ref.list_cached_models(model_name)
        return rows

    async def list_deletable_models(self, model_version: str, worker_ip: Optional[str] = None) -> List[str]:
        paths: List[str] = []
        for worker in self._cache_workers(worker_ip):
            paths += await worker.ref.cached_files(model_version)
        if not paths:
            raise ModelNotFoundError(f"No cached model version {model_version!r}"
                                     + (f" on {worker_ip}." if worker_ip else "."),
                                     param="model_version", code="model_not_found")
        return paths

    async def confirm_and_remove_model(self, model_version: str, worker_ip: Optional[str] = None) -> bool:
        removed = [await w.ref.remove_cached(model_version) for w in self._cache_workers(worker_ip)]
        if not any(removed):
            raise ModelNotFoundError(f"No cached model version {model_version!r}"
                                     + (f" on {worker_ip}." if worker_ip else "."),
                                     param="model_version", code="model_not_found")
        return True


def _replica_count(value: Any) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REPLICAS:
        raise InvalidRequestError(
            f"replica must be an integer from 1 to {MAX_REPLICAS} (XINFERENCE_MAX_REPLICAS on "
            f"the server); got {value!r}.", param="replica")
    return value


def _retrieve(task: asyncio.Task) -> None:
    # Nobody awaits a launch started with wait_ready=false; its error is kept in
    # `_failed` and logged here instead of as "exception was never retrieved".
    if not task.cancelled() and task.exception() is not None:
        logger.error("launch failed: %s", task.exception())


__all__ = ["SupervisorActor", "SUPERVISOR_UID"]
