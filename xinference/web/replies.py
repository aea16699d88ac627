"""One streamed chat answer into a Chatbot history, shared by the chat and arena tabs.
Gradio-free: it yields (history, status line, failed) and the tabs decide how to show them."""

import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..client import ChatModelHandle, Client
from .i18n import Translator
from .streams import Clock, follow, format_stats, readable_error, to_messages

# Sending every chunk to the page costs more than it shows: at most this often.
UPDATE_INTERVAL_S = 0.05

History = List[Dict[str, Any]]


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
    config = {
        "stream": True,
        "max_tokens": int(params.get("max_tokens") or 256),
        "temperature": float(params.get("temperature") or 0.0),
        "stream_options": {"include_usage": True},
    }
    try:
        with client_factory() as client:
            handle = client.get_model(model)
            if not isinstance(handle, ChatModelHandle):
                yield history, t("chat.not_chat", model=model), True
                return
            history.append({"role": "assistant", "content": ""})
            last = 0.0
            for answer, stats in follow(handle.chat(messages, generate_config=config), clock, start):  # type: ignore[arg-type]
                history[-1] = {"role": "assistant", "content": answer}
                if stats.end is not None:
                    yield history, format_stats(stats, t), False
                elif clock() - last >= UPDATE_INTERVAL_S:
                    last = clock()
                    yield history, t("chat.streaming", model=model), False
    except Exception as e:  # every failure becomes a sentence in the page
        if history and history[-1]["role"] == "assistant" and not history[-1]["content"]:
            history.pop()
        yield history, readable_error(e, t, endpoint), True
