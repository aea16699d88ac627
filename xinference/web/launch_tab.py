"""The Launch tab: cascading choices from the catalogue, a launch that shows its
progress, the running models with a terminate button each, and the replicas and
events of one of them (replicas_panel.py)."""

import time
from functools import partial
from typing import Any, Dict, Iterator, List, Optional

import gradio as gr

from ..client.progress import download_summary, eta_text, mb
from .i18n import Translator
from .launch_options import (
    MODEL_TYPES,
    RUNNING_COLUMNS,
    engine_choices,
    first,
    format_choices,
    launch_progress_bar,
    parse_engine_kwargs,
    quantization_choices,
    running_rows,
    size_choices,
    size_value,
)
from .page import Page
from .replicas_panel import ReplicasPanel
from .streams import readable_error

POLL_INTERVAL_S = 0.5
HUB_CHOICES = ("auto", "huggingface", "modelscope")
LAUNCH_TIMEOUT_S = 3600.0


def fetch_models(page: Page) -> Dict[str, Dict[str, Any]]:
    with page.client() as client:
        return client.list_models()


def _family_choices(page: Page, model_type: str) -> List[str]:
    with page.client() as client:
        return [r["model_name"] for r in client.list_model_registrations(model_type)]


def _cascade(engines: Dict[str, Any], engine: Optional[str], fmt: Optional[str],
             size: Optional[str], quant: Optional[str]) -> List[Any]:
    """Updates for engine → format → size → quantization, keeping what is still valid."""
    engines_ = engine_choices(engines)
    engine = first(engines_, engine)
    formats = format_choices(engines, engine)
    fmt = first(formats, fmt)
    sizes = size_choices(engines, engine, fmt)
    size = first(sizes, size)
    quants = quantization_choices(engines, engine, fmt, size)
    quant = first(quants, quant)
    return [gr.update(choices=c, value=v) for c, v in
            ((engines_, engine), (formats, fmt), (sizes, size), (quants, quant))]


class LaunchForm:
    """The form's components, in the order the launch handler takes them."""

    def __init__(self, page: Page):
        self.page = page
        mk = page.make
        with gr.Row():
            self.model_type = mk(gr.Dropdown, {"label": "launch.model_type"}, choices=list(MODEL_TYPES), value="LLM")
            self.family = mk(gr.Dropdown, {"label": "launch.family"}, choices=[], filterable=True,
                             elem_id="launch-family")
            self.engine = mk(gr.Dropdown, {"label": "launch.engine"}, choices=[], elem_id="launch-engine")
            self.fmt = mk(gr.Dropdown, {"label": "launch.format"}, choices=[], elem_id="launch-format")
            self.size = mk(gr.Dropdown, {"label": "launch.size"}, choices=[], elem_id="launch-size")
            self.quant = mk(gr.Dropdown, {"label": "launch.quantization"}, choices=[],
                            elem_id="launch-quantization")
        with gr.Row():
            self.uid = mk(gr.Textbox, {"label": "launch.uid", "placeholder": "launch.uid_hint"},
                          elem_id="launch-uid")
            self.replica = mk(gr.Number, {"label": "launch.replica"}, value=1, precision=0, minimum=1,
                              elem_id="launch-replica")
            self.model_path = mk(gr.Textbox, {"label": "launch.model_path", "placeholder": "launch.model_path_hint"},
                                 elem_id="launch-model-path")
            self.kwargs = mk(gr.Textbox, {"label": "launch.kwargs", "placeholder": "launch.kwargs_hint"},
                             elem_id="launch-kwargs")
            # where a worker without the weights downloads them; "auto": the worker's
            # XINFERENCE_MODEL_SRC, else Hugging Face
            self.hub = mk(gr.Dropdown, {"label": "launch.download_hub"}, choices=list(HUB_CHOICES),
                          value="auto", elem_id="launch-hub")
        self.engines = gr.State({})
        # the uid of the launch under way, for the cancel button
        self.launching = gr.State(None)
        with gr.Row():
            self.launch = mk(gr.Button, {"value": "launch.button"}, variant="primary", scale=0,
                             elem_id="launch-button")
            self.cancel = mk(gr.Button, {"value": "launch.cancel"}, variant="stop", scale=0,
                             elem_id="launch-cancel")
            self.status = gr.Markdown(elem_id="launch-status")

    @property
    def inputs(self) -> List[Any]:
        return [self.model_type, self.family, self.engine, self.fmt, self.size, self.quant,
                self.uid, self.replica, self.model_path, self.kwargs, self.hub, self.engines, self.page.lang]

    @property
    def spec_dropdowns(self) -> List[Any]:
        return [self.engine, self.fmt, self.size, self.quant]


