"""What the model types that run a sentence-transformers folder (embedding, rerank)
share: the family's fields, the launch checks and the plan."""

from typing import Any, ClassVar, Dict, List, Mapping, Optional, Union

from ..errors import InvalidRequestError
from .catalogue import Catalogue
from .hub.folder_family import FolderSource
from .hub.request import WeightsRequest
from .hub.source import check_hub, pick_hub
from .launch_options import Option, check_options
from .memory import MemoryNeed, MiB, disk_bytes
from .model_type import Plan

ENGINE = "sentence_transformers"
# A sentence-transformers replica besides its weights: torch, transformers and
# xinference imported take about 210 MiB resident here, plus activations
OVERHEAD = 400 * MiB


class FolderFamily(FolderSource):
    """The fields every folder family has; the type's family adds its own."""

    model_name: str
    language: List[str]
    # tokens one input may have, special tokens included (rerank: one (query, document)
    # pair, which is truncated to this before it is scored)
    max_tokens: int
    model_description: str = ""
    trust_remote_code: bool = False


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


class FolderPlan(Plan):
    """The plan of an embedding or rerank model; the type's plan adds `model_type`, its
    family class, these class variables and what it creates."""

    label: ClassVar[str]  # "Embedding": what messages call the type
    catalogue: ClassVar[Catalogue]
    launch_options: ClassVar[Mapping[str, Option]]
    ability: ClassVar[str]  # its model_ability ("embed")

    family: FolderFamily
    engine: str = ENGINE

    @classmethod
    def from_request(cls, model_name: str, model_engine: Optional[str] = None,
                     model_path: Optional[str] = None, engine_kwargs: Optional[Dict[str, Any]] = None,
                     n_gpu: Union[int, str, None] = 0, download_hub: Optional[str] = None,
                     family: Optional[FolderFamily] = None, **llm_only: Any) -> "FolderPlan":
        options = check_request(cls.label, model_engine, engine_kwargs, cls.launch_options, llm_only)
        family = family or cls.catalogue.get(model_name)
        hub = check_hub(download_hub)
        if hub and not model_path:
            pick_hub(family.model_src, hub)  # 400 now when the family has no such source
        # model_type: the subclass's default
        return cls(family=family, model_path=model_path, engine_kwargs=options,  # type: ignore[call-arg]
                   n_gpu=n_gpu, download_hub=hub)

    @property
    def needs_remote_code(self) -> bool:
        """Whether the model runs code from its folder (the family says so)."""
        return bool(self.family.trust_remote_code)

    def weights_request(self) -> WeightsRequest:
        return self.family.weights_request(self.model_name, self.model_type, self.model_path,
                                           self.download_hub)

    def memory_need(self) -> Optional[MemoryNeed]:
        """What a replica holds; None while its weights are not on this machine (these
        families give no parameter count to estimate them from)."""
        path = self.weights_on_disk()
        return MemoryNeed(weights=disk_bytes(path), overhead=OVERHEAD) if path else None

    def describe_fields(self) -> Dict[str, Any]:
        f = self.family
        return {"model_type": self.model_type, "model_name": f.model_name, **self.family_fields(),
                "max_tokens": f.max_tokens, "language": f.language, **f.source_fields(self.download_hub),
                "model_version": self.model_version, "model_engine": self.engine,
                "model_ability": [self.ability], "model_description": f.model_description}

    def family_fields(self) -> Dict[str, Any]:
        """What a description says of the type's own family fields."""
        return {}
