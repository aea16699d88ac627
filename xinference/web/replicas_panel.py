"""The Launch tab's panel for one running model: its replicas (worker, state, requests
in flight) with a remove button each, a button that adds one, the model's restarts and
last error, and its recent events (crashes, relaunches, lost workers, scaling).

Adding and removing take a while (a replica serves once loaded; a removed one first
finishes its requests): the call runs in a thread while the handler shows the model's
replicas as they change, then says how it ended.
"""

from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import gradio as gr

from ..client import Client
from ..client.common import APIError
from .i18n import Translator
from .launch_options import running_rows
from .page import Page
from .replica_view import (
    EVENT_COLUMNS,
    REPLICA_COLUMNS,
    event_rows,
    health_line,
    last_error_line,
    replica_rows,
)
from .streams import readable_error

# How often the panel looks at the model while a replica is added or removed.
POLL_INTERVAL_S = 1.0
DRAIN_TIMEOUT_S = 30
MAX_DRAIN_TIMEOUT_S = 3600  # what DELETE /v1/models/{uid}/replicas/{id} accepts

Detail = Dict[str, Any]  # {"uid", "desc", "stats", "events"}: the REST answers, as they came


def fetch_detail(client: Client, uid: str) -> Detail:
    """The model's description, its replicas' load and its events."""
    desc = client.describe_model(uid)
    try:
        stats = client.get_model_replicas(uid)
    except APIError:
        stats = []  # no replica ready to route to (all starting or relaunching): no load to show
    return {"uid": uid, "desc": desc, "stats": stats, "events": client.get_model_events(uid)}


def _watching(page: Page, uid: str, work: Callable[[Client], Dict[str, Any]]) -> Iterator[Tuple[str, Any]]:
    """Runs `work(client)` in a thread; yields ("detail", fresh detail of `uid`) every
    POLL_INTERVAL_S while it runs, then ("done", what it returned). Its exception is raised here."""
    # Both clients are made here, in the handler's thread: that is where the page's
    # request (and so the logged-in user's token) is known.
    worker, watcher = page.client(), page.client()

    def run() -> Dict[str, Any]:
        with worker:
            return work(worker)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xinf-replicas")
    try:
        job = pool.submit(run)
        while not wait([job], timeout=POLL_INTERVAL_S).done:
            try:
                yield "detail", fetch_detail(watcher, uid)
            except Exception:  # noqa: BLE001 - a look on the way; the outcome says what happened
                pass
        yield "done", job.result()
    finally:
        # a page closed meanwhile: the call finishes on its own, nobody waits for it
        pool.shutdown(wait=False)
        watcher.close()


