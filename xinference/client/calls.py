"""What each call of the REST API is, apart from how it travels.

A function here returns a `Call` (verb, path, body, query, the words for its error,
what to make of the answer); `transport` sends it with requests and `async_transport`
with httpx, and each client's methods are these functions bound to a transport, so
the sync and the async client cannot drift apart."""

import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generic, List, Optional, TypeVar, Union

from ..constants import API_KEY_ENV, ENDPOINT_ENV

T = TypeVar("T")


def _same(body: Any) -> Any:
    return body


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    what: str  # for the error: "Failed to <what>, detail: ..."
    json: Any = None
    params: Optional[Dict[str, Any]] = None
    # False where the server may rightly take long (loading a model, generating):
    # the client's timeout does not apply to those.
    bounded: bool = True
    # False: sent without the Authorization header, as a login replaces a stale token.
    authorized: bool = True
    # Turns the JSON answer into the method's return value; None: the method returns None.
    answer: Optional[Callable[[Any], T]] = _same

    @property
    def stream(self) -> bool:
        return False


class Stream(Call[T]):
    """A call the server answers with server-sent events when its body asks to stream."""

    @property
    def stream(self) -> bool:
        return bool(self.json.get("stream"))


def endpoint(base_url: Optional[str]) -> str:
    return (base_url or os.environ.get(ENDPOINT_ENV) or "http://127.0.0.1:9997").rstrip("/")


def auth_headers(api_key: Optional[str]) -> Dict[str, str]:
    api_key = api_key or os.environ.get(API_KEY_ENV)
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def as_method(bound: Callable[..., Any], spec: Callable[..., Any]) -> Callable[..., Any]:
    """Gives `bound` the name, docs and parameters of `spec`, with `self` in front, so
    help() and IDEs show the real arguments rather than (*args, **kwargs)."""
    sig = inspect.signature(spec)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    bound.__name__, bound.__qualname__ = spec.__name__, spec.__name__
    bound.__doc__, bound.__module__ = spec.__doc__, spec.__module__
    bound.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *sig.parameters.values()], return_annotation=inspect.Signature.empty)
    return bound


