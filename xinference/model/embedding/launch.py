"""Checks an embedding launch request and describes the running model."""

from typing import Any, Dict, Literal, Optional, Union

from ..folder_launch import FolderPlan, check_request
from ..hub.source import check_hub, pick_hub
from .family import EmbeddingFamily, get_embedding_family


class EmbeddingPlan(FolderPlan):
    model_type: Literal["embedding"] = "embedding"
    family: EmbeddingFamily
    n_gpu: Union[int, str, None] = 0

    def create(self, path: str) -> Any:
        from .core import EmbeddingModel

        return EmbeddingModel(path, self.family, int(self.n_gpu or 0), **self.engine_kwargs)

    def describe_fields(self) -> Dict[str, Any]:
        f = self.family
        return {"model_type": "embedding", "model_name": f.model_name, "dimensions": f.dimensions,
                "max_tokens": f.max_tokens, "language": f.language, **f.source_fields(self.download_hub),
                "model_version": self.model_version, "model_engine": self.engine,
                "model_ability": ["embed"], "model_description": f.model_description}


def plan_embedding(model_name: str, model_engine: Optional[str] = None, model_path: Optional[str] = None,
                   engine_kwargs: Optional[Dict[str, Any]] = None, n_gpu: Union[int, str, None] = 0,
                   download_hub: Optional[str] = None, family: Optional[EmbeddingFamily] = None,
                   **_llm_only: Any) -> EmbeddingPlan:
    from .core import LAUNCH_OPTIONS

    options = check_request("Embedding", model_engine, engine_kwargs, LAUNCH_OPTIONS, _llm_only)
    family = family or get_embedding_family(model_name)
    hub = check_hub(download_hub)
    if hub and not model_path:
        pick_hub(family.model_src, hub)  # 400 now when the family has no such source
    return EmbeddingPlan(family=family, model_path=model_path, engine_kwargs=options,
                         n_gpu=n_gpu, download_hub=hub)
