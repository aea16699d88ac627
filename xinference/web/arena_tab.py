"""The Arena tab: up to three running models side by side. One textbox feeds every
column; the columns stream at the same time, each with its own speed line."""

from functools import partial
from typing import Any, Dict, Iterator, List, Optional

import gradio as gr

from .chat_tab import Params, as_params
from .i18n import Translator
from .launch_options import chat_models
from .page import Page
from .replies import stream_reply

COLUMNS = 3


def column_choices(index: int, models: Optional[Dict[str, Any]], lang: str, current: Optional[str]) -> Any:
    """The first columns default to different models when there are several (the same
    one when there is one: a model with replicas against itself); the last starts empty."""
    uids = chat_models(models or {})
    choices = [(Translator(lang)("arena.none"), "")] + [(uid, uid) for uid in uids]
    if current in uids:
        value = current
    elif index < COLUMNS - 1 and uids:
        value = uids[min(index, len(uids) - 1)]
    else:
        value = ""
    return gr.update(choices=choices, value=value)


def _take_prompt(text: str, lang: str, *models: str) -> List[Any]:
    if text.strip() and not any(models):
        gr.Warning(Translator(lang)("arena.pick_models"))
    return ["", text]


def _column_reply(page: Page, message: str, history: Optional[List[Dict[str, Any]]], model: Optional[str],
                  system_prompt: str, max_tokens: Any, temperature: Any, lang: str) -> Iterator[List[Any]]:
    if not model:  # an empty column stays as it is
        yield [gr.skip(), gr.skip()]
        return
    params = as_params(system_prompt, max_tokens, temperature)
    t = Translator(lang)
    for history_, status, failed in stream_reply(page.client, page.endpoint, message, history, model, params, lang):
        yield [history_, t("status.error", message=status) if failed else status]


class Column:
    def __init__(self, page: Page, index: int):
        self.index = index
        with gr.Column(min_width=260, elem_id=f"arena-col-{index}"):
            self.model = page.make(gr.Dropdown, {"label": "arena.model"}, choices=[], elem_id=f"arena-model-{index}")
            self.chatbot = gr.Chatbot(show_label=False, height=380, elem_id=f"arena-history-{index}")
            self.status = gr.Markdown(elem_id=f"arena-status-{index}", elem_classes="xinf-arena-status")


def build_arena_tab(page: Page) -> Any:
    with page.make(gr.Tab, {"label": "tab.arena"}, id="arena", elem_id="tab-arena") as tab:
        page.make(gr.Markdown, {"value": "arena.intro"})
        with gr.Row(equal_height=True):
            columns = [Column(page, i) for i in range(COLUMNS)]
        with gr.Row():
            box = page.make(gr.Textbox, {"placeholder": "arena.placeholder"}, show_label=False, scale=8,
                            elem_id="arena-input")
            send = page.make(gr.Button, {"value": "chat.send"}, variant="primary", scale=1, elem_id="arena-send")
            clear = page.make(gr.Button, {"value": "chat.clear"}, scale=1, elem_id="arena-clear")
        params = Params(page, "arena")
        # inside the Tab: a component placed in Tabs but outside any Tab duplicates a tab
        message = gr.State("")
    for col in columns:
        page.models.change(partial(column_choices, col.index), [page.models, page.lang, col.model],
                           [col.model])
    events = []
    for trigger in (box.submit, send.click):
        taken = trigger(_take_prompt, [box, page.lang, *(c.model for c in columns)], [box, message], queue=False)
        # Listeners chained on one event run side by side; two on the textbox would queue.
        for col in columns:
            events.append(taken.then(
                partial(_column_reply, page),
                [message, col.chatbot, col.model, *params.components, page.lang],
                [col.chatbot, col.status], show_progress="hidden"))
    outputs = [x for col in columns for x in (col.chatbot, col.status)]
    clear.click(lambda: [[], ""] * COLUMNS, None, outputs, cancels=events, queue=False)
    return tab
