"""Embedding model families as data: `embedding_family.json` and its schema."""

from pathlib import Path
from typing import List, Optional

from ..catalogue import Catalogue
from ..folder_launch import FolderFamily


class EmbeddingFamily(FolderFamily):
    dimensions: int
    # sizes the model was trained to be cut to (Matryoshka): `dimensions` may pick one
    matryoshka_dimensions: List[int] = []
    # what the model card says to put before queries / documents (informational)
    query_instruction: Optional[str] = None
    document_instruction: Optional[str] = None


CATALOGUE = Catalogue("embedding", Path(__file__).with_name("embedding_family.json"), EmbeddingFamily)
builtin_embedding_families = CATALOGUE.families
get_embedding_family = CATALOGUE.get
