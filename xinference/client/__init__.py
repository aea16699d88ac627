import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .handles import ChatModelHandle, EmbeddingModelHandle, GenerateModelHandle, RerankModelHandle
from .restful_client import Client, RESTfulClient

if TYPE_CHECKING:
    from .async_client import AsyncClient, AsyncRESTfulClient
    from .async_handles import (
        AsyncChatModelHandle,
        AsyncEmbeddingModelHandle,
        AsyncGenerateModelHandle,
        AsyncModelHandle,
        AsyncRerankModelHandle,
    )

__all__ = [
    "Client", "RESTfulClient", "ChatModelHandle", "GenerateModelHandle",
    "EmbeddingModelHandle", "RerankModelHandle",
    "AsyncClient", "AsyncRESTfulClient", "AsyncModelHandle", "AsyncChatModelHandle",
    "AsyncGenerateModelHandle", "AsyncEmbeddingModelHandle", "AsyncRerankModelHandle",
]

_ASYNC = MappingProxyType({
    "AsyncClient": "async_client", "AsyncRESTfulClient": "async_client",
    "AsyncModelHandle": "async_handles", "AsyncChatModelHandle": "async_handles",
    "AsyncGenerateModelHandle": "async_handles", "AsyncEmbeddingModelHandle": "async_handles",
    "AsyncRerankModelHandle": "async_handles",
})


def __getattr__(name: str) -> Any:
    # Importing httpx adds ~80 ms to every CLI command, which only needs the sync client.
    if name in _ASYNC:
        return getattr(importlib.import_module(f".{_ASYNC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
