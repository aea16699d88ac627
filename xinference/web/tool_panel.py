"""The chat tab's tool components: the tools box and the tool-choice selector (shown only
for a model with the "tools" ability), and the box where the user answers the model's
calls (shown only while calls wait for results). The logic lives in `tool_turns`."""

from typing import Any, Dict, List, Optional

import gradio as gr

from .i18n import Translator
from .launch_options import can_call_tools
from .page import Page
from .tool_turns import (
    EXAMPLE_TEXT,
    Conversation,
    choice_options,
    parse_tools,
    results_label,
    results_template,
    tools_hint,
)


class ToolPanel:
    def __init__(self, page: Page, prefix: str):
        with page.make(gr.Accordion, {"label": "tools.title"}, open=False, visible=False,
                       elem_id=f"{prefix}-tools") as self.accordion:
            self.tools = page.make(gr.Textbox, {"label": "tools.box", "info": "tools.box_info"},
                                   placeholder=EXAMPLE_TEXT, lines=6, max_lines=24, elem_id=f"{prefix}-tools-json")
            with gr.Row():
                self.hint = gr.Markdown(elem_id=f"{prefix}-tools-hint")
                self.example = page.make(gr.Button, {"value": "tools.example"}, size="sm", scale=0, min_width=160,
                                         elem_id=f"{prefix}-tools-example")
            self.choice = page.make(gr.Dropdown, {"label": "tools.choice", "info": "tools.choice_info"},
                                    choices=choice_options(None), value="auto", elem_id=f"{prefix}-tool-choice")

    def results_box(self, page: Page, prefix: str) -> None:
        """The answers to the calls: placed apart from the tools, under the conversation."""
        with gr.Group(visible=False, elem_id=f"{prefix}-tool-results") as self.results_group:
            self.results = gr.Textbox(label=Translator(None)("tools.results"), lines=3, max_lines=16,
                                      elem_id=f"{prefix}-tool-results-box")
            self.send_results = page.make(gr.Button, {"value": "tools.send_results"}, variant="primary",
                                          elem_id=f"{prefix}-tool-results-send")

    def wire(self, page: Page, model: Any) -> None:
        """The listeners inside the panel, and its visibility by the chosen model."""
        model.change(tools_visibility, [model, page.models], [self.accordion], queue=False)
        self.tools.change(tools_changed, [self.tools, self.choice, page.lang], [self.hint, self.choice],
                          queue=False, show_progress="hidden")
        page.lang.change(tools_changed, [self.tools, self.choice, page.lang], [self.hint, self.choice],
                         queue=False, show_progress="hidden")
        self.example.click(lambda: EXAMPLE_TEXT, None, [self.tools], queue=False)


def tools_visibility(model: Optional[str], models: Optional[Dict[str, Any]]) -> Any:
    return gr.update(visible=can_call_tools(models, model))


def tools_changed(text: Optional[str], choice: Optional[str], lang: str) -> List[Any]:
    """The line under the tools box and the selector's functions, as the box is edited."""
    t = Translator(lang)
    hint = tools_hint(text, t)
    try:
        options = choice_options(parse_tools(text, t))
    except ValueError:
        return [hint, gr.skip()]  # the selector keeps its functions while the JSON is being typed
    values = [value for _, value in options]
    return [hint, gr.update(choices=options, value=choice if choice in values else "auto")]


def results_updates(conversation: Conversation, t: Translator) -> List[Any]:
    """The results group and box for calls that now wait: shown, labelled, prefilled."""
    if not conversation.pending:
        return [gr.skip(), gr.skip()]
    return [gr.update(visible=True),
            gr.update(label=results_label(conversation.pending, t), value=results_template(conversation.pending))]