# The embedded model launches with no download: the natural first choice.
DEFAULT_FAMILY = "gemma-3"


def _on_type(page: Page, model_type: str, family: Optional[str], lang: str) -> List[Any]:
    is_llm = model_type == "LLM"
    try:
        families = _family_choices(page, model_type)
    except Exception as e:
        gr.Warning(readable_error(e, Translator(lang), page.endpoint))
        families = []
    value = first(families, family) if family in families else first(families, DEFAULT_FAMILY)
    return [gr.update(choices=families, value=value)] + [gr.update(visible=is_llm)] * 4


def _on_family(page: Page, model_type: str, family: Optional[str], engine: Optional[str], fmt: Optional[str],
               size: Optional[str], quant: Optional[str], lang: str) -> List[Any]:
    engines: Dict[str, Any] = {}
    if model_type == "LLM" and family:
        try:
            with page.client() as client:
                engines = client.query_engine_by_model_name(family)
        except Exception as e:
            gr.Warning(readable_error(e, Translator(lang), page.endpoint))
    return [engines, *_cascade(engines, engine, fmt, size, quant)]


def _launch_args(model_type: str, family: Optional[str], engine: Optional[str], fmt: Optional[str],
                 size: Optional[str], quant: Optional[str], uid: str, replica: Any, model_path: str,
                 kwargs: str, hub: Optional[str], engines: Dict[str, Any]) -> Dict[str, Any]:
    args: Dict[str, Any] = {
        "model_name": family, "model_type": model_type, "model_uid": (uid or "").strip() or None,
        "replica": int(replica or 1), "model_path": (model_path or "").strip() or None,
        "download_hub": hub if hub in HUB_CHOICES[1:] else None,
    }
    if model_type == "LLM":
        args.update(model_engine=engine, model_format=fmt, quantization=quant,
                    model_size_in_billions=size_value(engines, engine, fmt, size))
    extra = parse_engine_kwargs(kwargs)
    clash = sorted(set(extra) & set(args))
    if clash:
        raise ValueError(f"set {', '.join(clash)} with the form's own fields, not as engine arguments")
    return {**args, **extra}


def _launch(page: Page, model_type: str, family: Optional[str], engine: Optional[str], fmt: Optional[str],
            size: Optional[str], quant: Optional[str], uid: str, replica: Any, model_path: str, kwargs: str,
            hub: Optional[str], engines: Dict[str, Any], lang: str) -> Iterator[List[Any]]:
    """Yields [status, models, launching uid]: the launch's progress, then its outcome."""
    t = Translator(lang)
    if not family:
        yield [t("launch.no_family"), gr.skip(), gr.skip()]
        return
    launched: Optional[str] = None
    try:
        args = _launch_args(model_type, family, engine, fmt, size, quant, uid, replica, model_path, kwargs,
                            hub, engines)
        yield [t("launch.starting", name=family), gr.skip(), gr.skip()]
        with page.client() as client:
            launched = client.launch_model(wait_ready=False, **args)
            deadline = time.monotonic() + LAUNCH_TIMEOUT_S
            while (report := client.get_launch_model_progress(launched))["progress"] < 1.0:
                if time.monotonic() > deadline:
                    yield [t("launch.too_slow", uid=launched), client.list_models(), None]
                    return
                yield [progress_line(t, launched, report), gr.skip(), launched]
                time.sleep(POLL_INTERVAL_S)
            models = client.list_models()
        yield [t("launch.ready", uid=launched), models, None]
    except Exception as e:
        status_code = getattr(e, "status_code", None)
        detail = str(getattr(e, "detail", e))
        if launched is not None and status_code == 404 and "cancelled" in detail:
            message = t("launch.cancelled", uid=launched)
            yield [message, _models_or_skip(page), None]
            return
        if launched is not None and status_code == 404:
            # "Model x is not running: its launch failed: <cause>": the cause is the news
            message = t("launch.failed", uid=launched, detail=detail.split("its launch failed: ", 1)[-1])
        else:
            message = readable_error(e, t, page.endpoint)
        gr.Warning(message)
        yield [t("status.error", message=message), _models_or_skip(page), None]


