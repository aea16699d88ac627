"""Model handles returned by `Client.get_model`, one per model ability; their calls
are described in `inference`, shared with the async handles."""

from types import MappingProxyType
from typing import Any, Dict

import requests

from . import inference
from .calls import Call
from .transport import method, send, stream_method


class ModelHandle:
    def __init__(self, model_uid: str, base_url: str, session: requests.Session, headers: Dict[str, str]):
        self._model_uid = model_uid
        self._base_url = base_url
        self._session = session
        self._headers = headers

    @property
    def model_uid(self) -> str:
        return self._model_uid

    def _send(self, call: Call[Any]) -> Any:
        # Generation may rightly take long: like the calls, no timeout.
        return send(self._session, self._base_url, self._headers, None,
                    inference.with_model(call, self._model_uid))


class GenerateModelHandle(ModelHandle):
    generate = stream_method(inference.generate)


class ChatModelHandle(GenerateModelHandle):
    chat = stream_method(inference.chat)


class EmbeddingModelHandle(ModelHandle):
    create_embedding = method(inference.create_embedding)


class RerankModelHandle(ModelHandle):
    rerank = method(inference.rerank)


HANDLES = MappingProxyType({"generate": GenerateModelHandle, "chat": ChatModelHandle,
           "embedding": EmbeddingModelHandle, "rerank": RerankModelHandle})
