"""The supervisor's part that brings replicas back: a replica whose process died, or
whose worker was lost, is relaunched on its worker (another if that one is gone) after
a growing delay, while its restart budget lasts (healing.py); meanwhile the model
serves from its other replicas. Every step is an event of the model's history."""

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ..errors import XinferenceError
from .records import ModelRecord, ReplicaRecord, WorkerRecord

logger = logging.getLogger(__name__)


class ReplicaHealing:
    """Mixed into SupervisorActor, whose state it shares."""

    _models: Dict[str, ModelRecord]
    _workers: Dict[str, WorkerRecord]
    _healing: Dict[str, asyncio.Task]
    _launches: Dict[str, asyncio.Task]
    _failed: Dict[str, str]

    if TYPE_CHECKING:
        async def _place(self, plan: Any, count: int, worker_ip: Optional[str]) -> List[Tuple[str, int]]: ...

        def _record(self, model_uid: str) -> ModelRecord: ...

        def _persist(self) -> None: ...

    def _drop_replica(self, record: ModelRecord, replica: ReplicaRecord, reason: str) -> None:
        if replica in record.replicas:
            record.replicas.remove(replica)
            logger.warning("replica %s removed: %s", replica.replica_uid, reason)
        if not record.replicas:
            self._models.pop(record.model_uid, None)
            self._persist()
            self._failed[record.model_uid] = f"its last replica was lost: {reason}"
            task = self._launches.get(record.model_uid)
            if task:
                task.cancel()

    def _replica_down(self, record: ModelRecord, replica: ReplicaRecord, kind: str, reason: str) -> None:
        """A replica stopped serving (`kind`: crashed, worker_lost): relaunch it, or drop
        it when its model is still launching or its budget is spent."""
        uid = replica.replica_uid
        record.events.add(kind, uid, reason)
        if replica.removing:
            return  # it was being stopped anyway
        if replica.restarting:
            return  # its relaunch is under way: that attempt fails and is retried
        if not record.launched or record.cancelled:
            self._drop_replica(record, replica, reason)  # the launch itself fails
            return
        if not replica.budget.take():
            self._give_up(record, replica, reason)
            return
        replica.ready, replica.address, replica.restarting = False, None, True
        replica.draining = False
        task = asyncio.get_running_loop().create_task(self._relaunch(record, replica, reason))
        self._healing[uid] = task
        task.add_done_callback(lambda t: self._healing.pop(uid, None) if self._healing.get(uid) is t else None)

    def _give_up(self, record: ModelRecord, replica: ReplicaRecord, reason: str) -> None:
        budget = replica.budget
        record.events.add("gave_up", replica.replica_uid,
                          f"relaunched {budget.spent} times within {budget.window_s:g} s "
                          "(XINFERENCE_MAX_RESTARTS, XINFERENCE_RESTART_WINDOW_S); it stays down")
        replica.restarting = False
        self._drop_replica(record, replica, reason)

    async def _relaunch(self, record: ModelRecord, replica: ReplicaRecord, cause: str) -> None:
        uid = replica.replica_uid
        plan = record.plan.model_dump()
        while True:
            await asyncio.sleep(replica.budget.delay())
            if self._models.get(record.model_uid) is not record or replica not in record.replicas:
                return  # terminated meanwhile
            try:
                address = await self._relaunch_target(record, replica)
            except XinferenceError as e:
                address, error = None, f"no worker can take it: {e.message}"
            if address is not None:
                replica.worker_address = address
                record.events.add("relaunching", uid, f"on worker {address}")
                try:
                    info = await self._workers[address].ref.launch_replica(
                        uid, plan, record.env, record.replica_meta(replica))
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - the next attempt, or give up
                    error = e.message if isinstance(e, XinferenceError) else f"{type(e).__name__}: {e}"
                else:
                    replica.address = info["address"]
                    replica.context_length = info.get("context_length")
                    replica.weights_bytes = info.get("weights_bytes")
                    replica.ready, replica.restarting = True, False
                    replica.ready_since = time.monotonic()
                    record.events.add("relaunched", uid, f"serving again on worker {address}")
                    logger.info("replica %s of %s relaunched on %s", uid, record.model_uid, address)
                    return
            record.events.add("relaunch_failed", uid, error)
            logger.warning("relaunching replica %s failed: %s", uid, error)
            if not replica.budget.take():
                self._give_up(record, replica, f"{cause}, and it could not be relaunched: {error}")
                return

    async def _relaunch_target(self, record: ModelRecord, replica: ReplicaRecord) -> str:
        """The replica's own worker while it is registered (its memory is still
        reserved there), else the one placement picks."""
        if replica.worker_address in self._workers:
            return replica.worker_address
        [(address, reserve)] = await self._place(record.plan, 1, record.worker_ip)
        replica.reserve = reserve
        return address

    def _stop_healing(self, record: ModelRecord) -> None:
        for replica in record.replicas:
            task = self._healing.pop(replica.replica_uid, None)
            if task is not None:
                task.cancel()

    async def model_events(self, model_uid: str) -> List[Dict[str, Any]]:
        """The model's history: crashes, lost workers, relaunches, newest last."""
        return self._record(model_uid).events.listing()
