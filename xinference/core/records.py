"""What the supervisor keeps about workers, models and replicas."""

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..model.llm.launch import LaunchPlan


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


@dataclass
class ModelRecord:
    model_uid: str
    plan: LaunchPlan
    replicas: List[ReplicaRecord]
    request_limits: Optional[int] = None
    created: float = field(default_factory=time.time)
    error: Optional[str] = None

    @property
    def lora_names(self) -> List[str]:
        return [spec.lora_name for spec in self.plan.lora_list]

    @property
    def ready(self) -> bool:
        return bool(self.replicas) and all(r.ready for r in self.replicas)

    @property
    def status(self) -> str:
        if self.error:
            return "ERROR"
        return "READY" if self.ready else "CREATING"

    def describe(self) -> Dict[str, Any]:
        plan = self.plan
        family, spec = plan.family, plan.spec
        ctx = next((r.context_length for r in self.replicas if r.context_length), None)
        return {
            "model_uid": self.model_uid,
            "model_type": "LLM",
            "address": self.replicas[0].worker_address if self.replicas else None,
            "accelerators": [],
            "model_name": family.model_name,
            "model_lang": family.model_lang,
            "model_ability": family.model_ability,
            "model_description": family.model_description,
            "model_format": spec.model_format,
            "model_size_in_billions": spec.model_size_in_billions,
            "model_family": family.model_name,
            "quantization": plan.quantization,
            "model_hub": spec.model_hub,
            "revision": spec.model_revision,
            "context_length": ctx or family.context_length,
            "model_engine": plan.engine,
            "replica": len(self.replicas),
            "status": self.status,
            "request_limits": self.request_limits,
            "replicas": [
                {
                    "replica_uid": r.replica_uid,
                    "worker_address": r.worker_address,
                    "ready": r.ready,
                }
                for r in self.replicas
            ],
            "created": int(self.created),
            "lora_adapters": [spec.model_dump() for spec in plan.lora_list],
        }

    def describe_adapter(self, lora_name: str) -> Dict[str, Any]:
        """One of this model's LoRA adapters, as a model of its own: the base model's
        description plus which adapter it is (`parent` is the model that serves it)."""
        desc = self.describe()
        del desc["lora_adapters"]
        desc.update(parent=self.model_uid, lora_name=lora_name)
        return desc