class ReplicasPanel:
    """Made before the running table (whose rows select a model here), placed after it."""

    def __init__(self, page: Page):
        self.page = page
        self.detail = gr.State(None)
        self.model = page.make(gr.Dropdown, {"label": "replicas.model"}, choices=[], value=None,
                               render=False, elem_id="replicas-model")
        self.status = gr.Markdown(render=False, elem_id="replicas-status")

    # ---- layout ------------------------------------------------------------------

    def place(self) -> None:
        page, mk = self.page, self.page.make
        with gr.Column(elem_id="replicas-panel"):
            with gr.Row():
                mk(gr.Markdown, {"value": "replicas.title"})
                refresh = mk(gr.Button, {"value": "replicas.refresh"}, size="sm", scale=0,
                             elem_id="replicas-refresh")
            with gr.Row():
                self.model.render()
                worker_ip = mk(gr.Textbox, {"label": "replicas.worker_ip", "placeholder": "replicas.worker_ip_hint"},
                               elem_id="replicas-worker-ip")
                self.drain = mk(gr.Number, {"label": "replicas.drain_timeout"}, value=DRAIN_TIMEOUT_S,
                                precision=0, minimum=0, maximum=MAX_DRAIN_TIMEOUT_S, elem_id="replicas-drain")
            with gr.Row():
                add = mk(gr.Button, {"value": "replicas.add"}, variant="primary", scale=0, elem_id="replicas-add")
                self.status.render()
            self._details()
        self.model.input(self.load, [self.model, page.lang], [self.detail, self.status])
        refresh.click(self.load, [self.model, page.lang], [self.detail, self.status])
        add.click(self.add, [self.model, worker_ip, page.lang], [self.detail, self.status, page.models],
                  show_progress="hidden")
        page.models.change(self.follow_models, [page.models, self.model], [self.model, self.detail])

    def _details(self) -> None:
        page = self.page

        @gr.render(inputs=[self.detail, page.lang])
        def details(detail: Optional[Detail], lang: str) -> None:
            t = Translator(lang)
            if not detail:
                gr.Markdown(t("replicas.none_selected"), elem_classes="xinf-empty")
                return
            desc = detail["desc"]
            gr.Markdown(health_line(desc, t), elem_id="replicas-health")
            error = last_error_line(desc, t)
            if error:
                gr.Markdown(error, elem_id="replicas-last-error")
            with gr.Row(elem_classes="xinf-row xinf-head"):
                for column in REPLICA_COLUMNS:
                    gr.Markdown(t(f"replicas.col.{column}"), elem_classes="xinf-cell")
                gr.Markdown("", elem_classes="xinf-cell xinf-action")
            for row in replica_rows(desc, detail.get("stats") or [], t):
                with gr.Row(elem_classes="xinf-row xinf-replica", key=f"replica-{row[0]}"):
                    for cell in row:
                        gr.Markdown(cell, elem_classes="xinf-cell")
                    button = gr.Button(t("replicas.remove"), variant="stop", size="sm",
                                       elem_classes="xinf-cell xinf-action xinf-remove")
                    button.click(partial(self.remove, detail["uid"], row[0]), [self.drain, page.lang],
                                 [self.detail, self.status, page.models], show_progress="hidden")
            gr.Markdown(t("replicas.events"))
            events = event_rows(detail.get("events") or [], t)
            if not events:
                gr.Markdown(t("replicas.no_events"), elem_id="replicas-no-events")
                return
            gr.Dataframe(value=events, headers=[t(f"replicas.event.{c}") for c in EVENT_COLUMNS],
                         interactive=False, wrap=True, max_height=360, elem_id="replicas-events",
                         column_widths=["17%", "13%", "17%", "53%"])

    def wire_select(self, button: Any, uid: str) -> None:
        """A running table row's button: shows that model here."""
        button.click(partial(self.select, uid), [self.page.lang], [self.model, self.detail, self.status]).then(
            None, js="() => document.getElementById('replicas-panel')?.scrollIntoView({block: 'start'})")

    # ---- handlers ----------------------------------------------------------------

    def _error(self, e: BaseException, t: Translator) -> str:
        message = readable_error(e, t, self.page.endpoint)
        gr.Warning(message)
        return t("status.error", message=message)

    def load(self, uid: Optional[str], lang: str) -> List[Any]:
        """[detail, status] of the chosen model."""
        if not uid:
            return [None, ""]
        try:
            with self.page.client() as client:
                return [fetch_detail(client, uid), ""]
        except Exception as e:
            return [None, self._error(e, Translator(lang))]

    def select(self, uid: str, lang: str) -> List[Any]:
        return [uid, *self.load(uid, lang)]

    def follow_models(self, models: Optional[Dict[str, Any]], current: Optional[str]) -> List[Any]:
        """New choices when models come or go; a model that went leaves the panel empty."""
        uids = [row[0] for row in running_rows(models or {})]
        if current in uids:
            return [gr.update(choices=uids), gr.skip()]
        return [gr.update(choices=uids, value=None), None]

    def _models_or_skip(self) -> Any:
        try:
            with self.page.client() as client:
                return client.list_models()
        except Exception:
            return gr.skip()

    def _detail_or_skip(self, uid: str) -> Any:
        try:
            with self.page.client() as client:
                return fetch_detail(client, uid)
        except APIError as e:
            return None if e.status_code == 404 else gr.skip()  # the model is gone: nothing to show
        except Exception:
            return gr.skip()

    def add(self, uid: Optional[str], worker_ip: Optional[str], lang: str) -> Iterator[List[Any]]:
        """Yields [detail, status, models]: the replicas while the new one loads, then the outcome."""
        t = Translator(lang)
        if not uid:
            yield [gr.skip(), t("replicas.no_model"), gr.skip()]
            return
        yield [gr.skip(), t("replicas.adding", uid=uid), gr.skip()]
        ip = (worker_ip or "").strip() or None
        try:
            outcome: Dict[str, Any] = {}
            for what, value in _watching(self.page, uid, lambda c: c.add_model_replicas(uid, 1, ip)):
                if what == "detail":
                    yield [value, gr.skip(), gr.skip()]
                else:
                    outcome = value
            added = ", ".join(outcome.get("added") or []) or "?"
            status = t("replicas.added", replica=added, uid=uid, count=outcome.get("replica", "?"))
        except Exception as e:
            status = self._error(e, t)
        yield [self._detail_or_skip(uid), status, self._models_or_skip()]

    def remove(self, uid: str, replica: str, drain_timeout: Any, lang: str) -> Iterator[List[Any]]:
        """Yields [detail, status, models]: the replica leaves the list at once, and the
        outcome once it has finished its requests and stopped."""
        t = Translator(lang)
        timeout = DRAIN_TIMEOUT_S if drain_timeout is None else min(max(float(drain_timeout), 0), MAX_DRAIN_TIMEOUT_S)
        yield [gr.skip(), t("replicas.removing", replica=replica, timeout=f"{timeout:g}"), gr.skip()]
        try:
            outcome: Dict[str, Any] = {}
            work = partial(_remove_one, uid=uid, replica=replica, timeout=timeout)
            for what, value in _watching(self.page, uid, work):
                if what == "detail":
                    yield [value, gr.skip(), gr.skip()]
                else:
                    outcome = value
            status = t("replicas.removed", replica=replica, uid=uid, count=outcome.get("replica", "?"))
        except APIError as e:
            if e.status_code == 404 and "has no replica" in str(e.detail):
                # not the model but the replica is gone (removed or relaunched meanwhile)
                message = t("replicas.replica_gone", replica=replica, uid=uid)
                gr.Warning(message)
                status = t("status.error", message=message)
            else:
                status = self._error(e, t)
        except Exception as e:
            status = self._error(e, t)
        yield [self._detail_or_skip(uid), status, self._models_or_skip()]


def _remove_one(client: Client, uid: str, replica: str, timeout: float) -> Dict[str, Any]:
    return client.remove_model_replica(uid, replica, drain_timeout=timeout)
