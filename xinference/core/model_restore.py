"""The supervisor's part that keeps what was launched across restarts: every change to
the set of running models is written to a LaunchedStore; a restarted supervisor waits
for its workers to register (they report the replicas they kept running, which it
adopts), then relaunches whatever did not come back."""

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Dict

from ..errors import XinferenceError
from .launched_store import LaunchedStore
from .records import ModelRecord, WorkerRecord

logger = logging.getLogger(__name__)

# How long a restarted supervisor waits, at most, for a worker to register at all.
WAIT_FOR_WORKERS_S = 60.0


class ModelRestore:
    """Mixed into SupervisorActor, whose state it shares."""

    _models: Dict[str, ModelRecord]
    _workers: Dict[str, WorkerRecord]
    _store: LaunchedStore
    _heartbeat_interval: float

    if TYPE_CHECKING:
        async def launch_model(self, request: Dict[str, Any], wait_ready: bool = True) -> str: ...

        async def add_replicas(self, model_uid: str, count: int = 1,
                               worker_ip: Any = None) -> Dict[str, Any]: ...

    def _persist(self) -> None:
        """Writes what runs now: each launched model's request and how many replicas it
        should have."""
        launched = {uid: {"request": r.launch_request, "replica": r.wanted,
                          "workers": sorted({rep.worker_address for rep in r.replicas})}
                    for uid, r in self._models.items() if r.launched and r.launch_request}
        try:
            self._store.save(launched)
        except OSError as e:  # a full disk must not fail a launch that worked
            logger.error("cannot save the launched models to %s: %s", self._store.path, e)

    def _forget_launched(self) -> None:
        try:
            self._store.save({})
        except OSError as e:
            logger.error("cannot clear %s: %s", self._store.path, e)

    async def _restore(self) -> None:
        saved = self._store.load()
        if not saved:
            return
        # Workers register on their next heartbeat, reporting the replicas they kept.
        remembered = {r for entry in saved.values() for r in entry.get("workers", [])}
        deadline = time.monotonic() + WAIT_FOR_WORKERS_S
        settle = time.monotonic() + 2 * self._heartbeat_interval + 1
        while time.monotonic() < deadline:
            if self._workers and (time.monotonic() > settle or remembered <= set(self._workers)):
                break
            await asyncio.sleep(0.2)
        for uid, entry in saved.items():
            try:
                await self._restore_one(uid, entry)
            except XinferenceError as e:
                logger.error("could not bring back model %s: %s", uid, e.message)
            except Exception:  # noqa: BLE001 - one model must not keep the others away
                logger.exception("could not bring back model %s", uid)
        self._persist()

    async def _restore_one(self, uid: str, entry: Dict[str, Any]) -> None:
        request, wanted = dict(entry["request"]), int(entry.get("replica") or 1)
        record = self._models.get(uid)
        if record is None:
            logger.info("relaunching model %s after a restart", uid)
            await self.launch_model({**request, "model_uid": uid, "replica": wanted}, wait_ready=False)
            self._models[uid].events.add("restored", None, "relaunched after a restart")
            return
        # adopted: its replicas kept running; it heals and scales like any launched model
        record.launch_request, record.env = request, request.get("env")
        record.worker_ip = request.get("worker_ip")
        record.launched = True
        record.events.add("restored", None,
                          f"adopted {len(record.replicas)} running replica(s) after a restart")
        missing = wanted - len(record.replicas)
        record.wanted = len(record.replicas)
        if missing > 0:
            await self.add_replicas(uid, missing)
