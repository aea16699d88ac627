"""One streamed chat answer into a Chatbot history, shared by the chat and arena tabs.
Gradio-free: it yields (history, status line, failed) and the tabs decide how to show them.

`stream_reply` sends the Chatbot history as it reads (the arena); `stream_turn` sends a
`Conversation` (the chat tab), whose answers may call tools."""

import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..client import ChatModelHandle, Client
from .i18n import Translator
from .streams import Clock, ToolCallCollector, follow, format_stats, readable_error, to_messages
from .tool_turns import Conversation, call_bubble, invalid_bubble

# Sending every chunk to the page costs more than it shows: at most this often.
UPDATE_INTERVAL_S = 0.05

History = List[Dict[str, Any]]


def _config(params: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
    config = {
        "stream": True,
        "max_tokens": int(params.get("max_tokens") or 256),
        "temperature": float(params.get("temperature") or 0.0),
        "stream_options": {"include_usage": True},
    }
    config.update({k: v for k, v in extra.items() if v is not None})
    return config


def _stream_answer(client_factory: Callable[[], Client], endpoint: str, model: str, messages: List[Dict[str, Any]],
                   history: History, config: Dict[str, Any], t: Translator, start: float, clock: Clock,
                   tools: Optional[List[Dict[str, Any]]] = None,
                   collector: Optional[ToolCallCollector] = None) -> Iterator[Tuple[History, str, bool, bool]]:
    """Streams the answer to `messages` into a new assistant message at the end of `history`;
    `collector`, when given, reads the answer's tool calls as they go by. Yields (history,
    status, failed, done): the last item, and only it, is done."""
    try:
        with client_factory() as client:
            handle = client.get_model(model)
            if not isinstance(handle, ChatModelHandle):
                yield history, t("chat.not_chat", model=model), True, True
                return
            history.append({"role": "assistant", "content": ""})
            chunks = handle.chat(messages, tools, generate_config=config)
            if collector is not None:
                chunks = collector.watch(chunks)  # type: ignore[arg-type]
            last = 0.0
            for answer, stats in follow(chunks, clock, start):  # type: ignore[arg-type]
                history[-1] = {"role": "assistant", "content": answer}
                if stats.end is not None:
                    yield history, format_stats(stats, t), False, True
                elif clock() - last >= UPDATE_INTERVAL_S:
                    last = clock()
                    yield history, t("chat.streaming", model=model), False, False
    except Exception as e:  # every failure becomes a sentence in the page
        if history and history[-1]["role"] == "assistant" and not history[-1]["content"]:
            history.pop()
        yield history, readable_error(e, t, endpoint), True, True


def stream_reply(client_factory: Callable[[], Client], endpoint: str, message: str, history: Optional[History],
                 model: Optional[str], params: Dict[str, Any], lang: str,
                 clock: Clock = time.monotonic) -> Iterator[Tuple[History, str, bool]]:
    """Appends `message` and the model's streamed answer to `history`.

    `params`: system_prompt, max_tokens, temperature. Yields (history, status, failed);
    the status is the speed line after the answer, or a readable error."""
    t = Translator(lang)
    history = list(history or [])
    if not model:
        yield history, t("chat.no_model"), True
        return
    if not message.strip():
        return
    start = clock()
    history.append({"role": "user", "content": message})
    yield history, t("chat.waiting", model=model), False
    messages = to_messages(history, params.get("system_prompt") or "")
    for shown, status, failed, _ in _stream_answer(client_factory, endpoint, model, messages, history,
                                                   _config(params), t, start, clock):
        yield shown, status, failed


def stream_turn(client_factory: Callable[[], Client], endpoint: str, conversation: Conversation,
                history: Optional[History], model: Optional[str], params: Dict[str, Any], lang: str,
                tools: Optional[List[Dict[str, Any]]] = None, tool_choice: Any = None,
                clock: Clock = time.monotonic) -> Iterator[Tuple[History, Conversation, str, bool]]:
    """The model's answer to a conversation that ends with the user's message or with the
    results of the tools (`history` shows them already). The answer streams into
    `history`; then each call it makes, and each call the server found invalid, gets a
    bubble of its own, and the conversation gets the answer, its calls waiting for results.

    Yields (history, conversation, status, failed); neither argument is changed."""
    t = Translator(lang)
    history = list(history or [])
    conversation = conversation.copy()
    if not model:
        yield history, conversation, t("chat.no_model"), True
        return
    start = clock()
    yield history, conversation, t("chat.waiting", model=model), False
    messages = conversation.request(params.get("system_prompt") or "")
    collector = ToolCallCollector()
    config = _config(params, tool_choice=tool_choice)
    size = len(history)
    for shown, status, failed, done in _stream_answer(client_factory, endpoint, model, messages, history,
                                                      config, t, start, clock, tools, collector):
        if not done:
            yield shown, conversation, status, failed
            continue
        answered = len(history) > size  # the answer's bubble is there (a failure may take it away)
        text = str(history[-1]["content"]) if answered else ""
        calls = [] if failed else collector.calls
        if answered and not text and (calls or collector.invalid):
            history.pop()  # only calls: no empty bubble for the text
        history += [call_bubble(c, t) for c in calls] + [invalid_bubble(b, t) for b in collector.invalid]
        if answered:
            conversation.answer(text, calls)
        if calls:
            status = f"{status} · {t('tools.waiting', count=len(calls))}"
        yield history, conversation, status, failed
