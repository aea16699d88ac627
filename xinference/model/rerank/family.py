"""Rerank model families as data: `rerank_family.json` and its schema."""

import difflib
import json
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional

from pydantic import BaseModel

from ...errors import InvalidRequestError

FAMILY_FILE = Path(__file__).with_name("rerank_family.json")


class RerankFamily(BaseModel):
    model_name: str
    language: List[str]
    # tokens one (query, document) pair may have, special tokens included; longer pairs
    # are truncated to this before they are scored
    max_tokens: int
    model_id: str
    model_hub: str = "huggingface"
    model_revision: Optional[str] = None
    trust_remote_code: bool = False
    model_description: str = ""


@lru_cache(maxsize=1)
def builtin_rerank_families() -> Dict[str, RerankFamily]:
    raw = json.loads(FAMILY_FILE.read_text(encoding="utf-8"))
    families = [RerankFamily.model_validate(item) for item in raw]
    return {f.model_name: f for f in families}


def get_rerank_family(model_name: str) -> RerankFamily:
    families = builtin_rerank_families()
    if model_name in families:
        return families[model_name]
    close = difflib.get_close_matches(model_name, list(families), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise InvalidRequestError(
        f"Unknown rerank model {model_name!r}.{hint} "
        "List them with `xinference registrations -t rerank`.",
        param="model_name",
        code="model_not_found",
    )
