"""The web UI's replicas panel without a browser: the rows it shows from the REST
answers, its texts in both languages, and its add / remove handlers against a fake client."""

import threading
import time

import gradio as gr
import pytest

from xinference.client.common import APIError
from xinference.web import replicas_panel
from xinference.web.i18n import Translator, load_locale
from xinference.web.page import Page
from xinference.web.replica_view import (
    EVENT_COLUMNS,
    EVENT_KINDS,
    REPLICA_COLUMNS,
    STATES,
    event_rows,
    event_time,
    health_line,
    last_error_line,
    replica_rows,
)

EN, ZH = Translator("en"), Translator("zh-CN")
# gr.Warning outside a page is a UserWarning: the handlers' error lines are checked instead
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")

DESC = {
    "model_uid": "m", "status": "READY", "replica": 3, "restarts": 2, "last_error": "replica m-1 crashed",
    "replicas": [
        {"replica_uid": "m-0", "worker_address": "10.0.0.1:3001", "ready": True, "state": "ready"},
        {"replica_uid": "m-1", "worker_address": "10.0.0.2:3001", "ready": False, "state": "restarting"},
        {"replica_uid": "m-2", "worker_address": "10.0.0.2:3001", "ready": True, "state": "ready"},
    ],
}
STATS = [
    {"replica_uid": "m-0", "address": "10.0.0.1:4001", "inflight": 3, "served": 40, "slots_busy": 3},
    {"replica_uid": "m-2", "address": "10.0.0.2:4002", "inflight": 0, "served": 2, "down": True},
]


def test_texts_exist_in_both_languages():
    keys = {f"replicas.col.{c}" for c in REPLICA_COLUMNS} | {f"replicas.event.{c}" for c in EVENT_COLUMNS}
    keys |= {f"replicas.state.{s}" for s in STATES} | {f"replicas.kind.{k}" for k in EVENT_KINDS}
    for lang in ("en", "zh-CN"):
        assert not keys - set(load_locale(lang)), lang


def test_replica_rows_merge_the_supervisor_list_and_the_routing_figures():
    rows = replica_rows(DESC, STATS, EN)
    assert rows == [
        ["m-0", "10.0.0.1:3001", "ready", "3", "40"],
        ["m-1", "10.0.0.2:3001", "restarting", "—", "—"],  # not routed to: no figures
        ["m-2", "10.0.0.2:3001", "unreachable", "0", "2"],  # ready, but this server cannot reach it
    ]
    assert [r[2] for r in replica_rows(DESC, STATS, ZH)] == ["就绪", "重启中", "无法连接"]


def test_replica_rows_without_addresses_or_with_a_new_state():
    desc = {"replicas": [{"replica_id": "m-0", "state": "hibernating"}, {"replica_uid": "m-1", "ready": True}]}
    assert replica_rows(desc, [], EN) == [["m-0", "—", "hibernating", "—", "—"], ["m-1", "—", "ready", "—", "—"]]
    # a description without the list: the replicas the server routes to
    assert replica_rows({}, STATS[:1], EN) == [["m-0", "—", "ready", "3", "40"]]


def test_event_rows_newest_first_translated_and_bounded():
    events = [
        {"time": 1_700_000_000.5, "kind": "crashed", "replica_uid": "m-1", "message": "exit code -11"},
        {"time": 1_700_000_003, "kind": "relaunched", "replica_uid": "m-1", "message": "serving again"},
        {"timestamp": "2024-01-01T00:00:00Z", "kind": "something_new", "replica": None, "message": "x"},
    ]
    rows = event_rows(events, EN)
    assert [r[1] for r in rows] == ["something_new", "relaunched", "crashed"]
    assert rows[0] == ["2024-01-01T00:00:00Z", "something_new", "—", "x"]
    assert rows[1][2:] == ["m-1", "serving again"]
    assert rows[1][0] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_700_000_003))
    assert [r[1] for r in event_rows(events, ZH)][1:] == ["已重启", "崩溃"]
    assert len(event_rows(events * 30, EN, limit=50)) == 50
    assert event_rows([], EN) == [] and event_time(None) == "—"


def test_health_and_last_error_lines():
    assert health_line(DESC, EN) == "**m** · status **READY** · 3 replica(s) · restarts: **2**"
    assert "重启次数：**2**" in health_line(DESC, ZH)
    assert last_error_line(DESC, EN) == "⚠ Last error: replica m-1 crashed"
    assert last_error_line({**DESC, "last_error": None}, EN) is None


# ---- handlers -------------------------------------------------------------------


