"""The supervisor's part that decides where replicas go: the workers' view (replica
counts, free memory less what their replicas reserved), what one replica of a model
needs on each worker (each worker estimates it from the weights it has), and the
choice itself (placement.choose_workers)."""

import asyncio
import logging
from typing import Any, Dict, List, Optional, Tuple

import xoscar as xo

from ..constants import CHECK_MEMORY, MAX_REPLICAS_PER_WORKER
from ..model.memory import MemoryNeed
from .placement import WorkerView, choose_workers, outstanding
from .records import ModelRecord, WorkerRecord

logger = logging.getLogger(__name__)

# Seconds a worker may take to estimate a replica's memory (it reads a file header).
ESTIMATE_TIMEOUT_S = 10.0


class ReplicaPlacement:
    """Mixed into SupervisorActor, whose state it shares."""

    _models: Dict[str, ModelRecord]
    _workers: Dict[str, WorkerRecord]

    async def _place(self, plan: Any, count: int, worker_ip: Optional[str]) -> List[Tuple[str, int]]:
        """A worker for each of `count` replicas of `plan`, with the bytes of memory
        each replica reserves there."""
        n_gpu = plan.n_gpu if isinstance(getattr(plan, "n_gpu", None), int) else 0
        needs = await self._memory_needs(plan, worker_ip)
        addresses = choose_workers(
            self._worker_views(), count, worker_ip, n_gpu, max_per_worker=MAX_REPLICAS_PER_WORKER,
            remote_code_model=plan.model_name if plan.needs_remote_code else None, need=needs)
        return [(a, needs[a].total if a in needs else 0) for a in addresses]

    async def _memory_needs(self, plan: Any, worker_ip: Optional[str]) -> Dict[str, MemoryNeed]:
        """What one replica needs on each worker that may take it and could say (a
        worker that cannot, or does not answer in time, is placed as before)."""
        if not CHECK_MEMORY:
            return {}
        dump = plan.model_dump()
        asked = [w for w in self._workers.values()
                 if not worker_ip or worker_ip in (w.address, w.address.rsplit(":", 1)[0])]

        async def ask(worker: WorkerRecord) -> Tuple[str, Optional[Dict[str, Any]]]:
            try:
                return worker.address, await xo.wait_for(worker.ref.memory_need(dump), ESTIMATE_TIMEOUT_S)
            except Exception as e:  # noqa: BLE001 - an estimate, not a reason to fail
                logger.warning("worker %s could not estimate %s: %r", worker.address, plan.model_name, e)
                return worker.address, None

        answers = await asyncio.gather(*(ask(w) for w in asked))
        return {address: MemoryNeed.from_dict(need) for address, need in answers if need}

    def _worker_views(self) -> List[WorkerView]:
        return [
            WorkerView(
                w.address,
                self._replicas_on(w.address),
                int(w.status.get("memory_available", 0)) - outstanding(
                    w.status.get("reserved") or {}, self._reserved_on(w.address)),
                len(w.status.get("gpus", [])),
                bool(w.status.get("trust_remote_code", False)),
                int(w.status.get("memory_total", 0)),
            )
            for w in self._workers.values()
        ]

    def _replicas_on(self, address: str) -> int:
        return sum(
            1 for m in self._models.values() for r in m.replicas if r.worker_address == address
        )

    def _reserved_on(self, address: str) -> Dict[str, int]:
        return {r.replica_uid: r.reserve for m in self._models.values() for r in m.replicas
                if r.worker_address == address}
