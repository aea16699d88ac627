"""The Chat tab: one running chat model, a streamed answer, the speed of the last answer.
A model with the "tools" ability also gets tools: its calls show in the conversation and
the user answers them with results (see `tool_panel` and `tool_turns`)."""

from functools import partial
from typing import Any, Dict, Iterator, List, Optional

import gradio as gr

from .i18n import Translator
from .launch_options import can_call_tools, chat_models, first
from .page import Page
from .replies import stream_turn
from .tool_panel import ToolPanel, results_updates, tools_visibility
from .tool_turns import Conversation, parse_results, parse_tools, result_bubble, tool_choice


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


# The reply handlers' outputs: message box, chatbot, conversation, results group, results box, status.


def _refuse(t: Translator, reason: str, box: Any = None) -> List[Any]:
    gr.Warning(reason)
    return [gr.skip() if box is None else box, gr.skip(), gr.skip(), gr.skip(), gr.skip(),
            t("status.error", message=reason)]


def _tools(models: Optional[Dict[str, Any]], model: Optional[str], text: Optional[str],
           t: Translator) -> Optional[List[Dict[str, Any]]]:
    """The tools box's tools, for a model that can call them (raises ValueError)."""
    return parse_tools(text, t) if can_call_tools(models, model) else None


def _stream(page: Page, history: List[Dict[str, Any]], conversation: Conversation, model: Optional[str],
            params: Dict[str, Any], lang: str, tools: Optional[List[Dict[str, Any]]],
            choice: Any) -> Iterator[List[Any]]:
    t = Translator(lang)
    for history_, conversation_, status, failed in stream_turn(page.client, page.endpoint, conversation, history,
                                                               model, params, lang, tools, choice):
        if failed:
            gr.Warning(status)
            status = t("status.error", message=status)
        yield [gr.skip(), history_, conversation_, *results_updates(conversation_, t), status]


def _reply(page: Page, message: str, history: Optional[List[Dict[str, Any]]],
           conversation: Optional[Conversation], model: Optional[str], models: Optional[Dict[str, Any]],
           system_prompt: str, max_tokens: Any, temperature: Any, tools_text: Optional[str],
           choice: Optional[str], lang: str) -> Iterator[List[Any]]:
    """The user's message and the model's answer. A message that cannot go (no model, calls
    still waiting for results, tools that are not valid JSON) goes back into the box."""
    t = Translator(lang)
    conversation = conversation or Conversation()
    if not model:
        yield _refuse(t, t("chat.no_model"), message)
        return
    if not message.strip():
        return
    if conversation.pending:
        yield _refuse(t, t("tools.answer_first", count=len(conversation.pending)), message)
        return
    try:
        tools = _tools(models, model, tools_text, t)
    except ValueError as e:
        yield _refuse(t, str(e), message)
        return
    conversation = conversation.copy()
    conversation.ask(message)
    history = list(history or []) + [{"role": "user", "content": message}]
    yield from _stream(page, history, conversation, model, as_params(system_prompt, max_tokens, temperature),
                       lang, tools, tool_choice(choice, tools))


def _answer_calls(page: Page, text: Optional[str], history: Optional[List[Dict[str, Any]]],
                  conversation: Optional[Conversation], model: Optional[str], models: Optional[Dict[str, Any]],
                  system_prompt: str, max_tokens: Any, temperature: Any, tools_text: Optional[str],
                  lang: str) -> Iterator[List[Any]]:
    """The user's results for the waiting calls, then the model's answer. After results the
    model chooses freely (tool_choice "auto"): a forced choice would make it call again."""
    t = Translator(lang)
    conversation = conversation or Conversation()
    if not conversation.pending:
        yield _refuse(t, t("tools.nothing_pending"))
        return
    try:
        results = parse_results(text, conversation.pending, t)
        tools = _tools(models, model, tools_text, t)
    except ValueError as e:
        yield _refuse(t, str(e))
        return
    history = list(history or []) + [result_bubble(c, results[c["id"]], t) for c in conversation.pending]
    conversation = conversation.copy()
    conversation.give_results(results)
    yield [gr.skip(), history, conversation, gr.update(visible=False), gr.update(value=""), ""]
    yield from _stream(page, history, conversation, model, as_params(system_prompt, max_tokens, temperature),
                       lang, tools, None)


def build_chat_tab(page: Page) -> Any:
    with page.make(gr.Tab, {"label": "tab.chat"}, id="chat", elem_id="tab-chat") as tab:
        with gr.Row():
            model = page.make(gr.Dropdown, {"label": "chat.model"}, choices=[], elem_id="chat-model")
        chatbot = page.make(gr.Chatbot, {"label": "chat.history"}, height=420, elem_id="chat-history")
        panel = ToolPanel(page, "chat")
        panel.results_box(page, "chat")
        with gr.Row():
            box = page.make(gr.Textbox, {"placeholder": "chat.placeholder"}, show_label=False, scale=8,
                            elem_id="chat-input")
            send = page.make(gr.Button, {"value": "chat.send"}, variant="primary", scale=1, elem_id="chat-send")
            clear = page.make(gr.Button, {"value": "chat.clear"}, scale=1, elem_id="chat-clear")
        status = gr.Markdown(elem_id="chat-status")
        params = Params(page, "chat")
        # inside the Tab: a component placed in Tabs but outside any Tab duplicates a tab
        message = gr.State("")
        conversation = gr.State(Conversation())  # the messages as the server gets them
    page.models.change(model_choices, [page.models, model], [model]).then(
        tools_visibility, [model, page.models], [panel.accordion])
    panel.wire(page, model)
    outputs = [box, chatbot, conversation, panel.results_group, panel.results, status]
    settings = [model, page.models, *params.components, panel.tools]
    # The box empties at once (no queue); the answer streams in a second, queued step.
    events = []
    for trigger in (box.submit, send.click):
        taken = trigger(lambda text: ("", text), [box], [box, message], queue=False)
        events.append(taken.then(partial(_reply, page), [message, chatbot, conversation, *settings, panel.choice,
                                                         page.lang], outputs, show_progress="hidden"))
    events.append(panel.send_results.click(partial(_answer_calls, page),
                                           [panel.results, chatbot, conversation, *settings, page.lang],
                                           outputs, show_progress="hidden"))
    cleared = [chatbot, status, conversation, panel.results_group, panel.results]
    clear.click(lambda: ([], "", Conversation(), gr.update(visible=False), ""), None, cleared,
                cancels=events, queue=False)
    # the Chatbot's own trash button empties the view: the conversation sent goes with it
    chatbot.clear(lambda: (gr.skip(), "", Conversation(), gr.update(visible=False), ""), None, cleared,
                  cancels=events, queue=False)
    return tab
