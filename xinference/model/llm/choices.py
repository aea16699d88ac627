"""Several choices in one answer: `n` per prompt, for one prompt or a list of them
(completions), and `best_of`.

Each choice is its own engine stream (an engine evaluates a prompt once for all its
choices, LLMEngine.generate_n); here they are read together into one stream of deltas
tagged with their choice's index (prompt p's choice j is p * n + j), in the order they
come. A prompt's tokens are counted on its first choice only, so that usage summed
over the choices' last deltas counts each prompt once.
"""

import asyncio
from typing import AsyncIterator, Dict, List, Sequence

from ...answers import Answers
from ...types import GenerationDelta

_END = object()


def _tagged(delta: GenerationDelta, index: int, per_prompt: int) -> GenerationDelta:
    update: Dict[str, int] = {"index": index}
    if index % per_prompt and (delta.prompt_tokens or delta.cached_tokens):
        update.update(prompt_tokens=0, cached_tokens=0)
    return delta.model_copy(update=update)


async def merged(streams: Sequence[AsyncIterator[GenerationDelta]],
                 per_prompt: int) -> AsyncIterator[GenerationDelta]:
    """The deltas of all `streams` as they come, each tagged with its stream's index.
    An error in one ends them all (it is the request's answer); so does leaving."""
    queue: asyncio.Queue[tuple] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[GenerationDelta]) -> None:
        try:
            async for delta in stream:
                queue.put_nowait((index, delta))
        except Exception as e:  # noqa: BLE001 - handed to the reader, who raises it
            queue.put_nowait((index, e))
        else:
            queue.put_nowait((index, _END))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        left = len(tasks)
        while left:
            index, item = await queue.get()
            if item is _END:
                left -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield _tagged(item, index, per_prompt)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:  # those whose task never started them
            await stream.aclose()  # type: ignore[attr-defined]


async def best_of(streams: Sequence[AsyncIterator[GenerationDelta]], prompts: int, n: int,
                  keep_logprobs: bool) -> AsyncIterator[GenerationDelta]:
    """`len(streams) // prompts` choices per prompt generated, the `n` of each prompt
    whose tokens have the highest mean log-probability answered, one whole delta per
    choice. The tokens of the choices left out count in the usage (on the prompt's
    first choice): they were generated."""
    width = len(streams) // prompts
    answers = Answers()
    async for delta in merged(streams, width):
        answers.add(delta.model_dump())
    everything = answers.choices()
    for p in range(prompts):
        group = everything[p * width:(p + 1) * width]
        ranked = sorted(group, key=_mean_logprob, reverse=True)
        spare = sum(c["completion_tokens"] for c in ranked[n:])
        for k, choice in enumerate(ranked[:n]):
            usage = {"prompt_tokens": group[0]["prompt_tokens"], "cached_tokens": group[0]["cached_tokens"],
                     "completion_tokens": choice["completion_tokens"] + spare} if k == 0 else \
                    {"prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": choice["completion_tokens"]}
            yield GenerationDelta(index=p * n + k, text=choice["text"], finish_reason=choice["finish_reason"],
                                  logprobs=choice["logprobs"] if keep_logprobs else [], **usage)


def _mean_logprob(choice: Dict) -> float:
    entries: List[Dict] = choice["logprobs"]
    return sum(e["logprob"] for e in entries) / len(entries) if entries else float("-inf")
