"""What the plans of the model types that run a sentence-transformers folder
(embedding, rerank) share: launch checks and where the weights come from."""

from typing import Any, Dict, Mapping, Optional

from pydantic import BaseModel

from ..errors import InvalidRequestError
from .hub.fetch import fetch_weights, local_weights
from .hub.folder_family import FolderSource
from .hub.progress import DownloadProgress
from .launch_options import Option, check_options
from .memory import MemoryNeed, MiB, disk_bytes

ENGINE = "sentence_transformers"
# A sentence-transformers replica besides its weights: torch, transformers and
# xinference imported take about 210 MiB resident here, plus activations
OVERHEAD = 400 * MiB


def check_request(kind: str, model_engine: Optional[str], engine_kwargs: Optional[Dict[str, Any]],
                  options: Mapping[str, Option], llm_only: Dict[str, Any]) -> Dict[str, Any]:
    """LLM-only fields (format, size, quantization, LoRA) that clients send as null are
    accepted, a value is an error; so are another engine and an option the model
    does not take or a value it cannot use. `kind` is "Embedding" or "Rerank". Returns
    the checked options."""
    given = sorted(k for k, v in llm_only.items() if v)
    if given:
        raise InvalidRequestError(f"{kind} models do not take {', '.join(given)}.", param=given[0])
    if model_engine and model_engine.lower().replace("-", "_") not in (ENGINE, "sentence_transformer"):
        raise InvalidRequestError(
            f"{kind} models run on engine {ENGINE}; got {model_engine!r}.", param="model_engine"
        )
    return check_options(f"{kind} models do not take", engine_kwargs, options)


class FolderPlan(BaseModel):
    """The fields and weights of an embedding or rerank plan; the type's plan adds
    `model_type`, its family class and what it creates."""

    model_type: str
    family: FolderSource
    engine: str = ENGINE
    model_path: Optional[str] = None
    engine_kwargs: Dict[str, Any] = {}
    n_gpu: Any = 0
    download_hub: Optional[str] = None

    @property
    def model_name(self) -> str:
        return self.family.model_name  # type: ignore[attr-defined]

    @property
    def model_version(self) -> str:
        return self.model_name

    @property
    def needs_remote_code(self) -> bool:
        """Whether the model runs code from its folder (the family says so)."""
        return bool(self.family.trust_remote_code)  # type: ignore[attr-defined]

    def resolve_weights(self, progress: Optional[DownloadProgress] = None) -> str:
        return fetch_weights(self._weights_request(), progress)

    def _weights_request(self) -> Any:
        return self.family.weights_request(self.model_name, self.model_type, self.model_path,
                                           self.download_hub)

    def memory_need(self) -> Optional[MemoryNeed]:
        """What a replica holds; None while its weights are not on this machine (these
        families give no parameter count to estimate them from)."""
        path = local_weights(self._weights_request())
        return MemoryNeed(weights=disk_bytes(path), overhead=OVERHEAD) if path else None
