"""The llama.cpp engine: `engine.py` (LlamaCppEngine, imports llama_cpp in load()),
`scheduler.py` (continuous batching over one context), `logits.py` and `sampling.py`
(what each sequence's row goes through). Importing this package imports none of them."""
