"""ModelActor: one loaded replica, in its own sub-process.

A StatelessActor, so concurrent streams and status calls do not queue behind each
other; the engine guards its own state.
"""

import asyncio
import logging
import os
import time
from typing import Any, AsyncGenerator, AsyncIterator, Dict, List, Optional, Tuple

import xoscar as xo

from ..answers import Answers
from ..errors import InvalidRequestError, ModelNotReadyError
from ..model.hub.progress import DownloadProgress
from ..model.memory import disk_bytes
from ..model.model_type import ServedModel
from ..model.plans import get_model_type, load_plan, serving_type
from ..types import GenerationDelta, SamplingParams

logger = logging.getLogger(__name__)

# The share of a launch's progress bar that downloading the weights takes (as Xinference).
DOWNLOAD_SHARE = 0.8


async def _exit_when_orphaned(period: float = 1.0) -> None:
    """A worker killed with SIGKILL cannot stop its replicas: each replica ends itself
    once its parent is gone, so no model process is left holding memory."""
    parent = os.getppid()
    while True:
        await asyncio.sleep(period)
        if os.getppid() != parent:
            logger.error("worker process %d is gone; replica exits", parent)
            os._exit(1)


def hold_boot_time() -> None:
    """Keeps this process's idea of the machine's boot time fixed from now on.

    xoscar's sub pool decides that its worker is gone, and stops itself mid-request,
    when the worker process's creation time changes; psutil derives creation times from
    the boot time in wall-clock seconds (/proc/stat btime), which moves whenever the
    wall clock is stepped (NTP, a VM resumed): a one-second step stopped every replica
    on the machine. A replica watches its worker by pid instead (_exit_when_orphaned)."""
    import psutil

    platform = getattr(psutil, "_pslinux", None)
    if platform is None:
        return
    boot = platform.boot_time()
    platform.boot_time = lambda: boot


