"""The Python client for the REST API, with the same methods and return shapes as
the `xinference-client` package, so code written for Xinference runs unchanged."""

import os
from typing import Any, Dict, List, Optional, Union

import requests

from ..constants import API_KEY_ENV, ENDPOINT_ENV
from .common import check
from .handles import (
    ChatModelHandle,
    EmbeddingModelHandle,
    GenerateModelHandle,
    ModelHandle,
    RerankModelHandle,
)


class Client:
    def __init__(self, base_url: Optional[str] = None, api_key: Optional[str] = None, timeout: Optional[float] = None):
        base_url = base_url or os.environ.get(ENDPOINT_ENV) or "http://127.0.0.1:9997"
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._headers: Dict[str, str] = {}
        api_key = api_key or os.environ.get(API_KEY_ENV)
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout

    def close(self) -> None:
        self._session.close()

    def login(self, username: str, password: str) -> None:
        """Exchanges a username and password (of the server's --auth-config) for a
        token that the following calls send."""
        resp = self._session.post(f"{self.base_url}/token", json={"username": username, "password": password},
                                  timeout=self._timeout)
        check(resp, "login")
        self._headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _get(self, path: str, what: str, **params: Any) -> Any:
        resp = self._session.get(f"{self.base_url}{path}", headers=self._headers, params=params or None, timeout=self._timeout)
        check(resp, what)
        return resp.json()

    # ---- models ---------------------------------------------------------------

    def launch_model(
        self,
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
    ) -> str:
        """Launches a model and returns its uid; extra keyword arguments go to the engine.

        `peft_model_config={"lora_list": [{"lora_name": ..., "local_path": ...}]}` loads
        LoRA adapters with the model; each is then a model id of its own."""
        payload: Dict[str, Any] = {
            "model_uid": model_uid,
            "model_name": model_name,
            "model_type": model_type,
            "model_engine": model_engine,
            "model_size_in_billions": model_size_in_billions,
            "model_format": model_format,
            "quantization": quantization,
            "replica": replica,
            "n_gpu": n_gpu,
            "request_limits": request_limits,
            "worker_ip": worker_ip,
            "model_path": model_path,
            "peft_model_config": peft_model_config,
            **kwargs,
        }
        resp = self._session.post(
            f"{self.base_url}/v1/models",
            json=payload,
            headers=self._headers,
            params=None if wait_ready else {"wait_ready": "false"},
        )
        check(resp, "launch model")
        return resp.json()["model_uid"]

    def terminate_model(self, model_uid: str) -> None:
        resp = self._session.delete(f"{self.base_url}/v1/models/{model_uid}", headers=self._headers)
        check(resp, "terminate model")

    def list_models(self) -> Dict[str, Dict[str, Any]]:
        data = self._get("/v1/models", "list model")["data"]
        return {item["id"]: item for item in data}

    def describe_model(self, model_uid: str) -> Dict[str, Any]:
        return self._get(f"/v1/models/{model_uid}", "get the model description")

    def get_launch_model_progress(self, model_uid: str) -> Dict[str, Any]:
        """`progress` (0-1), `stage`, and per replica the download's bytes, speed and ETA."""
        return self._get(f"/v1/models/{model_uid}/progress", "get model launching progress")

    def cancel_launch_model(self, model_uid: str) -> None:
        """Stops a launch in any stage, a download included; the bytes fetched so far are
        kept and the next launch resumes from them."""
        resp = self._session.post(f"{self.base_url}/v1/models/{model_uid}/cancel", headers=self._headers)
        check(resp, "cancel launching model")

    def abort_request(self, model_uid: str, request_id: str, block_duration: int = 30) -> Dict[str, Any]:
        """Stops the request with that id (its X-Request-Id or body `request_id`) on
        whichever replica runs it; a request arriving later with that id within
        `block_duration` seconds is refused. An unknown or finished id is a no-op."""
        resp = self._session.post(f"{self.base_url}/v1/models/{model_uid}/requests/{request_id}/abort",
                                  json={"block_duration": block_duration}, headers=self._headers,
                                  timeout=self._timeout)
        check(resp, "abort request")
        return resp.json()

    def add_model_replicas(self, model_uid: str, count: int = 1,
                           worker_ip: Optional[str] = None) -> Dict[str, Any]:
        """Starts `count` more replicas of a running model; returns once they serve
        (`added`: their uids, `replica`: the model's count now)."""
        resp = self._session.post(f"{self.base_url}/v1/models/{model_uid}/replicas",
                                  json=_given(count=count, worker_ip=worker_ip), headers=self._headers)
        check(resp, "add replicas")
        return resp.json()

    def remove_model_replica(self, model_uid: str, replica_uid: str,
                             drain_timeout: float = 30) -> Dict[str, Any]:
        """Stops one replica: no new request goes to it, the ones it runs may finish
        within `drain_timeout` seconds."""
        resp = self._session.delete(f"{self.base_url}/v1/models/{model_uid}/replicas/{replica_uid}",
                                    params={"drain_timeout": drain_timeout}, headers=self._headers)
        check(resp, "remove replica")
        return resp.json()

    def get_model_replicas(self, model_uid: str) -> List[Dict[str, Any]]:
        """Per replica: requests in flight and served, slots and queue."""
        return self._get(f"/v1/models/{model_uid}/replicas", "get model replicas")

    def get_model_events(self, model_uid: str) -> List[Dict[str, Any]]:
        """The model's history: crashed replicas, lost workers, relaunches, scaling."""
        return self._get(f"/v1/models/{model_uid}/events", "get model events")["data"]

    def abort_cluster(self) -> Dict[str, Any]:
        """Stops the whole cluster: every model (a restart brings none back), every
        worker, then the supervisor. Needs the admin permission under --auth-config."""
        resp = self._session.delete(f"{self.base_url}/v1/clusters", headers=self._headers)
        check(resp, "abort cluster")
        return resp.json()

    def get_instance_info(self, model_name: str, model_uid: str) -> List[Dict[str, Any]]:
        return self._get("/v1/models/instances", "get instance info", model_name=model_name, model_uid=model_uid)

    def get_model(self, model_uid: str) -> ModelHandle:
        desc = self.describe_model(model_uid)
        if desc.get("model_type") == "embedding":
            return EmbeddingModelHandle(model_uid, self.base_url, self._session, self._headers)
        if desc.get("model_type") == "rerank":
            return RerankModelHandle(model_uid, self.base_url, self._session, self._headers)
        if desc.get("model_type") != "LLM":
            raise ValueError(f"Unsupported model type {desc.get('model_type')!r}")
        cls = ChatModelHandle if "chat" in desc["model_ability"] else GenerateModelHandle
        if "generate" not in desc["model_ability"] and cls is GenerateModelHandle:
            raise ValueError(f"Unrecognized model ability: {desc['model_ability']}")
        return cls(model_uid, self.base_url, self._session, self._headers)

    # ---- catalogue ------------------------------------------------------------

    def list_model_registrations(self, model_type: str, detailed: bool = False) -> List[Dict[str, Any]]:
        return self._get(f"/v1/model_registrations/{model_type}", "list model registration",
                         detailed="true" if detailed else "false")

    def get_model_registration(self, model_type: str, model_name: str) -> Dict[str, Any]:
        return self._get(f"/v1/model_registrations/{model_type}/{model_name}", "list model registration")

    def register_model(self, model_type: str, model: Union[str, Dict[str, Any]], persist: bool = False,
                       worker_ip: Optional[str] = None) -> None:
        """Registers a custom model: `model` is its family as JSON text (or a dict)."""
        body = {"model": model, "worker_ip": worker_ip, "persist": persist}
        resp = self._session.post(f"{self.base_url}/v1/model_registrations/{model_type}", json=body,
                                  headers=self._headers)
        check(resp, "register model")

    def unregister_model(self, model_type: str, model_name: str) -> None:
        resp = self._session.delete(f"{self.base_url}/v1/model_registrations/{model_type}/{model_name}",
                                    headers=self._headers)
        check(resp, "unregister model")

    # ---- download cache ---------------------------------------------------------

    def list_cached_models(self, model_name: Optional[str] = None,
                           worker_ip: Optional[str] = None) -> List[Dict[str, Any]]:
        return self._get("/v1/cache/models", "list cached model",
                         **_given(model_name=model_name, worker_ip=worker_ip))["list"]

    def list_deletable_models(self, model_version: str, worker_ip: Optional[str] = None) -> Dict[str, Any]:
        return self._get("/v1/cache/models/files", "get paths by model version",
                         **_given(model_version=model_version, worker_ip=worker_ip))

    def confirm_and_remove_model(self, model_version: str, worker_ip: Optional[str] = None) -> bool:
        resp = self._session.delete(f"{self.base_url}/v1/cache/models", headers=self._headers,
                                    params=_given(model_version=model_version, worker_ip=worker_ip))
        check(resp, "remove cached models")
        return bool(resp.json().get("result"))

    def query_engine_by_model_name(self, model_name: str, model_type: Optional[str] = "LLM") -> Dict[str, List[Dict[str, Any]]]:
        path = f"/v1/engines/{model_type}/{model_name}" if model_type else f"/v1/engines/{model_name}"
        return self._get(path, "query engine parameters by model name")

    # ---- cluster --------------------------------------------------------------

    def get_workers_info(self) -> List[Dict[str, Any]]:
        return self._get("/v1/workers", "get workers info")

    def get_cluster_info(self) -> List[Dict[str, Any]]:
        return self._get("/v1/cluster/info", "get cluster info")

    def _get_supervisor_internal_address(self) -> str:
        return self._get("/v1/address", "get supervisor internal address")


def _given(**params: Any) -> Dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


RESTfulClient = Client
