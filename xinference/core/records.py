"""What the supervisor keeps about workers, models and replicas."""

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..model.model_type import Plan
from .healing import ModelEvents, RestartBudget


@dataclass
class WorkerRecord:
    address: str
    status: Dict[str, Any]
    last_seen: float = field(default_factory=time.monotonic)
    ref: Any = None

    def view(self) -> Dict[str, Any]:
        return {
            "worker_address": self.address,
            "node_ip": self.address.rsplit(":", 1)[0],
            "status": self.status,
            "seconds_since_heartbeat": round(time.monotonic() - self.last_seen, 3),
        }


@dataclass
class ReplicaRecord:
    replica_uid: str
    worker_address: str
    address: Optional[str] = None  # the sub-process that hosts the ModelActor
    ready: bool = False
    ready_since: float = 0.0  # time.monotonic() when it became ready
    context_length: Optional[int] = None
    weights_bytes: Optional[int] = None  # the size of the weights it loaded
    restarting: bool = False  # its process died; being relaunched
    draining: bool = False  # its worker is stopping: no new request goes there
    removing: bool = False  # removed on request: draining, then stopped, never relaunched
    reserve: int = 0  # bytes of its worker's memory placed for it (0: not estimated)
    budget: RestartBudget = field(default_factory=RestartBudget)

    @property
    def state(self) -> str:
        if self.draining or self.removing:
            return "draining"
        return "ready" if self.ready else "restarting" if self.restarting else "starting"


@dataclass
class ModelRecord:
    model_uid: str
    plan: Plan  # of the model's type (model/plans.py)
    replicas: List[ReplicaRecord]
    request_limits: Optional[int] = None
    created: float = field(default_factory=time.time)
    cancelled: bool = False  # POST /v1/models/{uid}/cancel stopped the launch
    env: Optional[Dict[str, str]] = None  # the launch's environment, for relaunches
    worker_ip: Optional[str] = None  # the launch's worker_ip: relaunches stay there
    launched: bool = False  # its first launch finished: from then on replicas heal
    launch_request: Optional[Dict[str, Any]] = None  # what a restarted supervisor relaunches
    wanted: int = 0  # replicas it should have (launched, then scaled)
    events: ModelEvents = field(default_factory=ModelEvents)

    def replica_meta(self, replica: ReplicaRecord) -> Dict[str, Any]:
        """What a worker keeps about a replica it launches: the model it belongs to
        (reported when the worker registers again) and the memory reserved for it."""
        return {"model_uid": self.model_uid, "request_limits": self.request_limits,
                "reserve": replica.reserve}

    @property
    def lora_names(self) -> List[str]:
        return [spec.lora_name for spec in self.plan.adapters()]

    @property
    def ready(self) -> bool:
        return bool(self.replicas) and all(r.ready for r in self.replicas)

    @property
    def status(self) -> str:
        if self.launched:  # serving from its ready replicas while others relaunch
            return "READY" if any(r.ready for r in self.replicas) else "RESTARTING"
        return "READY" if self.ready else "CREATING"

    def describe(self) -> Dict[str, Any]:
        plan = self.plan
        desc: Dict[str, Any] = {
            "model_uid": self.model_uid,
            "address": self.replicas[0].worker_address if self.replicas else None,
            "accelerators": [],
            **plan.describe_fields(),
            "replica": len(self.replicas),
            "status": self.status,
            "request_limits": self.request_limits,
            "replicas": [
                {
                    "replica_uid": r.replica_uid,
                    "worker_address": r.worker_address,
                    "ready": r.ready,
                    "state": r.state,
                    "memory_reserved": r.reserve,
                }
                for r in self.replicas
            ],
            **self.events.summary(),
            "created": int(self.created),
            "weights_bytes": next((r.weights_bytes for r in self.replicas if r.weights_bytes), None),
        }
        # what the loaded model holds, over the catalogue's (a model with a context reports one)
        ctx = next((r.context_length for r in self.replicas if r.context_length), None)
        if ctx:
            desc["context_length"] = ctx
        return desc

    def describe_adapter(self, lora_name: str) -> Dict[str, Any]:
        """One of this model's LoRA adapters, as a model of its own: the base model's
        description plus which adapter it is (`parent` is the model that serves it)."""
        desc = self.describe()
        del desc["lora_adapters"]
        desc.update(parent=self.model_uid, lora_name=lora_name)
        return desc