class ModelActor(xo.StatelessActor):
    def __init__(self, replica_uid: str, plan: Dict[str, Any]):
        super().__init__()
        hold_boot_time()
        self._replica_uid = replica_uid
        self._plan = load_plan(plan)
        self._type = get_model_type(self._plan.model_type)
        # what the plan's `create` made, once loaded
        self._model: Optional[ServedModel] = None
        # weights: downloading takes the first 80% of the bar, loading the rest
        self._download = DownloadProgress()
        self._stage = "starting"
        self._loading: Optional[ServedModel] = None  # the model while it loads
        self._inflight = 0
        self._served = 0
        self._created = time.time()
        self._weights_bytes: Optional[int] = None  # the weights' size on disk
        self._path: Optional[str] = None  # where fetch() put the weights

    async def __post_create__(self) -> None:
        self._orphan_watch = asyncio.create_task(_exit_when_orphaned())

    async def fetch(self) -> Optional[Dict[str, Any]]:
        """Puts the weights on disk (downloading them if needed); returns what the
        replica will hold in memory, now measured from the files, for the worker to
        check before anything is loaded."""
        plan = self._plan
        self._stage = "downloading"
        path: str = await asyncio.to_thread(plan.resolve_weights, self._download)
        self._path = path
        self._weights_bytes = await asyncio.to_thread(disk_bytes, path)
        need = await asyncio.to_thread(plan.memory_need)
        return need.as_dict() if need is not None else None

    async def load(self) -> Dict[str, Any]:
        plan = self._plan
        if self._path is None:  # a caller that did not fetch() first
            self._path = await asyncio.to_thread(plan.resolve_weights, self._download)
        path = str(self._path)
        self._stage = "loading"
        model = plan.create(path)
        self._loading = model
        try:
            await model.load()
        finally:
            self._loading = None
        self._model = model
        self._stage = "ready"
        logger.info("replica %s loaded %s with %s", self._replica_uid, path, plan.engine)
        return await self.describe()

    async def progress(self) -> Dict[str, Any]:
        """Where the launch is: stage, a 0-1 value for a bar, and the download's bytes."""
        stage, download = self._stage, self._download
        if stage == "downloading":
            value = DOWNLOAD_SHARE * download.fraction
            if download.stage == "waiting":
                stage = "waiting_for_download"
        elif stage == "loading":
            loading = self._loading
            loaded = max(0.0, min(1.0, loading.load_progress)) if loading is not None else 0.0
            value = DOWNLOAD_SHARE + (1 - DOWNLOAD_SHARE) * loaded
        else:
            value = 1.0 if stage == "ready" else 0.0
        report: Dict[str, Any] = {"stage": stage, "progress": round(value, 4)}
        if download.total_bytes:
            report["download"] = download.report()
        return report

    async def describe(self) -> Dict[str, Any]:
        model = self._model
        return {
            "replica_uid": self._replica_uid,
            "context_length": model.context_length if model else None,
            "inflight": self._inflight,
            "served": self._served,
            "ready": model is not None,
            "weights_bytes": self._weights_bytes,
            "pid": os.getpid(),  # the worker measures what it holds
            **(model.stats() if model else {}),
        }

    async def close(self) -> None:
        if self._model is not None:
            model, self._model = self._model, None
            await model.close()

    def _serving(self, endpoint: str) -> Any:
        """The loaded model, for a request to `endpoint`: a 400 that says which endpoints
        fit when its type serves another, a 503 while it loads."""
        kind = self._type
        if endpoint not in kind.endpoints:
            raise InvalidRequestError(
                f"Model {self._plan.model_name} is a {kind.name} model: {endpoint} needs a "
                f"{serving_type(endpoint).name} model; use {' or '.join(kind.endpoints)}.",
                param="model",
            )
        if self._model is None:
            raise ModelNotReadyError(f"Replica {self._replica_uid} is still loading.")
        return self._model

    async def _count(self, call: Any) -> Any:
        self._inflight += 1
        try:
            return await call
        finally:
            self._inflight -= 1
            self._served += 1

    async def embed(self, inputs: List[Any], truncate: bool = False,
                    dimensions: Optional[int] = None) -> Dict[str, Any]:
        model = self._serving("/v1/embeddings")
        return await self._count(model.embed(inputs, truncate, dimensions))

    async def embed_many(self, jobs: List[Tuple[List[Any], bool, Optional[int]]]) -> List[Any]:
        """Several embedding requests in one call (the REST server merges concurrent
        ones): per request its answer, or the error that request alone gets."""
        model = self._serving("/v1/embeddings")
        return list(await asyncio.gather(
            *(self._count(model.embed(*job)) for job in jobs), return_exceptions=True))

    async def rerank(self, query: str, documents: List[str], top_n: Optional[int] = None,
                     return_documents: bool = False, return_len: bool = False) -> Dict[str, Any]:
        model = self._serving("/v1/rerank")
        return await self._count(model.rerank(query, documents, top_n, return_documents, return_len))

    def _prompts(self, llm: Any, kind: str, payload: Any, template_kwargs: Optional[Dict],
                 params: SamplingParams) -> List[List[int]]:
        """The token ids of the request's prompt; a completion may give a list of them."""
        if kind == "chat":
            return [llm.chat_prompt(payload, template_kwargs, params.tool_use)]
        if kind == "completion":
            texts = payload if isinstance(payload, list) else [payload]
            return [llm.completion_prompt(text) for text in texts]
        raise InvalidRequestError(f"unknown request kind {kind!r}")

    async def _deltas(
        self, kind: str, payload: Any, params: Dict[str, Any], template_kwargs: Optional[Dict[str, Any]]
    ) -> AsyncIterator[GenerationDelta]:
        sampling = SamplingParams.model_validate(params)
        llm = self._serving("/v1/chat/completions" if kind == "chat" else "/v1/completions")
        prompts = self._prompts(llm, kind, payload, template_kwargs, sampling)
        gen: AsyncGenerator = llm.stream_many(prompts, sampling)
        self._inflight += 1
        try:
            first = True
            async for delta in gen:
                if first and not delta.finish_reason:
                    # the REST server counts a stream cut before its end by this
                    delta = delta.model_copy(update={"prompt_tokens": sum(map(len, prompts))})
                first = False
                yield delta
        finally:
            # Runs when the caller stops early too (client gone): aborts decoding.
            await gen.aclose()
            self._inflight -= 1
            self._served += 1

    @xo.generator
    async def stream(
        self,
        kind: str,
        payload: Any,
        params: Dict[str, Any],
        template_kwargs: Optional[Dict[str, Any]] = None,
    ) -> AsyncIterator[Dict[str, Any]]:
        """Deltas as dicts; the last carries finish_reason and usage."""
        deltas: AsyncGenerator = self._deltas(kind, payload, params, template_kwargs)  # type: ignore[assignment]
        try:
            async for delta in deltas:
                yield delta.model_dump()
        finally:
            await deltas.aclose()

    async def complete(
        self,
        kind: str,
        payload: Any,
        params: Dict[str, Any],
        template_kwargs: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """The whole answer in one call: {"choices": [...], usage} (answers.py), and
        "timings": how many nanoseconds after the call its first and last tokens came."""
        started = time.perf_counter_ns()
        first = 0
        answers = Answers()
        async for delta in self._deltas(kind, payload, params, template_kwargs):
            first = first or time.perf_counter_ns() - started
            answers.add(delta.model_dump())
        last = time.perf_counter_ns() - started
        return {**answers.result(), "timings": {"first_ns": first or last, "last_ns": last}}
