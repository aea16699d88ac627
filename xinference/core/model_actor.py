"""ModelActor: one loaded replica, in its own sub-process.

A StatelessActor, so concurrent streams and status calls do not queue behind each
other; the engine guards its own state.
"""

import asyncio
import logging
import os
import time
from typing import Any, AsyncGenerator, AsyncIterator, Dict, List, Optional

import xoscar as xo

from ..errors import InvalidRequestError, ModelNotReadyError
from ..model.llm.engines import get_engine_class
from ..model.llm.engines.base import LLMEngine
from ..model.llm.launch import LaunchPlan
from ..model.llm.llm import LLM
from ..model.llm.resolve import resolve_model_path
from ..types import GenerationDelta, SamplingParams

logger = logging.getLogger(__name__)


async def _exit_when_orphaned(period: float = 1.0) -> None:
    """A worker killed with SIGKILL cannot stop its replicas: each replica ends itself
    once its parent is gone, so no model process is left holding memory."""
    parent = os.getppid()
    while True:
        await asyncio.sleep(period)
        if os.getppid() != parent:
            logger.error("worker process %d is gone; replica exits", parent)
            os._exit(1)


class ModelActor(xo.StatelessActor):
    def __init__(self, replica_uid: str, plan: Dict[str, Any]):
        super().__init__()
        self._replica_uid = replica_uid
        self._plan = LaunchPlan.model_validate(plan)
        self._llm: Optional[LLM] = None
        self._progress = 0.0
        self._loading: Optional[LLMEngine] = None
        self._inflight = 0
        self._served = 0
        self._created = time.time()

    async def __post_create__(self) -> None:
        self._orphan_watch = asyncio.create_task(_exit_when_orphaned())

    async def load(self) -> Dict[str, Any]:
        plan = self._plan
        self._progress = 0.1
        path = await asyncio.to_thread(
            resolve_model_path, plan.family, plan.spec, plan.quantization, plan.model_path
        )
        self._progress = 0.3
        engine_cls = get_engine_class(plan.engine)
        engine = engine_cls(
            path, plan.family, plan.spec, plan.quantization, int(plan.n_gpu or 0),
            lora_list=plan.lora_list, **plan.engine_kwargs
        )
        self._loading = engine
        try:
            await engine.load()
        finally:
            self._loading = None
        self._llm = LLM(engine)
        self._progress = 1.0
        logger.info("replica %s loaded %s with %s", self._replica_uid, path, plan.engine)
        return await self.describe()

    async def progress(self) -> float:
        engine = self._loading
        if engine is not None:  # resolving the weights took the first 30%
            return 0.3 + 0.7 * max(0.0, min(1.0, engine.load_progress))
        return self._progress

    async def describe(self) -> Dict[str, Any]:
        return {
            "replica_uid": self._replica_uid,
            "context_length": self._llm.engine.context_length if self._llm else None,
            "inflight": self._inflight,
            "served": self._served,
            "ready": self._llm is not None,
            **(self._llm.engine.stats() if self._llm else {}),
        }

    async def close(self) -> None:
        if self._llm is not None:
            llm, self._llm = self._llm, None
            await llm.engine.close()

    def _prompt(self, kind: str, payload: Any, template_kwargs: Optional[Dict]) -> List[int]:
        if self._llm is None:
            raise ModelNotReadyError(f"Replica {self._replica_uid} is still loading.")
        if kind == "chat":
            return self._llm.chat_prompt(payload, template_kwargs)
        if kind == "completion":
            return self._llm.completion_prompt(payload)
        raise InvalidRequestError(f"unknown request kind {kind!r}")

    async def _deltas(
        self, kind: str, payload: Any, params: Dict[str, Any], template_kwargs: Optional[Dict[str, Any]]
    ) -> AsyncIterator[GenerationDelta]:
        prompt_ids = self._prompt(kind, payload, template_kwargs)
        assert self._llm is not None
        gen: AsyncGenerator = self._llm.stream(  # type: ignore[assignment]
            prompt_ids, SamplingParams.model_validate(params)
        )
        self._inflight += 1
        try:
            async for delta in gen:
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
        """The whole answer in one call: the stream's deltas joined."""
        parts: List[str] = []
        last: Dict[str, Any] = {}
        async for delta in self._deltas(kind, payload, params, template_kwargs):
            parts.append(delta.text)
            last = delta.model_dump()
        last["text"] = "".join(parts)
        return last
