"""What the replicas panel shows of a running model, apart from Gradio: one row per
replica, one row per event, and the model's health in a line. Pure functions over the
REST answers, so the panel is tested without a browser.

- describe (`GET /v1/models/{uid}`): `replicas` [{replica_uid, worker_address, ready,
  state}] lists every replica the supervisor knows (starting and relaunching ones too),
  plus `status`, `restarts` and `last_error`.
- stats (`GET /v1/models/{uid}/replicas`): what this REST server routes to, the ready
  replicas only: [{replica_uid, address, inflight, served, down?, slots_*...}].
- events (`GET /v1/models/{uid}/events` → data): [{time, kind, replica_uid, message}],
  oldest first.
"""

import time
from typing import Any, Callable, Dict, List, Optional

Translate = Callable[..., str]

REPLICA_COLUMNS = ("replica", "worker", "state", "inflight", "served")
EVENT_COLUMNS = ("time", "kind", "replica", "message")
# Supervisor replica states, and the REST server's own "cannot reach it".
STATES = ("ready", "starting", "launching", "restarting", "draining", "unreachable")
# What the supervisor writes into a model's history (xinference/core: healing, scaling, restore).
EVENT_KINDS = ("added", "add_failed", "removed", "crashed", "worker_lost", "relaunching", "relaunched",
               "relaunch_failed", "gave_up", "adopted", "restored", "scaled")
# The newest events the table shows (the server keeps up to 200 per model).
MAX_EVENT_ROWS = 50
NONE = "—"


def replica_id(row: Dict[str, Any]) -> str:
    return str(row.get("replica_uid") or row.get("replica_id") or row.get("replica") or "")


def _known(t: Translate, key: str, fallback: str) -> str:
    """The translation of `key`, or `fallback` for a value this page has no text for
    (a state or event kind newer than the page)."""
    text = t(key)
    return fallback if text == key else text


def state_label(t: Translate, state: str) -> str:
    return _known(t, f"replicas.state.{state}", state)


def kind_label(t: Translate, kind: str) -> str:
    return _known(t, f"replicas.kind.{kind}", kind)


def _count(value: Any) -> str:
    return NONE if value is None else str(value)


def replica_rows(desc: Dict[str, Any], stats: List[Dict[str, Any]], t: Translate) -> List[List[str]]:
    """[replica uid, worker, state, in flight, served] per replica. The supervisor's list
    decides which replicas there are and their state; the REST server's figures fill in
    the load of those it routes to. Worker addresses are hidden from non-admin users
    under --auth-config: then "—"."""
    load = {replica_id(s): s for s in stats or []}
    listed = desc.get("replicas")
    if not isinstance(listed, list):  # a server that does not list them: what routes there
        listed = [{"replica_uid": replica_id(s), "state": "ready"} for s in stats or []]
    rows = []
    for r in listed:
        uid = replica_id(r)
        state = str(r.get("state") or ("ready" if r.get("ready") else "starting"))
        seen = load.get(uid, {})
        if seen.get("down") and state == "ready":
            state = "unreachable"
        rows.append([uid, str(r.get("worker_address") or NONE), state_label(t, state),
                     _count(seen.get("inflight")), _count(seen.get("served"))])
    return rows


def event_time(value: Any) -> str:
    """An event's time in the server's local time: the API gives Unix seconds (an
    ISO text is shown as it is)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return str(value or NONE)


def event_rows(events: List[Dict[str, Any]], t: Translate, limit: int = MAX_EVENT_ROWS) -> List[List[str]]:
    """[time, kind, replica, message], newest first, at most `limit` of them."""
    rows = []
    for e in reversed((events or [])[-limit:] if limit else []):
        when = e.get("time", e.get("timestamp"))
        rows.append([event_time(when), kind_label(t, str(e.get("kind") or "")),
                     replica_id(e) or NONE, str(e.get("message") or "")])
    return rows


def health_line(desc: Dict[str, Any], t: Translate) -> str:
    """Status, replica count and restarts in one line."""
    replicas = desc.get("replicas")
    count = len(replicas) if isinstance(replicas, list) else desc.get("replica", 0)
    return t("replicas.health", uid=desc.get("model_uid") or desc.get("id") or "",
             status=desc.get("status") or NONE, count=count, restarts=desc.get("restarts") or 0)


def last_error_line(desc: Dict[str, Any], t: Translate) -> Optional[str]:
    error = desc.get("last_error")
    return t("replicas.last_error", error=str(error).strip()) if error else None
