"""Xinference model-management request shapes."""

from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from ...constants import MAX_REPLICAS


class LaunchModelRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model_name: str = Field(min_length=1)
    model_uid: Optional[str] = None
    model_type: str = "LLM"
    model_engine: Optional[str] = None
    model_size_in_billions: Optional[Union[int, float, str]] = None
    model_format: Optional[str] = None
    quantization: Optional[str] = None
    replica: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    n_gpu: Optional[Union[int, str]] = "auto"
    worker_ip: Optional[str] = None
    model_path: Optional[str] = None
    request_limits: Optional[int] = Field(default=None, ge=1)
    n_worker: Optional[int] = None
    gpu_idx: Optional[Union[int, List[int]]] = None
    replica_config: Optional[List[Dict[str, Any]]] = None
    peft_model_config: Optional[Dict[str, Any]] = None
    enable_thinking: Optional[bool] = None
    enable_virtual_env: Optional[bool] = None
    virtual_env_packages: Optional[List[str]] = None
    virtual_env_find_links: Optional[List[str]] = None
    # variables for the replicas' processes: only harmless ones (model/launch_env.py)
    envs: Optional[Dict[str, str]] = None
    # "huggingface" or "modelscope"; None: XINFERENCE_MODEL_SRC on the worker, else Hugging Face
    download_hub: Optional[str] = None

    def engine_kwargs(self) -> Dict[str, Any]:
        extra = self.model_extra or {}
        return {k: v for k, v in extra.items() if v is not None}


class RegisterModelRequest(BaseModel):
    """POST /v1/model_registrations/{model_type}: xinference-client sends the family as a
    JSON string; an object is accepted too."""

    model: Union[str, Dict[str, Any]]
    worker_ip: Optional[str] = None
    persist: bool = False


class AbortRequest(BaseModel):
    """POST /v1/models/{uid}/requests/{request_id}/abort (xinference-client's abort_request)."""

    model_config = ConfigDict(extra="ignore")

    # seconds during which a request arriving with this id is aborted at once (it may
    # reach the server after the abort did); 0: no blocking
    block_duration: float = Field(default=30, ge=0, le=86400)


class AddReplicasRequest(BaseModel):
    """POST /v1/models/{uid}/replicas: start more replicas of a running model."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    worker_ip: Optional[str] = Field(default=None, max_length=256)

