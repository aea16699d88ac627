"""Checks a rerank launch request and describes the running model."""

from typing import Literal

from ..folder_launch import FolderPlan
from .family import CATALOGUE, RerankFamily
from .model import LAUNCH_OPTIONS, RerankModel


class RerankPlan(FolderPlan):
    label = "Rerank"
    catalogue = CATALOGUE
    launch_options = LAUNCH_OPTIONS
    ability = "rerank"

    model_type: Literal["rerank"] = "rerank"
    family: RerankFamily

    def create(self, path: str) -> RerankModel:
        kwargs = dict(self.engine_kwargs)
        if int(self.n_gpu or 0) > 0 and "device" not in kwargs:
            kwargs["device"] = "cuda"
        return RerankModel(path, self.family, **kwargs)
