"""Checks an embedding launch request and describes the running model."""

from typing import Any, Dict, Literal, Optional, Union

from pydantic import BaseModel

from ...errors import InvalidRequestError
from ..weights import resolve_folder
from .family import EmbeddingFamily, get_embedding_family

ENGINE = "sentence_transformers"


class EmbeddingPlan(BaseModel):
    model_type: Literal["embedding"] = "embedding"
    family: EmbeddingFamily
    engine: str = ENGINE
    model_path: Optional[str] = None
    engine_kwargs: Dict[str, Any] = {}
    n_gpu: Union[int, str, None] = 0

    @property
    def model_name(self) -> str:
        return self.family.model_name

    def resolve_weights(self) -> str:
        f = self.family
        return resolve_folder(f.model_name, f.model_id, f.model_hub, self.model_path, f.embedded_package)

    def create(self, path: str) -> Any:
        from .core import EmbeddingModel

        return EmbeddingModel(path, self.family, int(self.n_gpu or 0), **self.engine_kwargs)

    def describe_fields(self) -> Dict[str, Any]:
        f = self.family
        return {"model_type": "embedding", "model_name": f.model_name, "dimensions": f.dimensions,
                "max_tokens": f.max_tokens, "language": f.language, "model_hub": f.model_hub,
                "model_id": f.model_id, "revision": f.model_revision, "model_engine": self.engine,
                "model_ability": ["embed"], "model_description": f.model_description}


def plan_embedding(model_name: str, model_engine: Optional[str] = None, model_path: Optional[str] = None,
                   engine_kwargs: Optional[Dict[str, Any]] = None, n_gpu: Union[int, str, None] = 0,
                   **_llm_only: Any) -> EmbeddingPlan:
    """LLM-only fields (format, size, quantization, LoRA) that clients send as null are
    accepted; a value is an error."""
    given = sorted(k for k, v in _llm_only.items() if v)
    if given:
        raise InvalidRequestError(f"Embedding models do not take {', '.join(given)}.", param=given[0])
    family = get_embedding_family(model_name)
    if model_engine and model_engine.lower().replace("-", "_") not in (ENGINE, "sentence_transformer"):
        raise InvalidRequestError(
            f"Embedding models run on engine {ENGINE}; got {model_engine!r}.", param="model_engine"
        )
    from .core import EmbeddingModel

    unknown = sorted(set(engine_kwargs or {}) - set(EmbeddingModel.launch_kwargs))
    if unknown:
        raise InvalidRequestError(
            f"Embedding models do not take {', '.join(unknown)}; they take "
            f"{', '.join(EmbeddingModel.launch_kwargs)}.",
            param=unknown[0],
        )
    return EmbeddingPlan(family=family, model_path=model_path, engine_kwargs=dict(engine_kwargs or {}),
                         n_gpu=n_gpu)
