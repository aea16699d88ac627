"""Model handles returned by `AsyncClient.get_model`: the sync handles' calls (from
`inference`), awaited; a stream is an async iterator of chunks."""

from types import MappingProxyType
from typing import Any, Dict

import httpx

from . import inference
from .async_transport import method, send, stream_method
from .calls import Call


class AsyncModelHandle:
    def __init__(self, model_uid: str, base_url: str, http: httpx.AsyncClient, headers: Dict[str, str]):
        self._model_uid = model_uid
        self._base_url = base_url
        self._http = http
        self._headers = headers

    @property
    def model_uid(self) -> str:
        return self._model_uid

    async def _send(self, call: Call[Any]) -> Any:
        # Generation may rightly take long: like the sync handles, no timeout.
        return await send(self._http, self._base_url, self._headers, None,
                          inference.with_model(call, self._model_uid))


class AsyncGenerateModelHandle(AsyncModelHandle):
    generate = stream_method(inference.generate)


class AsyncChatModelHandle(AsyncGenerateModelHandle):
    chat = stream_method(inference.chat)


class AsyncEmbeddingModelHandle(AsyncModelHandle):
    create_embedding = method(inference.create_embedding)


class AsyncRerankModelHandle(AsyncModelHandle):
    rerank = method(inference.rerank)


HANDLES = MappingProxyType({"generate": AsyncGenerateModelHandle, "chat": AsyncChatModelHandle,
           "embedding": AsyncEmbeddingModelHandle, "rerank": AsyncRerankModelHandle})
