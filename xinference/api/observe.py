"""Who hears about each inference request once its response has ended: the Prometheus
metrics (metrics.py), per-API-key usage, anything else that counts requests.

`RequestTracking` (tracking.py) calls `finished` exactly once per request on the
chat, completion, embedding and rerank routes (OpenAI's and Ollama's), whatever the
outcome: an answer, an error before any replica was reached (unknown model, 429, a
body that failed validation), an error in the middle of a stream, an abort, a client
that went away. Observers run on the event loop, in the request's own task: each must
be quick, never block and never await; what they raise is logged, not propagated.
"""

import logging
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinishedRequest:
    endpoint: str  # chat, completions, embeddings, rerank, ollama_chat, ollama_generate, ...
    model: Optional[str]  # the model uid that took it; None: it never got that far
    # the HTTP status; a stream that failed or was aborted after its headers went out
    # counts with that error's status, one whose client left early with 499
    status: int
    request_id: str
    principal: Any  # xinference.api.context.principal when the request ended (None without auth)
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens served from the replica's prefix cache
    ttft_s: Optional[float]  # arrival to first token; None unless it generated text
    e2e_s: float  # arrival to the response's last byte
    # the request's `user` field: who the client says the tokens were for
    end_user: Optional[str] = None


Observer = Callable[[FinishedRequest], None]


class RequestObservers:
    def __init__(self) -> None:
        self._observers: List[Observer] = []

    def add(self, observer: Observer) -> None:
        self._observers.append(observer)

    def finished(self, record: FinishedRequest) -> None:
        for observer in self._observers:
            try:
                observer(record)
            except Exception:
                logger.exception("request observer %r failed", observer)