def progress_line(t: Translator, uid: str, report: Dict[str, Any]) -> str:
    """The bar, and while the weights download: MB done / total, MB/s and ETA."""
    bar, percent = launch_progress_bar(report["progress"])
    line = t("launch.progress", uid=uid, bar=bar, percent=percent)
    download = download_summary(report)
    if download is not None:
        line += " " + t("launch.downloading", done=mb(download["downloaded_bytes"]),
                        total=mb(download["total_bytes"]), speed=mb(download["speed_bytes_per_s"]),
                        eta=eta_text(download["eta_s"]))
    elif report.get("stage") == "waiting_for_download":
        line += " " + t("launch.waiting_for_download")
    return line


def _cancel(page: Page, uid: Optional[str], lang: str) -> Any:
    """Cancels the launch under way; the launch's own handler then reports it."""
    t = Translator(lang)
    if not uid:
        return t("launch.nothing_to_cancel")
    try:
        with page.client() as client:
            client.cancel_launch_model(uid)
    except Exception as e:
        message = readable_error(e, t, page.endpoint)
        gr.Warning(message)
        return t("status.error", message=message)
    return gr.skip()


def _models_or_skip(page: Page) -> Any:
    try:
        return fetch_models(page)
    except Exception:
        return gr.skip()


def _terminate(page: Page, uid: str, lang: str) -> List[Any]:
    t = Translator(lang)
    try:
        with page.client() as client:
            client.terminate_model(uid)
        status = t("running.terminated", uid=uid)
    except Exception as e:
        message = readable_error(e, t, page.endpoint)
        gr.Warning(message)
        status = t("status.error", message=message)
    return [_models_or_skip(page), status]


def refresh_models(page: Page, lang: str) -> Any:
    try:
        return fetch_models(page)
    except Exception as e:
        gr.Warning(readable_error(e, Translator(lang), page.endpoint))
        return gr.skip()


def _running_table(page: Page, status: Any, panel: ReplicasPanel) -> None:
    @gr.render(inputs=[page.models, page.lang])
    def table(models: Optional[Dict[str, Any]], lang: str) -> None:
        t = Translator(lang)
        rows = running_rows(models or {})
        if not rows:
            gr.Markdown(t("running.empty"), elem_classes="xinf-empty")
            return
        with gr.Row(elem_classes="xinf-row xinf-head"):
            for column in RUNNING_COLUMNS:
                gr.Markdown(t(f"running.{column}"), elem_classes="xinf-cell")
            gr.Markdown("", elem_classes="xinf-cell xinf-action")
            gr.Markdown("", elem_classes="xinf-cell xinf-action")
        for row in rows:
            with gr.Row(elem_classes="xinf-row xinf-model", key=f"row-{row[0]}"):
                for cell in row:
                    gr.Markdown(cell, elem_classes="xinf-cell")
                manage = gr.Button(t("running.manage"), size="sm", elem_classes="xinf-cell xinf-action xinf-manage")
                panel.wire_select(manage, row[0])
                button = gr.Button(t("running.terminate"), variant="stop", size="sm",
                                   elem_classes="xinf-cell xinf-action xinf-terminate")
                button.click(partial(_terminate, page, row[0]), inputs=[page.lang],
                             outputs=[page.models, status])


def build_launch_tab(page: Page) -> Any:
    with page.make(gr.Tab, {"label": "tab.launch"}, id="launch", elem_id="tab-launch") as tab:
        form = LaunchForm(page)
        with gr.Row():
            page.make(gr.Markdown, {"value": "running.title"})
            refresh = page.make(gr.Button, {"value": "running.refresh"}, size="sm", scale=0,
                                elem_id="running-refresh")
        panel = ReplicasPanel(page)  # its components are placed below the table
        _running_table(page, form.status, panel)
        panel.place()
    type_inputs = [form.model_type, form.family, page.lang]
    type_outputs = [form.family, *form.spec_dropdowns]
    form.model_type.input(partial(_on_type, page), type_inputs, type_outputs)
    page.blocks.load(partial(_on_type, page), type_inputs, type_outputs)
    family_inputs = [form.model_type, form.family, *form.spec_dropdowns, page.lang]
    form.family.change(partial(_on_family, page), family_inputs, [form.engines, *form.spec_dropdowns])
    for dropdown in form.spec_dropdowns[:3]:
        dropdown.input(_cascade, [form.engines, *form.spec_dropdowns], form.spec_dropdowns)
    form.launch.click(partial(_launch, page), form.inputs, [form.status, page.models, form.launching],
                      show_progress="hidden")
    form.cancel.click(partial(_cancel, page), [form.launching, page.lang], [form.status],
                      show_progress="hidden")
    refresh.click(partial(refresh_models, page), [page.lang], [page.models])
    return tab
