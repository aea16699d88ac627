"""Checks an embedding launch request and describes the running model."""

from typing import Any, Dict, Literal, Optional, Union

from pydantic import BaseModel

from ..folder_launch import ENGINE, check_request
from ..weights import resolve_folder
from .family import EmbeddingFamily, get_embedding_family


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
    from .core import EmbeddingModel

    check_request("Embedding", model_engine, engine_kwargs, EmbeddingModel.launch_kwargs, _llm_only)
    family = get_embedding_family(model_name)
    return EmbeddingPlan(family=family, model_path=model_path, engine_kwargs=dict(engine_kwargs or {}),
                         n_gpu=n_gpu)