class FakeClient:
    def __init__(self, cluster):
        self.cluster = cluster

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    def describe_model(self, uid):
        self.cluster.looks += 1
        if uid not in self.cluster.models:
            raise APIError("get the model description", 404, f"Model {uid} is not running.")
        replicas = [{"replica_uid": r, "worker_address": "127.0.0.1:1", "ready": True, "state": "ready"}
                    for r in self.cluster.models[uid]]
        return {"model_uid": uid, "status": "READY", "replicas": replicas, "restarts": 0, "last_error": None}

    def get_model_replicas(self, uid):
        raise APIError("get model replicas", 503, "no ready replica")  # shown without figures

    def get_model_events(self, uid):
        return list(self.cluster.events)

    def list_models(self):
        return {uid: {"model_type": "LLM", "replica": len(r)} for uid, r in self.cluster.models.items()}

    def add_model_replicas(self, uid, count=1, worker_ip=None):
        self.cluster.calls.append(("add", uid, count, worker_ip))
        assert self.cluster.release.wait(10)
        if self.cluster.fail is not None:
            raise self.cluster.fail
        new = f"{uid}-{len(self.cluster.models[uid])}"
        self.cluster.models[uid].append(new)
        self.cluster.events.append({"time": 1.0, "kind": "added", "replica_uid": new, "message": "on worker"})
        return {"model_uid": uid, "added": [new], "replica": len(self.cluster.models[uid])}

    def remove_model_replica(self, uid, replica, drain_timeout=30):
        self.cluster.calls.append(("remove", uid, replica, drain_timeout))
        if self.cluster.fail is not None:
            raise self.cluster.fail
        self.cluster.models[uid].remove(replica)
        return {"model_uid": uid, "removed": replica, "replica": len(self.cluster.models[uid])}


class FakeCluster:
    def __init__(self):
        self.models = {"m": ["m-0"]}
        self.events = []
        self.calls = []
        self.looks = 0
        self.fail = None
        self.release = threading.Event()


@pytest.fixture
def cluster(monkeypatch):
    monkeypatch.setattr(replicas_panel, "POLL_INTERVAL_S", 0.01)
    return FakeCluster()


@pytest.fixture
def panel(cluster, monkeypatch):
    page = Page("http://127.0.0.1:9")
    monkeypatch.setattr(Page, "client", lambda self: FakeClient(cluster))
    with gr.Blocks(analytics_enabled=False):
        page.models = gr.State({})
        return replicas_panel.ReplicasPanel(page)


def _releasing(cluster, after_looks):
    """Lets the add call finish once the panel has looked at the model a few times."""
    def run():
        deadline = time.monotonic() + 10
        while cluster.looks < after_looks and time.monotonic() < deadline:
            time.sleep(0.005)
        cluster.release.set()
    threading.Thread(target=run, daemon=True).start()


def test_add_shows_the_replicas_while_it_runs_then_the_outcome(panel, cluster):
    _releasing(cluster, after_looks=2)
    steps = list(panel.add("m", " 10.0.0.5 ", "en"))
    assert steps[0][1] == "Adding a replica to **m** … it serves once loaded."
    assert any(isinstance(s[0], dict) and s[0]["uid"] == "m" for s in steps[1:-1])  # looked on the way
    detail, status, models = steps[-1]
    assert status == "✓ **m-1** added: **m** has 2 replica(s)."
    assert [r["replica_uid"] for r in detail["desc"]["replicas"]] == ["m-0", "m-1"]
    assert detail["stats"] == [] and detail["events"][-1]["kind"] == "added"
    assert models["m"]["replica"] == 2
    assert cluster.calls == [("add", "m", 1, "10.0.0.5")]


def test_add_failure_is_a_readable_line(panel, cluster):
    cluster.fail = APIError("add replicas", 400, "m has 8 replicas; 1 more would pass the most a model may have (8).")
    cluster.release.set()
    *_, (detail, status, _models) = panel.add("m", "", "en")
    assert status == ("⚠ The server refused the request: m has 8 replicas; 1 more would pass the most a "
                      "model may have (8).")
    assert "Traceback" not in status and detail["uid"] == "m"
    assert list(panel.add(None, "", "zh-CN"))[-1][1] == "请先选择一个运行中的模型。"


def test_remove_drains_then_says_so(panel, cluster):
    cluster.models["m"] = ["m-0", "m-1"]
    steps = list(panel.remove("m", "m-1", 5, "en"))
    assert "Removing **m-1**" in steps[0][1] and "at most 5 s" in steps[0][1]
    detail, status, _ = steps[-1]
    assert status == "■ **m-1** removed: **m** has 1 replica(s)."
    assert [r["replica_uid"] for r in detail["desc"]["replicas"]] == ["m-0"]
    assert cluster.calls == [("remove", "m", "m-1", 5.0)]
    list(panel.remove("m", "m-0", None, "en"))
    assert cluster.calls[-1][-1] == replicas_panel.DRAIN_TIMEOUT_S


def test_remove_errors(panel, cluster):
    cluster.fail = APIError("remove replica", 400, "m-0 is the last replica of m: terminate the model instead.")
    status = list(panel.remove("m", "m-0", 30, "en"))[-1][1]
    assert status == "⚠ The server refused the request: m-0 is the last replica of m: terminate the model instead."
    cluster.fail = APIError("remove replica", 404, "Model m has no replica 'm-7'; its replicas: m-0.")
    status = list(panel.remove("m", "m-7", 30, "en"))[-1][1]
    assert status == ("⚠ m-7 is no longer a replica of m (removed or relaunched meanwhile). "
                      "Refresh to see its replicas.")


def test_load_and_a_model_that_went(panel, cluster):
    detail, status = panel.load("m", "en")
    assert detail["uid"] == "m" and status == ""
    detail, status = panel.load("gone", "en")
    assert detail is None and "not running" in status
    # the model list changes: the panel keeps its model while it runs, empties when it went
    keep = panel.follow_models({"m": {"model_type": "LLM"}}, "m")
    assert keep[0]["choices"] == [("m", "m")] or keep[0]["choices"] == ["m"]
    gone = panel.follow_models({}, "m")
    assert gone[0]["value"] is None and gone[1] is None
