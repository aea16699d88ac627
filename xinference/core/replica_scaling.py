"""The supervisor's part that changes how many replicas a running model has: new ones
start while the others serve and join the routing when ready; a removed one leaves the
routing first, finishes what it runs (up to a drain timeout), then stops."""

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import xoscar as xo

from ..constants import MAX_REPLICAS, ROUTE_TTL_S
from ..errors import ConflictError, InvalidRequestError, ModelNotFoundError
from .records import ModelRecord, ReplicaRecord, WorkerRecord

logger = logging.getLogger(__name__)

# Seconds a removed replica may take to finish the requests it is running.
DRAIN_TIMEOUT_S = 30.0


class ReplicaScaling:
    """Mixed into SupervisorActor, whose state it shares."""

    _models: Dict[str, ModelRecord]
    _workers: Dict[str, WorkerRecord]
    _healing: Dict[str, Any]

    if TYPE_CHECKING:
        async def _place(self, plan: Any, count: int, worker_ip: Optional[str]) -> List[Tuple[str, int]]: ...

        def _record(self, model_uid: str) -> ModelRecord: ...

        def _persist(self) -> None: ...

    async def add_replicas(self, model_uid: str, count: int = 1,
                           worker_ip: Optional[str] = None) -> Dict[str, Any]:
        """Starts `count` more replicas of a running model; they serve once loaded. A
        replica that fails to start undoes the whole addition."""
        record = self._record(model_uid)
        if not record.launched:
            raise ConflictError(f"Model {model_uid} is still launching; add replicas once it is ready.",
                                param="model_uid")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidRequestError("count must be a positive integer.", param="count")
        if len(record.replicas) + count > MAX_REPLICAS:
            raise InvalidRequestError(
                f"{model_uid} has {len(record.replicas)} replicas; {count} more would pass "
                f"the most a model may have ({MAX_REPLICAS}, XINFERENCE_MAX_REPLICAS).",
                param="count", code="replica_limit")
        plan: Any = record.plan
        placed = await self._place(plan, count, worker_ip or record.worker_ip)
        taken = {r.replica_uid for r in record.replicas}
        index = 0
        added: List[ReplicaRecord] = []
        for address, reserve in placed:
            while f"{model_uid}-{index}" in taken:
                index += 1
            taken.add(f"{model_uid}-{index}")
            added.append(ReplicaRecord(f"{model_uid}-{index}", address, reserve=reserve))
        record.replicas.extend(added)  # listed as starting; routed to once ready
        dump = plan.model_dump()

        async def one(replica: ReplicaRecord) -> None:
            info = await self._workers[replica.worker_address].ref.launch_replica(
                replica.replica_uid, dump, record.env, record.replica_meta(replica))
            replica.address = info["address"]
            replica.context_length = info.get("context_length")
            replica.weights_bytes = info.get("weights_bytes")
            replica.ready, replica.ready_since = True, time.monotonic()
            record.events.add("added", replica.replica_uid, f"on worker {replica.worker_address}")

        results = await asyncio.gather(*(one(r) for r in added), return_exceptions=True)
        errors = [e for e in results if isinstance(e, BaseException)]
        if errors:
            for replica in added:
                await self._stop_replica(record, replica)
            record.events.add("add_failed", None, str(errors[0]))
            raise errors[0]
        record.wanted += count
        self._persist()
        logger.info("model %s: %d replica(s) added", model_uid, count)
        return {"model_uid": model_uid, "added": [r.replica_uid for r in added],
                "replica": len(record.replicas)}

    async def remove_replica(self, model_uid: str, replica_uid: str,
                             drain_timeout: float = DRAIN_TIMEOUT_S) -> Dict[str, Any]:
        """Takes one replica out of routing at once, lets it finish its requests, stops it."""
        record = self._record(model_uid)
        replica = next((r for r in record.replicas if r.replica_uid == replica_uid), None)
        if replica is None:
            known = ", ".join(r.replica_uid for r in record.replicas)
            raise ModelNotFoundError(f"Model {model_uid} has no replica {replica_uid!r}; its replicas: "
                                     f"{known}.", param="replica_id", code="replica_not_found")
        if replica.removing:
            raise ConflictError(f"Replica {replica_uid} is being removed already.", param="replica_id")
        if sum(not r.removing for r in record.replicas) == 1:
            raise InvalidRequestError(
                f"{replica_uid} is the last replica of {model_uid}: terminate the model instead.",
                param="replica_id")
        await self._stop_replica(record, replica, drain_timeout)
        record.wanted = max(1, record.wanted - 1)
        self._persist()
        record.events.add("removed", replica_uid, "removed on request")
        logger.info("model %s: replica %s removed", model_uid, replica_uid)
        return {"model_uid": model_uid, "removed": replica_uid, "replica": len(record.replicas)}

    async def _stop_replica(self, record: ModelRecord, replica: ReplicaRecord,
                            drain_timeout: float = 0.0) -> None:
        replica.removing = True  # locate no longer lists it; describe shows it draining
        task = self._healing.pop(replica.replica_uid, None)
        if task is not None:
            task.cancel()
        try:
            if replica.address and drain_timeout > 0:
                await drain_replica(replica, drain_timeout)
        finally:
            if replica in record.replicas:
                record.replicas.remove(replica)
        worker = self._workers.get(replica.worker_address)
        if worker is not None:
            try:
                await worker.ref.terminate_replica(replica.replica_uid)
            except Exception as e:  # noqa: BLE001 - its worker or process is gone already
                logger.debug("stopping %s: %s", replica.replica_uid, e)


async def drain_replica(replica: ReplicaRecord, timeout: float) -> None:
    """Waits until the replica runs no request (or `timeout`). A REST server may route
    to it until its next refresh of the model's replicas (ROUTE_TTL_S)."""
    deadline = time.monotonic() + timeout
    try:
        ref = await xo.actor_ref(replica.address, replica.replica_uid)
        await asyncio.sleep(min(timeout, ROUTE_TTL_S + 0.5))  # until every REST server refreshed
        while time.monotonic() < deadline:
            if (await xo.wait_for(ref.describe(), 5))["inflight"] == 0:
                return
            await asyncio.sleep(0.2)
        logger.warning("replica %s still busy after %g s; stopping it", replica.replica_uid, timeout)
    except Exception as e:  # noqa: BLE001 - gone already: nothing to drain
        logger.debug("draining %s: %s", replica.replica_uid, e)