def given(**params: Any) -> Dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _nothing_or(params: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return params or None


# ---- models -------------------------------------------------------------------


def launch_model(
    model_name: str,
    model_type: str = "LLM",
    model_engine: Optional[str] = None,
    model_uid: Optional[str] = None,
    model_size_in_billions: Optional[Union[int, str, float]] = None,
    model_format: Optional[str] = None,
    quantization: Optional[str] = None,
    replica: int = 1,
    n_gpu: Optional[Union[int, str]] = "auto",
    request_limits: Optional[int] = None,
    worker_ip: Optional[str] = None,
    model_path: Optional[str] = None,
    peft_model_config: Optional[Dict[str, Any]] = None,
    wait_ready: bool = True,
    **kwargs: Any,
) -> Call[str]:
    """Launches a model and returns its uid; extra keyword arguments go to the engine.

    `peft_model_config={"lora_list": [{"lora_name": ..., "local_path": ...}]}` loads
    LoRA adapters with the model; each is then a model id of its own."""
    payload: Dict[str, Any] = {
        "model_uid": model_uid, "model_name": model_name, "model_type": model_type,
        "model_engine": model_engine, "model_size_in_billions": model_size_in_billions,
        "model_format": model_format, "quantization": quantization, "replica": replica,
        "n_gpu": n_gpu, "request_limits": request_limits, "worker_ip": worker_ip,
        "model_path": model_path, "peft_model_config": peft_model_config, **kwargs,
    }
    return Call("POST", "/v1/models", "launch model", json=payload, bounded=False,
                params=None if wait_ready else {"wait_ready": "false"},
                answer=lambda body: body["model_uid"])


def terminate_model(model_uid: str) -> Call[None]:
    return Call("DELETE", f"/v1/models/{model_uid}", "terminate model", bounded=False, answer=None)


def list_models() -> Call[Dict[str, Dict[str, Any]]]:
    return Call("GET", "/v1/models", "list model",
                answer=lambda body: {item["id"]: item for item in body["data"]})


def describe_model(model_uid: str) -> Call[Dict[str, Any]]:
    return Call("GET", f"/v1/models/{model_uid}", "get the model description")


def get_launch_model_progress(model_uid: str) -> Call[Dict[str, Any]]:
    """`progress` (0-1), `stage`, and per replica the download's bytes, speed and ETA."""
    return Call("GET", f"/v1/models/{model_uid}/progress", "get model launching progress")


def cancel_launch_model(model_uid: str) -> Call[None]:
    """Stops a launch in any stage, a download included; the bytes fetched so far are
    kept and the next launch resumes from them."""
    return Call("POST", f"/v1/models/{model_uid}/cancel", "cancel launching model",
                bounded=False, answer=None)


def abort_request(model_uid: str, request_id: str, block_duration: int = 30) -> Call[Dict[str, Any]]:
    """Stops the request with that id (its X-Request-Id or body `request_id`) on
    whichever replica runs it; a request arriving later with that id within
    `block_duration` seconds is refused. An unknown or finished id is a no-op."""
    return Call("POST", f"/v1/models/{model_uid}/requests/{request_id}/abort", "abort request",
                json={"block_duration": block_duration})


def add_model_replicas(model_uid: str, count: int = 1,
                       worker_ip: Optional[str] = None) -> Call[Dict[str, Any]]:
    """Starts `count` more replicas of a running model; returns once they serve
    (`added`: their uids, `replica`: the model's count now)."""
    return Call("POST", f"/v1/models/{model_uid}/replicas", "add replicas",
                json=given(count=count, worker_ip=worker_ip), bounded=False)


def remove_model_replica(model_uid: str, replica_uid: str,
                         drain_timeout: float = 30) -> Call[Dict[str, Any]]:
    """Stops one replica: no new request goes to it, the ones it runs may finish
    within `drain_timeout` seconds."""
    return Call("DELETE", f"/v1/models/{model_uid}/replicas/{replica_uid}", "remove replica",
                params={"drain_timeout": drain_timeout}, bounded=False)


def get_model_replicas(model_uid: str) -> Call[List[Dict[str, Any]]]:
    """Per replica: requests in flight and served, slots and queue."""
    return Call("GET", f"/v1/models/{model_uid}/replicas", "get model replicas")


def get_model_events(model_uid: str) -> Call[List[Dict[str, Any]]]:
    """The model's history: crashed replicas, lost workers, relaunches, scaling."""
    return Call("GET", f"/v1/models/{model_uid}/events", "get model events",
                answer=lambda body: body["data"])


def abort_cluster() -> Call[Dict[str, Any]]:
    """Stops the whole cluster: every model (a restart brings none back), every
    worker, then the supervisor. Needs the admin permission under --auth-config."""
    return Call("DELETE", "/v1/clusters", "abort cluster", bounded=False)


def get_instance_info(model_name: str, model_uid: str) -> Call[List[Dict[str, Any]]]:
    return Call("GET", "/v1/models/instances", "get instance info",
                params={"model_name": model_name, "model_uid": model_uid})


def login(username: str, password: str) -> Call[str]:
    """Exchanges a username and password (of the server's --auth-config) for a
    token that the following calls send."""
    return Call("POST", "/token", "login", json={"username": username, "password": password},
                authorized=False, answer=lambda body: body["access_token"])


# ---- catalogue ----------------------------------------------------------------


def list_model_registrations(model_type: str, detailed: bool = False) -> Call[List[Dict[str, Any]]]:
    return Call("GET", f"/v1/model_registrations/{model_type}", "list model registration",
                params={"detailed": "true" if detailed else "false"})


def get_model_registration(model_type: str, model_name: str) -> Call[Dict[str, Any]]:
    return Call("GET", f"/v1/model_registrations/{model_type}/{model_name}", "list model registration")


def register_model(model_type: str, model: Union[str, Dict[str, Any]], persist: bool = False,
                   worker_ip: Optional[str] = None) -> Call[None]:
    """Registers a custom model: `model` is its family as JSON text (or a dict)."""
    return Call("POST", f"/v1/model_registrations/{model_type}", "register model",
                json={"model": model, "worker_ip": worker_ip, "persist": persist},
                bounded=False, answer=None)


def unregister_model(model_type: str, model_name: str) -> Call[None]:
    return Call("DELETE", f"/v1/model_registrations/{model_type}/{model_name}", "unregister model",
                bounded=False, answer=None)


# ---- download cache -----------------------------------------------------------


def list_cached_models(model_name: Optional[str] = None,
                       worker_ip: Optional[str] = None) -> Call[List[Dict[str, Any]]]:
    return Call("GET", "/v1/cache/models", "list cached model",
                params=_nothing_or(given(model_name=model_name, worker_ip=worker_ip)),
                answer=lambda body: body["list"])


def list_deletable_models(model_version: str, worker_ip: Optional[str] = None) -> Call[Dict[str, Any]]:
    return Call("GET", "/v1/cache/models/files", "get paths by model version",
                params=given(model_version=model_version, worker_ip=worker_ip))


def confirm_and_remove_model(model_version: str, worker_ip: Optional[str] = None) -> Call[bool]:
    return Call("DELETE", "/v1/cache/models", "remove cached models", bounded=False,
                params=given(model_version=model_version, worker_ip=worker_ip),
                answer=lambda body: bool(body.get("result")))


def query_engine_by_model_name(model_name: str,
                               model_type: Optional[str] = "LLM") -> Call[Dict[str, List[Dict[str, Any]]]]:
    path = f"/v1/engines/{model_type}/{model_name}" if model_type else f"/v1/engines/{model_name}"
    return Call("GET", path, "query engine parameters by model name")


# ---- cluster ------------------------------------------------------------------


def get_workers_info() -> Call[List[Dict[str, Any]]]:
    return Call("GET", "/v1/workers", "get workers info")


def get_cluster_info() -> Call[List[Dict[str, Any]]]:
    return Call("GET", "/v1/cluster/info", "get cluster info")


def get_supervisor_internal_address() -> Call[str]:
    return Call("GET", "/v1/address", "get supervisor internal address")
