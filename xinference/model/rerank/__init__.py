"""Rerank models: families as data (`rerank_family.json`) and a sentence-transformers
CrossEncoder engine (`model.py`)."""
