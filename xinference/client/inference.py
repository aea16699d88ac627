"""What each call of a model handle is (see `calls`), for the sync and the async handles.

The bodies leave out "model": a handle adds its own uid when it sends them."""

from dataclasses import replace
from typing import Any, Dict, List, Optional, Tuple, TypeVar, Union

from .calls import Call, Stream

C = TypeVar("C", bound=Call[Any])


def with_model(call: C, model_uid: str) -> C:
    # The caller's own "model" (in generate_config or kwargs) wins, as it always did.
    return replace(call, json={"model": model_uid, **call.json})


def handle_kind(desc: Dict[str, Any]) -> str:
    """Which handle serves a model, from its description: chat, generate, embedding, rerank."""
    model_type = desc.get("model_type")
    if model_type in ("embedding", "rerank"):
        return str(model_type)
    if model_type != "LLM":
        raise ValueError(f"Unsupported model type {model_type!r}")
    if "chat" in desc["model_ability"]:
        return "chat"
    if "generate" not in desc["model_ability"]:
        raise ValueError(f"Unrecognized model ability: {desc['model_ability']}")
    return "generate"


def get_model(model_uid: str) -> Call[str]:
    return Call("GET", f"/v1/models/{model_uid}", "get the model description", answer=handle_kind)


def generate(prompt: str, generate_config: Optional[Dict[str, Any]] = None) -> Stream[Dict[str, Any]]:
    """A completion for `prompt`; a stream of chunks when generate_config["stream"]."""
    body: Dict[str, Any] = {"prompt": prompt, **(generate_config or {})}
    return Stream("POST", "/v1/completions", "generate completion", json=body, bounded=False)


def chat_messages(
    messages: Union[List[Dict[str, Any]], str, None],
    tools: Optional[List[Dict[str, Any]]],
    prompt: Optional[str],
    chat_history: Optional[List[Dict[str, Any]]],
    system_prompt: Optional[str],
) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
    """The (messages, tools) that `chat`'s arguments stand for, in either of its forms."""
    if isinstance(messages, str):  # the positional prompt form
        if prompt is not None:
            raise ValueError("Give the prompt once: positionally or as prompt=.")
        prompt, messages = messages, None
        # chat(prompt, chat_history, ...): the second argument holds messages, not tools
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
    return messages, tools


def chat(
    messages: Union[List[Dict[str, Any]], str, None] = None,
    tools: Optional[List[Dict[str, Any]]] = None,
    generate_config: Optional[Dict[str, Any]] = None,
    *,
    prompt: Optional[str] = None,
    chat_history: Optional[List[Dict[str, Any]]] = None,
    system_prompt: Optional[str] = None,
) -> Stream[Dict[str, Any]]:
    """A chat completion; a stream of chunks when generate_config["stream"] (an
    iterator from the sync client's handles, an async iterator from AsyncClient's).

    `chat(messages, tools, generate_config)` as in the OpenAI API, or Xinference's
    older prompt form, which LlamaIndex's Xinference LLM still calls:
    `chat(prompt, chat_history, generate_config)` or
    `chat(prompt=..., chat_history=..., system_prompt=..., generate_config=...)`,
    where the prompt becomes the last user message after the history."""
    messages, tools = chat_messages(messages, tools, prompt, chat_history, system_prompt)
    body: Dict[str, Any] = {"messages": messages, **(generate_config or {})}
    if tools is not None:
        body["tools"] = tools
    return Stream("POST", "/v1/chat/completions", "generate chat completion", json=body, bounded=False)


def create_embedding(input: Union[str, List[Any]], **kwargs: Any) -> Call[Dict[str, Any]]:
    """Embeddings of `input` (a text, texts, or token ids), in the OpenAI shape."""
    body: Dict[str, Any] = {"input": input, **kwargs}
    return Stream("POST", "/v1/embeddings", "create the embeddings", json=body, bounded=False)


def rerank(
    documents: List[str],
    query: str,
    top_n: Optional[int] = None,
    max_chunks_per_doc: Optional[int] = None,
    return_documents: Optional[bool] = None,
    return_len: Optional[bool] = None,
    **kwargs: Any,
) -> Call[Dict[str, Any]]:
    """`documents` ordered by relevance to `query`: {"id", "results", "meta"}."""
    body: Dict[str, Any] = {
        "documents": documents, "query": query, "top_n": top_n,
        "max_chunks_per_doc": max_chunks_per_doc, "return_documents": return_documents,
        "return_len": return_len, **kwargs,
    }
    return Stream("POST", "/v1/rerank", "rerank documents", json=body, bounded=False)
