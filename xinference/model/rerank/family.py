"""Rerank model families as data: `rerank_family.json` and its schema."""

from functools import lru_cache
from pathlib import Path
from typing import Dict, List

from ..catalogue import find_family, load_families
from ..hub.folder_family import FolderSource

FAMILY_FILE = Path(__file__).with_name("rerank_family.json")


class RerankFamily(FolderSource):
    model_name: str
    language: List[str]
    # tokens one (query, document) pair may have, special tokens included; longer pairs
    # are truncated to this before they are scored
    max_tokens: int
    trust_remote_code: bool = False
    model_description: str = ""


@lru_cache(maxsize=1)
def builtin_rerank_families() -> Dict[str, RerankFamily]:
    return load_families(FAMILY_FILE, RerankFamily)


def get_rerank_family(model_name: str) -> RerankFamily:
    return find_family(builtin_rerank_families(), model_name, "Unknown rerank model",
                       "List them with `xinference registrations -t rerank`.")
