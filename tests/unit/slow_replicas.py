"""Fake replicas for the fake cluster (fake_cluster.py) that take their time: they
stream one delta every `delay` seconds, count how many of their generations ended
early (the caller aborted or went away), and report slots like an LLM engine.

`swap_replica` puts one in place of the echoing replica a launch created."""

import asyncio
from array import array
from typing import Any, Dict, List, Optional, Tuple

import xoscar as xo

from xinference.answers import Answers

SLOTS = 4
PROMPT_TOKENS = 5
CACHED_TOKENS = 2


class SlowReplica(xo.StatelessActor):
    def __init__(self, replica_uid: str, delay: float = 0.02, describe_delay: float = 0.0):
        super().__init__()
        self.replica_uid = replica_uid
        self.delay = delay
        self.describe_delay = describe_delay
        self.active = 0  # generations running now
        self.started = 0
        self.finished = 0  # ran to their last delta
        self.cut = 0  # ended before it: aborted, cancelled, closed

    def _delta(self, i: int, n: int) -> Dict[str, Any]:
        last = i == n - 1
        return {"text": f"t{i} ", "finish_reason": "length" if last else None,
                "prompt_tokens": PROMPT_TOKENS if last else 0, "completion_tokens": n if last else 0,
                "cached_tokens": CACHED_TOKENS if last else 0}

    @xo.generator
    async def stream(self, kind: str, payload: Any, params: Dict[str, Any], template_kwargs=None):
        n = params.get("max_tokens") or 3
        self.active += 1
        self.started += 1
        done = False
        try:
            for i in range(n):
                await asyncio.sleep(self.delay)
                yield self._delta(i, n)
            done = True
        finally:
            self.active -= 1
            if done:
                self.finished += 1
            else:
                self.cut += 1

    async def complete(self, kind: str, payload: Any, params: Dict[str, Any], template_kwargs=None):
        n = params.get("max_tokens") or 3
        self.active += 1
        self.started += 1
        try:
            await asyncio.sleep(self.delay * n)
        except asyncio.CancelledError:
            self.cut += 1
            raise
        finally:
            self.active -= 1
        self.finished += 1
        answers = Answers()
        answers.add({**self._delta(n - 1, n), "text": "done"})
        return answers.result()

    async def embed_many(self, jobs: List[Tuple[List[Any], bool, Optional[int]]]) -> List[Dict[str, Any]]:
        # one 2-dimensional float32 vector per input; a token per character
        return [{"data": array("f", [1.0, 0.0] * len(inputs)).tobytes(), "dims": 2,
                 "prompt_tokens": sum(len(str(x)) for x in inputs)} for inputs, _, _ in jobs]

    async def rerank(self, query: str, documents: List[str], top_n=None, return_documents=False,
                     return_len=False) -> Dict[str, Any]:
        tokens = len(query) + sum(len(d) for d in documents)
        return {"id": "r", "results": [{"index": i, "relevance_score": 0.5, "document": None}
                                       for i in range(len(documents))],
                "meta": {"tokens": {"input_tokens": tokens, "output_tokens": tokens} if return_len else None}}

    async def describe(self) -> Dict[str, Any]:
        await asyncio.sleep(self.describe_delay)
        return {"slots_total": SLOTS, "slots_busy": self.active, "slots_free": SLOTS - self.active,
                "queue_length": 0}

    async def counts(self) -> Dict[str, int]:
        return {"active": self.active, "started": self.started, "finished": self.finished, "cut": self.cut}


async def swap_replica(address: str, replica_uid: str, **kwargs: Any) -> Any:
    """Replaces the replica actor `replica_uid` with a SlowReplica; returns its ref."""
    await xo.destroy_actor(await xo.actor_ref(address, replica_uid))
    return await xo.create_actor(SlowReplica, replica_uid, uid=replica_uid, address=address, **kwargs)


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    """Polls an async predicate until it holds (or fails the test)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)
