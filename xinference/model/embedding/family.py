"""Embedding model families as data: `embedding_family.json` and its schema."""

from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional

from ..catalogue import find_family, load_families
from ..hub.folder_family import FolderSource

FAMILY_FILE = Path(__file__).with_name("embedding_family.json")


class EmbeddingFamily(FolderSource):
    model_name: str
    dimensions: int
    # tokens one input may have (special tokens included)
    max_tokens: int
    language: List[str]
    model_description: str = ""
    trust_remote_code: bool = False
    # sizes the model was trained to be cut to (Matryoshka): `dimensions` may pick one
    matryoshka_dimensions: List[int] = []
    # what the model card says to put before queries / documents (informational)
    query_instruction: Optional[str] = None
    document_instruction: Optional[str] = None


@lru_cache(maxsize=1)
def builtin_embedding_families() -> Dict[str, EmbeddingFamily]:
    return load_families(FAMILY_FILE, EmbeddingFamily)


def get_embedding_family(model_name: str) -> EmbeddingFamily:
    return find_family(builtin_embedding_families(), model_name, "Unknown embedding model",
                       "List them with `xinference registrations -t embedding`.")
