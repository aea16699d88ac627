"""The Chat tab: one running chat model, a streamed answer, the speed of the last answer."""

from functools import partial
from typing import Any, Dict, Iterator, List, Optional

import gradio as gr

from .i18n import Translator
from .launch_options import chat_models, first
from .page import Page
from .replies import stream_reply


class Params:
    """Generation settings, shared in shape by the chat and arena tabs."""

    def __init__(self, page: Page, prefix: str):
        with page.make(gr.Accordion, {"label": "params.title"}, open=False, elem_id=f"{prefix}-params"):
            self.system_prompt = page.make(gr.Textbox, {"label": "params.system_prompt"}, lines=2,
                                           elem_id=f"{prefix}-system")
            with gr.Row():
                self.max_tokens = page.make(gr.Slider, {"label": "params.max_tokens"}, minimum=1,
                                            maximum=4096, step=1, value=256, elem_id=f"{prefix}-max-tokens")
                self.temperature = page.make(gr.Slider, {"label": "params.temperature"}, minimum=0.0,
                                             maximum=2.0, step=0.05, value=0.7, elem_id=f"{prefix}-temperature")

    @property
    def components(self) -> List[Any]:
        return [self.system_prompt, self.max_tokens, self.temperature]


def as_params(system_prompt: str, max_tokens: Any, temperature: Any) -> Dict[str, Any]:
    return {"system_prompt": system_prompt, "max_tokens": max_tokens, "temperature": temperature}


def model_choices(models: Optional[Dict[str, Any]], current: Optional[str]) -> Any:
    choices = chat_models(models or {})
    return gr.update(choices=choices, value=first(choices, current))


def _reply(page: Page, message: str, history: Optional[List[Dict[str, Any]]], model: Optional[str],
           system_prompt: str, max_tokens: Any, temperature: Any, lang: str) -> Iterator[List[Any]]:
    params = as_params(system_prompt, max_tokens, temperature)
    for history_, status, failed in stream_reply(page.client, page.endpoint, message, history, model, params, lang):
        if failed:
            gr.Warning(status)
            status = Translator(lang)("status.error", message=status)
        yield [history_, status]


def build_chat_tab(page: Page) -> Any:
    with page.make(gr.Tab, {"label": "tab.chat"}, id="chat", elem_id="tab-chat") as tab:
        with gr.Row():
            model = page.make(gr.Dropdown, {"label": "chat.model"}, choices=[], elem_id="chat-model")
        chatbot = page.make(gr.Chatbot, {"label": "chat.history"}, height=420, elem_id="chat-history")
        with gr.Row():
            box = page.make(gr.Textbox, {"placeholder": "chat.placeholder"}, show_label=False, scale=8,
                            elem_id="chat-input")
            send = page.make(gr.Button, {"value": "chat.send"}, variant="primary", scale=1, elem_id="chat-send")
            clear = page.make(gr.Button, {"value": "chat.clear"}, scale=1, elem_id="chat-clear")
        status = gr.Markdown(elem_id="chat-status")
        params = Params(page, "chat")
        # inside the Tab: a component placed in Tabs but outside any Tab duplicates a tab
        message = gr.State("")
    page.models.change(model_choices, [page.models, model], [model])
    # The box empties at once (no queue); the answer streams in a second, queued step.
    events = []
    for trigger in (box.submit, send.click):
        taken = trigger(lambda text: ("", text), [box], [box, message], queue=False)
        events.append(taken.then(partial(_reply, page), [message, chatbot, model, *params.components, page.lang],
                                 [chatbot, status], show_progress="hidden"))
    clear.click(lambda: ([], ""), None, [chatbot, status], cancels=events, queue=False)
    return tab
