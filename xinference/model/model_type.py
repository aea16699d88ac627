"""What every model type provides, so that core never asks which type it holds.

A type is a folder `model/<type>/` with a family catalogue, a `Plan` subclass and the
`ServedModel` its plan creates, plus one `ModelType` line in `model/plans.py`:

- the supervisor checks a launch with `plan.from_request`, places it with
  `memory_need` and describes it with `describe_fields`;
- the worker starts the replica's process with the Python `interpreter()` names;
- the replica (ModelActor) downloads with `resolve_weights`, makes its model with
  `create(path)`, loads it, and serves the `endpoints` the type lists.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, Union

from pydantic import BaseModel

from ..types import LoRASpec
from .catalogue import Catalogue
from .hub.fetch import fetch_weights, local_weights
from .hub.progress import DownloadProgress
from .hub.request import WeightsRequest
from .memory import MemoryNeed


class ServedModel:
    """A replica's model: what `Plan.create` makes, loaded once, then served."""

    @property
    def load_progress(self) -> float:
        """0 to 1 while `load()` runs (the launch's progress bar); 0 if it cannot say."""
        return 0.0

    @property
    def context_length(self) -> Optional[int]:
        """The tokens one request may hold, for the types that have a context (LLMs)."""
        return None

    async def load(self) -> None:
        raise NotImplementedError

    def stats(self) -> Dict[str, Any]:
        """Figures a replica's description carries (queue, batches, device)."""
        return {}

    async def close(self) -> None:
        raise NotImplementedError


class Plan(BaseModel):
    """A checked launch: what the supervisor made of a request and the worker and
    replica act on. It travels between processes as a dict (`plans.load_plan`)."""

    # what a launch request of this type may ask for that every type shares
    model_type: str
    family: Any  # the type's family class
    engine: str
    model_path: Optional[str] = None
    engine_kwargs: Dict[str, Any] = {}
    # GPUs each replica asks for: a count, "auto" (one if a GPU is free) or None (CPU).
    # The worker turns it into the count it reserved before the model sees it.
    n_gpu: Union[int, str, None] = 0
    # the hub to download from (None: XINFERENCE_MODEL_SRC on the worker, else Hugging Face)
    download_hub: Optional[str] = None

    @classmethod
    def from_request(cls, model_name: str, **request: Any) -> "Plan":
        """Checks a launch request (`model_name` and the type's options; `family`: a
        registered family, None: the builtin one); a 400 naming the field otherwise."""
        raise NotImplementedError

    @property
    def model_name(self) -> str:
        return str(self.family.model_name)

    @property
    def model_version(self) -> str:
        """The name of its weights in the download cache."""
        return self.model_name

    @property
    def needs_remote_code(self) -> bool:
        """Whether the model runs code from its folder (trust_remote_code)."""
        return False

    def adapters(self) -> List[LoRASpec]:
        """The LoRA adapters loaded next to the model; their names are model ids too."""
        return []

    def weights_request(self) -> WeightsRequest:
        raise NotImplementedError

    def resolve_weights(self, progress: Optional[DownloadProgress] = None) -> str:
        """The weights on this machine, downloaded first if needed."""
        return fetch_weights(self.weights_request(), progress)

    def weights_on_disk(self) -> Optional[str]:
        """The weights if they are on this machine already."""
        return local_weights(self.weights_request())

    def memory_need(self) -> Optional[MemoryNeed]:
        """What one replica will hold; None when it cannot be said yet."""
        raise NotImplementedError

    def interpreter(self) -> Optional[str]:
        """The Python the replica's process runs (None: the worker's own); a 400 when
        this worker cannot run the plan at all."""
        return None

    def create(self, path: str) -> ServedModel:
        """The replica's model over the weights at `path`, not loaded yet."""
        raise NotImplementedError

    def describe_fields(self) -> Dict[str, Any]:
        """What a model's description says of the plan (model_type, model_name, ...)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ModelType:
    """One entry of the model-type registry (`plans.MODEL_TYPES`)."""

    name: str  # "LLM", "embedding", "rerank": model_type in requests, plans and descriptions
    plan: Type[Plan]
    catalogue: Catalogue
    # the REST endpoints its replicas serve; a request to another is refused with these
    endpoints: Tuple[str, ...]
    # GET /v1/engines: per engine, what it can run of a family (types with engines)
    engines: Optional[Callable[[Any], List[Dict[str, Any]]]] = None
