"""Rerank model families as data: `rerank_family.json` and its schema."""

from pathlib import Path

from ..catalogue import Catalogue
from ..folder_launch import FolderFamily


class RerankFamily(FolderFamily):
    """A cross-encoder: `max_tokens` counts one (query, document) pair."""


CATALOGUE = Catalogue("rerank", Path(__file__).with_name("rerank_family.json"), RerankFamily)
builtin_rerank_families = CATALOGUE.families
get_rerank_family = CATALOGUE.get
