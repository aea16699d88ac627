"""Checks a rerank launch request and describes the running model."""

from typing import Any, Dict, Literal, Optional, Union

from ..folder_launch import FolderPlan, check_request
from ..hub.source import check_hub, pick_hub
from .family import RerankFamily, get_rerank_family


class RerankPlan(FolderPlan):
    model_type: Literal["rerank"] = "rerank"
    family: RerankFamily
    n_gpu: Union[int, str, None] = 0

    def create(self, path: str) -> Any:
        from .core import RerankModel

        kwargs = dict(self.engine_kwargs)
        if int(self.n_gpu or 0) > 0 and "device" not in kwargs:
            kwargs["device"] = "cuda"
        return RerankModel(path, self.family, **kwargs)

    def describe_fields(self) -> Dict[str, Any]:
        f = self.family
        return {"model_type": "rerank", "model_name": f.model_name, "language": f.language,
                "max_tokens": f.max_tokens, **f.source_fields(self.download_hub),
                "model_version": self.model_version, "model_engine": self.engine, "model_ability": ["rerank"],
                "model_description": f.model_description}


def plan_rerank(model_name: str, model_engine: Optional[str] = None, model_path: Optional[str] = None,
                engine_kwargs: Optional[Dict[str, Any]] = None, n_gpu: Union[int, str, None] = 0,
                download_hub: Optional[str] = None, family: Optional[RerankFamily] = None,
                **_llm_only: Any) -> RerankPlan:
    from .core import LAUNCH_OPTIONS

    options = check_request("Rerank", model_engine, engine_kwargs, LAUNCH_OPTIONS, _llm_only)
    family = family or get_rerank_family(model_name)
    hub = check_hub(download_hub)
    if hub and not model_path:
        pick_hub(family.model_src, hub)  # 400 now when the family has no such source
    return RerankPlan(family=family, model_path=model_path, engine_kwargs=options,
                      n_gpu=n_gpu, download_hub=hub)
