"""What the engines with a batching scheduler thread share (llama.cpp, Transformers):
a request becomes one ticket per choice, each with its own sampling parameters and
output grammar, queued on the scheduler as one group (admission.py) so that the prompt
is evaluated once for all its choices."""

import asyncio
from typing import Any, AsyncIterator, Dict, List, Optional

from ....errors import InvalidRequestError
from ....types import GenerationDelta, SamplingParams
from .base import LLMEngine, choice_params
from .guidance import GuideTokenizer
from .logprobs import check_logit_bias


class BatchedEngine(LLMEngine):
    # set by the subclass: in __init__ (the grammar tokenizer) and load() (the scheduler)
    _guide: GuideTokenizer
    _scheduler: Any = None

    def _vocab_width(self) -> int:
        """Token ids the model's logits cover (logit_bias must stay inside)."""
        raise NotImplementedError

    def _special_id(self, text: str) -> Optional[int]:
        """The id of the special token written `text`, if the vocabulary has one."""
        raise NotImplementedError

    def _check(self, params: SamplingParams) -> None:
        """The engine's own checks of a request, before it queues."""

    async def generate(
        self, prompt_ids: List[int], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]:
        [stream] = await self.generate_n(prompt_ids, params, 1)
        try:
            async for delta in stream:
                yield delta
        finally:  # now, not when collected: leaving frees the slot
            await stream.aclose()  # type: ignore[attr-defined]

    async def generate_n(self, prompt_ids: List[int], params: SamplingParams,
                         n: int) -> List[AsyncIterator[GenerationDelta]]:
        if not prompt_ids:
            raise InvalidRequestError("The prompt is empty.", param="prompt")
        self._check(params)
        check_logit_bias(params.logit_bias, self._vocab_width())
        requests = []
        for i in range(n):
            choice = choice_params(params, i)
            requests.append((list(prompt_ids), choice, await self._guide.constraint(choice, self._special_id)))
        scheduler = self._scheduler
        assert scheduler is not None, "generate() before load()"
        return scheduler.queue.serve_group(asyncio.get_running_loop(), requests, scheduler.slots)

    def stats(self) -> Dict[str, Any]:
        return self._scheduler.stats() if self._scheduler is not None else {}

    async def close(self) -> None:
        """Stops the scheduler thread; its running and waiting requests get an error."""
        if self._scheduler is not None:
            scheduler, self._scheduler = self._scheduler, None
            await asyncio.to_thread(scheduler.stop)
