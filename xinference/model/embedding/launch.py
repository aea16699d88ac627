"""Checks an embedding launch request and describes the running model."""

from typing import Any, Dict, Literal

from ..folder_launch import FolderPlan
from .family import CATALOGUE, EmbeddingFamily
from .model import LAUNCH_OPTIONS, EmbeddingModel


class EmbeddingPlan(FolderPlan):
    label = "Embedding"
    catalogue = CATALOGUE
    launch_options = LAUNCH_OPTIONS
    ability = "embed"

    model_type: Literal["embedding"] = "embedding"
    family: EmbeddingFamily

    def create(self, path: str) -> EmbeddingModel:
        return EmbeddingModel(path, self.family, int(self.n_gpu or 0), **self.engine_kwargs)

    def family_fields(self) -> Dict[str, Any]:
        return {"dimensions": self.family.dimensions}
