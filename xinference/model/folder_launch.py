"""Launch checks shared by the model types that run a sentence-transformers folder
(embedding, rerank)."""

from typing import Any, Dict, Optional, Sequence

from ..errors import InvalidRequestError

ENGINE = "sentence_transformers"


def check_request(kind: str, model_engine: Optional[str], engine_kwargs: Optional[Dict[str, Any]],
                  accepted: Sequence[str], llm_only: Dict[str, Any]) -> None:
    """LLM-only fields (format, size, quantization, LoRA) that clients send as null are
    accepted, a value is an error; so are another engine and an option the model
    does not take. `kind` is "Embedding" or "Rerank"."""
    given = sorted(k for k, v in llm_only.items() if v)
    if given:
        raise InvalidRequestError(f"{kind} models do not take {', '.join(given)}.", param=given[0])
    if model_engine and model_engine.lower().replace("-", "_") not in (ENGINE, "sentence_transformer"):
        raise InvalidRequestError(
            f"{kind} models run on engine {ENGINE}; got {model_engine!r}.", param="model_engine"
        )
    unknown = sorted(set(engine_kwargs or {}) - set(accepted))
    if unknown:
        raise InvalidRequestError(
            f"{kind} models do not take {', '.join(unknown)}; they take {', '.join(accepted)}.",
            param=unknown[0],
        )
