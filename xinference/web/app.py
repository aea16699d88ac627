"""The web UI: a Gradio page over the REST API, built on the Python client only.

`build_ui(endpoint)` returns the Blocks; the composition root (xinference.deploy)
mounts them on the REST server with `mount_options()`, pointing the client at the
server's own URL.
"""

from functools import partial
from typing import Any, Callable, Dict, List, Optional

import gradio as gr

from .arena_tab import build_arena_tab
from .chat_tab import build_chat_tab
from .i18n import DEFAULT_LANGUAGE, LANGUAGES, pick_language
from .launch_tab import build_launch_tab, fetch_models, refresh_models
from .page import Page

CSS = """
.xinf-row { gap: 6px !important; align-items: center; border-bottom: 1px solid var(--border-color-primary); }
.xinf-head { font-weight: 600; }
.xinf-cell { min-width: 60px !important; overflow-wrap: anywhere; }
.xinf-action { max-width: 130px; }
#language { max-width: 260px; margin-left: auto; }
.xinf-arena-status, #chat-status { min-height: 1.6em; }
"""


def mount_options() -> Dict[str, Any]:
    """Arguments of `gr.mount_gradio_app` besides the app, the Blocks and the path
    (in Gradio 6 the theme and the CSS belong to the mount, not to the Blocks)."""
    return {"theme": gr.themes.Soft(), "css": CSS, "footer_links": ["api"]}


def _on_load(page: Page, request: gr.Request) -> List[Any]:
    """The browser's language and the running models, when a page opens."""
    lang = pick_language(request.headers.get("accept-language") if request else None)
    try:
        models = fetch_models(page)
    except Exception:
        models = {}  # the Launch tab's own load listener says what went wrong
    return [lang, models, *page.relabel(lang)]


def build_ui(endpoint: str, token_for: Optional[Callable[[str], str]] = None) -> gr.Blocks:
    """`token_for(username)`: a token for the user logged in to the page, when the
    server runs with --auth-config (the mount then asks for a login)."""
    page = Page(endpoint.rstrip("/"), token_for)
    # analytics off: otherwise building Blocks starts threads that call out to the
    # internet, and where connections hang the server never exits.
    with gr.Blocks(title="Xinference", analytics_enabled=False) as blocks:
        page.blocks = blocks
        with gr.Row(equal_height=True):
            page.make(gr.Markdown, {"value": "app.title"}, elem_id="title")
            page.lang = gr.Radio(choices=[(name, code) for code, name in LANGUAGES.items()],
                                 value=DEFAULT_LANGUAGE, show_label=False, container=False, elem_id="language")
        page.models = gr.State({})
        with gr.Tabs():
            tabs = [build_launch_tab(page), build_chat_tab(page), build_arena_tab(page)]
        # Models launched or terminated elsewhere (CLI, another page) show up on tab change.
        for tab in tabs:
            tab.select(partial(refresh_models, page), [page.lang], [page.models])

        def on_load(request: gr.Request) -> List[Any]:
            # a closure, not a partial: Gradio finds the gr.Request parameter by its annotation
            return _on_load(page, request)

        # Wired last: every translated component exists by now.
        blocks.load(on_load, None, [page.lang, page.models, *page.translated])
        page.lang.input(page.relabel, [page.lang], page.translated)
    # The default limit of 1 would make every user wait for every other one.
    blocks.queue(default_concurrency_limit=None)
    # Gradio's queue looks for work every 1 ms and for progress every 10 ms, even with
    # nobody on the page (on Windows: 50 and 100 ms), on the event loop the supervisor,
    # worker and REST API share. Measured idle: 6.5% of a core, 0.8% at Windows' pace;
    # neither delay is one a person notices.
    queue = getattr(blocks, "_queue", None)
    for attr, pace in (("sleep_when_free", 0.05), ("progress_update_sleep_when_free", 0.1)):
        if isinstance(getattr(queue, attr, None), float):
            setattr(queue, attr, max(getattr(queue, attr), pace))
    return blocks
