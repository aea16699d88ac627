"""The Transformers engine: `engine.py` (TransformersEngine, imports torch and transformers
in load()), and what only its load() path imports: `scheduler.py` (continuous batching),
`slot_cache.py` (the batch's KV cache), `sampling.py` (per-row sampling), `lora.py`
(adapters per request). Importing this package imports none of them."""
