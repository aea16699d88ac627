"""Hub sources of a catalogue entry, and which hub a launch downloads from.

A catalogue spec names its weights per hub (`model_src`); the flat Xinference form
(`model_id` + `model_hub`) that users' custom registrations carry is read as a
one-hub `model_src`.
"""

import os
from typing import Any, Dict, List, Mapping, Optional

from pydantic import BaseModel

from ...errors import InvalidRequestError

HUBS = ("huggingface", "modelscope")
DEFAULT_HUB = "huggingface"
MODEL_SRC_ENV = "XINFERENCE_MODEL_SRC"
# what a registration without weights is told (after "the model" or "model_specs[i]")
NEEDS_SOURCE = ("needs model_uri (local weights on the worker, e.g. file:///models/x) "
                "or model_id (a repo on model_hub).")


class HubSource(BaseModel):
    model_id: str
    model_revision: Optional[str] = None
    # A hub may name or split a spec's files differently: these override the spec's.
    quantizations: Optional[List[str]] = None
    model_file_name_template: Optional[str] = None
    model_file_name_split_template: Optional[str] = None
    quantization_parts: Optional[Dict[str, List[str]]] = None


def flat_to_model_src(data: Any) -> Any:
    """A pydantic "before" hook: `model_id`/`model_hub`/`model_revision` become
    `model_src` when the entry has none."""
    if not isinstance(data, dict) or data.get("model_src") or not data.get("model_id"):
        return data
    out = dict(data)
    hub = out.get("model_hub") or DEFAULT_HUB
    out["model_src"] = {hub: {"model_id": out["model_id"], "model_revision": out.get("model_revision")}}
    return out


def check_hub(name: Optional[str], param: str = "download_hub") -> Optional[str]:
    if name is None or name == "":
        return None
    hub = str(name).strip().lower()
    if hub not in HUBS:
        raise InvalidRequestError(
            f"{param} must be one of {', '.join(HUBS)}; got {name!r}.", param=param
        )
    return hub


def pick_hub(model_src: Mapping[str, Any], requested: Optional[str]) -> Optional[str]:
    """The hub to download from: the launch's `download_hub`, else XINFERENCE_MODEL_SRC,
    else Hugging Face; a hub the spec lacks is an error only when the launch asked for it
    (the environment's choice falls back to a hub the spec has)."""
    if not model_src:
        return None
    if requested:
        if requested not in model_src:
            raise InvalidRequestError(
                f"This model has no {requested} source; it can be downloaded from "
                f"{', '.join(model_src)}.",
                param="download_hub",
            )
        return requested
    preferred = (os.environ.get(MODEL_SRC_ENV) or DEFAULT_HUB).strip().lower()
    if preferred in model_src:
        return preferred
    if DEFAULT_HUB in model_src:
        return DEFAULT_HUB
    return next(iter(model_src))
