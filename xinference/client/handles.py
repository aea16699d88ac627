"""Model handles returned by `Client.get_model`, one per model ability."""

from typing import Any, Dict, Iterator, List, Optional, Union

import requests

from .common import check, iter_sse


class ModelHandle:
    def __init__(self, model_uid: str, base_url: str, session: requests.Session, headers: Dict[str, str]):
        self._model_uid = model_uid
        self._base_url = base_url
        self._session = session
        self._headers = headers

    @property
    def model_uid(self) -> str:
        return self._model_uid

    def _post(self, path: str, body: Dict[str, Any], what: str) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        stream = bool(body.get("stream"))
        resp = self._session.post(f"{self._base_url}{path}", json=body, stream=stream, headers=self._headers)
        check(resp, what)
        return iter_sse(resp) if stream else resp.json()


class GenerateModelHandle(ModelHandle):
    def generate(
        self, prompt: str, generate_config: Optional[Dict[str, Any]] = None
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """A completion for `prompt`; an iterator of chunks when generate_config["stream"]."""
        body: Dict[str, Any] = {"model": self._model_uid, "prompt": prompt, **(generate_config or {})}
        return self._post("/v1/completions", body, "generate completion")


class ChatModelHandle(GenerateModelHandle):
    def chat(
        self,
        messages: Union[List[Dict[str, Any]], str, None] = None,
        tools: Optional[List[Dict[str, Any]]] = None,
        generate_config: Optional[Dict[str, Any]] = None,
        *,
        prompt: Optional[str] = None,
        chat_history: Optional[List[Dict[str, Any]]] = None,
        system_prompt: Optional[str] = None,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """A chat completion; an iterator of chunks when generate_config["stream"].

        `chat(messages, tools, generate_config)` as in the OpenAI API, or Xinference's
        older prompt form, which LlamaIndex's Xinference LLM still calls:
        `chat(prompt, chat_history, generate_config)` or
        `chat(prompt=..., chat_history=..., system_prompt=..., generate_config=...)`,
        where the prompt becomes the last user message after the history."""
        if isinstance(messages, str):  # the positional prompt form
            if prompt is not None:
                raise ValueError("Give the prompt once: positionally or as prompt=.")
            prompt, messages = messages, None
            if tools and all(isinstance(m, dict) and "role" in m for m in tools):
                if chat_history is not None:
                    raise ValueError("Give the chat history once: positionally or as chat_history=.")
                chat_history, tools = tools, None
        if prompt is not None:
            if messages is not None:
                raise ValueError("Give either messages or prompt (with chat_history), not both.")
            messages = [*(chat_history or []), {"role": "user", "content": prompt}]
        elif chat_history is not None:
            raise ValueError("chat_history goes with prompt; with messages, put the history in them.")
        if messages is None:
            raise ValueError("Give messages, or a prompt.")
        if system_prompt is not None and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": system_prompt}, *messages]
        body: Dict[str, Any] = {"model": self._model_uid, "messages": messages, **(generate_config or {})}
        if tools is not None:
            body["tools"] = tools
        return self._post("/v1/chat/completions", body, "generate chat completion")


class EmbeddingModelHandle(ModelHandle):
    def create_embedding(self, input: Union[str, List[Any]], **kwargs: Any) -> Dict[str, Any]:
        """Embeddings of `input` (a text, texts, or token ids), in the OpenAI shape."""
        body: Dict[str, Any] = {"model": self._model_uid, "input": input, **kwargs}
        return self._post("/v1/embeddings", body, "create the embeddings")  # type: ignore[return-value]


class RerankModelHandle(ModelHandle):
    def rerank(
        self,
        documents: List[str],
        query: str,
        top_n: Optional[int] = None,
        max_chunks_per_doc: Optional[int] = None,
        return_documents: Optional[bool] = None,
        return_len: Optional[bool] = None,
        **kwargs: Any,
    ) -> Dict[str, Any]:
        """`documents` ordered by relevance to `query`: {"id", "results", "meta"}."""
        body: Dict[str, Any] = {
            "model": self._model_uid, "documents": documents, "query": query, "top_n": top_n,
            "max_chunks_per_doc": max_chunks_per_doc, "return_documents": return_documents,
            "return_len": return_len, **kwargs,
        }
        return self._post("/v1/rerank", body, "rerank documents")  # type: ignore[return-value]
