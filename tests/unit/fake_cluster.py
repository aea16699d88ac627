"""A real SupervisorActor and REST app over a fake worker whose replicas echo what
they were asked: the whole control and data path in one process, without an engine."""

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Dict, List, Optional

import httpx
import xoscar as xo

from xinference.answers import Answers
from xinference.api.app import create_app
from xinference.api.settings import ServerSettings
from xinference.core.supervisor import SupervisorActor
from xinference.errors import InvalidRequestError


def _answer(replica_uid: str, params: Dict[str, Any]) -> Dict[str, Any]:
    # The text says which replica ran the request and with which adapter.
    return {"text": f"{replica_uid}:{params.get('lora_name')}", "finish_reason": "stop",
            "prompt_tokens": 1, "completion_tokens": 1}


class FakeReplica(xo.StatelessActor):
    def __init__(self, replica_uid: str):
        super().__init__()
        self.replica_uid = replica_uid
        self.params: List[Dict[str, Any]] = []

    async def complete(self, kind: str, payload: Any, params: Dict[str, Any], template_kwargs=None):
        self.params.append(params)
        answers = Answers()
        answers.add(_answer(self.replica_uid, params))
        return answers.result()

    @xo.generator
    async def stream(self, kind: str, payload: Any, params: Dict[str, Any], template_kwargs=None):
        self.params.append(params)
        yield _answer(self.replica_uid, params)

    # an LLM, as the real ModelActor answers calls for other model types
    async def embed_many(self, jobs: List[Any]) -> List[Any]:
        raise InvalidRequestError("Model is a LLM model: /v1/embeddings needs an embedding model.",
                                  param="model")

    async def rerank(self, *args: Any) -> Dict[str, Any]:
        raise InvalidRequestError("Model is a LLM model: /v1/rerank needs a rerank model.", param="model")

    async def describe(self) -> Dict[str, Any]:
        return {}

    async def seen(self) -> List[Dict[str, Any]]:
        return self.params


class FakeWorker(xo.StatelessActor):
    """Starts each replica as a FakeReplica in its own pool and keeps the plan it got."""

    def __init__(self) -> None:
        super().__init__()
        self.plans: Dict[str, Dict[str, Any]] = {}
        self.metas: Dict[str, Dict[str, Any]] = {}
        self.need: Optional[Dict[str, Any]] = None  # what memory_need answers

    async def memory_need(self, plan: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        return self.need

    async def set_need(self, need: Optional[Dict[str, Any]]) -> None:
        self.need = need

    async def meta(self, replica_uid: str) -> Dict[str, Any]:
        return self.metas[replica_uid]

    @classmethod
    def default_uid(cls) -> str:
        return "worker"

    async def launch_replica(self, replica_uid: str, plan: Dict[str, Any], env=None, model=None):
        self.plans[replica_uid] = plan
        self.metas[replica_uid] = model or {}
        await xo.create_actor(FakeReplica, replica_uid, uid=replica_uid, address=self.address)
        return {"address": self.address, "context_length": 128, "worker_address": self.address}

    async def terminate_replica(self, replica_uid: str) -> bool:
        await xo.destroy_actor(await xo.actor_ref(self.address, replica_uid))
        return True

    async def launched(self) -> Dict[str, Dict[str, Any]]:
        return self.plans

    # an empty download cache, for the /v1/cache routes
    async def list_cached_models(self, model_name: Optional[str] = None) -> List[Dict[str, Any]]:
        return []

    async def cached_files(self, model_version: str) -> List[str]:
        return []

    async def remove_cached(self, model_version: str) -> bool:
        return False


@dataclass
class Stack:
    supervisor: Any
    worker: Any
    app: Any
    http: httpx.AsyncClient
    address: str

    async def replica_params(self, replica_uid: str) -> List[Dict[str, Any]]:
        """The sampling params each request to that replica carried, in order."""
        return await (await xo.actor_ref(self.address, replica_uid)).seen()


@asynccontextmanager
async def running_stack(worker_timeout: float = 60.0,
                        settings: Optional[ServerSettings] = None) -> AsyncIterator[Stack]:
    pool = await xo.create_actor_pool("127.0.0.1:0", n_process=0)
    address = pool.external_address
    try:
        sup = await xo.create_actor(SupervisorActor, worker_timeout, 10.0, uid="supervisor",
                                    address=address)
        worker = await xo.create_actor(FakeWorker, uid="worker", address=address)
        await sup.add_worker(address, {"memory_available": 1, "gpus": []})
        app = create_app(sup, address, settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield Stack(sup, worker, app, http, address)
    finally:
        await pool.stop()


def lora_config(*names: str, image_keys: bool = False) -> Dict[str, Any]:
    config: Dict[str, Any] = {
        "lora_list": [{"lora_name": n, "local_path": f"/loras/{n}"} for n in names]
    }
    if image_keys:  # what xinference-client users often send along
        config.update(image_lora_load_kwargs=None, image_lora_fuse_kwargs=None)
    return config
