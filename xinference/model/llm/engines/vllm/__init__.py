"""The vLLM engine: `engine.py` (VllmEngine, imports vllm in its replica's load()) and
`stream.py` (one request's output on its way to the client). Importing this package
imports neither."""
