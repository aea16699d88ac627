"""Continuous batching in the llama.cpp engine, in-process on the embedded Gemma.

Equality tests use an F32 copy of the model, made here with llama.cpp's own
quantizer: the Q4_K kernels quantize activations to 8 bits, and which kernel runs
depends on how many rows a batch has, so a Q4 model's logits move by up to ~1 between
a sequence decoded alone and the same sequence inside a batch (measured at the raw
C API, without our scheduler). In F32 they agree to ~1e-5, so any difference in text
is a scheduling bug: a mixed-up sequence id, position or KV cell.
"""

import asyncio
import time
from contextlib import asynccontextmanager

import pytest

from xinference.errors import ServerBusyError, TooManyRequestsError
from xinference.model.llm.engines import get_engine_class
from xinference.model.llm.launch import plan_launch
from xinference.model.llm.llm import LLM
from xinference.types import SamplingParams

llama_cpp = pytest.importorskip("llama_cpp")

PROMPTS = [f"{w} once upon a time in a land of" for w in
           ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel"]]


def _plan():
    plan = plan_launch("gemma-3")
    return plan, plan.resolve_weights()


@asynccontextmanager
async def loaded(path, **kwargs):
    """A loaded LLM on `path`, closed on the way out."""
    plan, _ = _plan()
    engine = get_engine_class("llama.cpp")(path, plan.family, plan.spec, plan.quantization, **kwargs)
    await engine.load()
    try:
        yield LLM(engine)
    finally:
        await engine.close()


async def text_of(llm, ids, **params):
    deltas = [d async for d in llm.stream(ids, SamplingParams(**params))]
    return "".join(d.text for d in deltas), deltas[-1]


async def fresh_text(path, ids, **params):
    async with loaded(path, n_ctx=256, n_parallel=1) as llm:
        return await text_of(llm, ids, **params)


@pytest.mark.timeout(300)
async def test_eight_concurrent_greedy_requests_match_their_solo_runs(f32_path):
    async with loaded(f32_path, n_ctx=256, n_parallel=8, stream_interval=0) as llm:
        ids = [llm.completion_prompt(p) for p in PROMPTS]
        solo = [(await fresh_text(f32_path, x, max_tokens=32, temperature=0, ignore_eos=True))[0]
                for x in ids]
        together = await asyncio.gather(
            *(text_of(llm, x, max_tokens=32, temperature=0, ignore_eos=True) for x in ids))
        assert [t for t, _ in together] == solo
        assert len(set(solo)) == 8  # eight different stories, not one repeated
        assert all(last.completion_tokens == 32 for _, last in together)


@pytest.mark.timeout(300)
async def test_seeded_sampling_is_reproducible_inside_a_batch(f32_path):
    async with loaded(f32_path, n_ctx=256, n_parallel=4) as llm:
        ids = [llm.completion_prompt(p) for p in PROMPTS[:4]]
        sampled = dict(max_tokens=24, temperature=0.9, top_p=0.95, seed=1234, ignore_eos=True)
        alone, _ = await text_of(llm, ids[0], **sampled)
        others = [text_of(llm, x, max_tokens=24, temperature=0.9, ignore_eos=True) for x in ids[1:]]
        (again, _), *_ = await asyncio.gather(text_of(llm, ids[0], **sampled), *others)
        assert again == alone
        other_seed, _ = await text_of(llm, ids[0], **{**sampled, "seed": 99})
        assert other_seed != alone


@pytest.mark.timeout(300)
async def test_next_chat_turn_reuses_the_cached_prefix_and_says_the_same(f32_path):
    async with loaded(f32_path, n_ctx=512, n_parallel=2) as llm:
        turn1 = [{"role": "user", "content": "Tell me about the sea."}]
        ids1 = llm.chat_prompt(turn1)
        reply, first = await text_of(llm, ids1, max_tokens=24, temperature=0)
        assert first.cached_tokens <= 1  # only BOS can be shared with nothing
        turn2 = turn1 + [{"role": "assistant", "content": reply},
                         {"role": "user", "content": "And the mountains?"}]
        ids2 = llm.chat_prompt(turn2)
        warm, second = await text_of(llm, ids2, max_tokens=24, temperature=0)
        # the whole first turn (prompt and reply) was already evaluated
        assert second.cached_tokens >= len(ids1) + 10
        assert second.prompt_tokens == len(ids2)
        cold, third = await fresh_text(f32_path, ids2, max_tokens=24, temperature=0)
        assert third.cached_tokens == 0
        assert warm == cold


@pytest.fixture(scope="module")
def q4_path():
    return _plan()[1]


async def _wait(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def _hold_the_slot(llm):
    """A long request holding the only slot, once it streams; and its prompt."""
    ids = llm.completion_prompt("1, 2, 3, 4, 5,")
    running = llm.stream(ids, SamplingParams(max_tokens=400, temperature=0))
    await running.__anext__()
    assert llm.engine.stats()["slots_busy"] == 1
    return running, ids


@pytest.mark.timeout(120)
async def test_queue_is_bounded_by_length_and_by_time(q4_path):
    async with loaded(q4_path, n_ctx=512, n_parallel=1, max_queue=1, queue_timeout_s=1) as llm:
        engine = llm.engine
        running, ids = await _hold_the_slot(llm)
        waiting = asyncio.ensure_future(text_of(llm, ids, max_tokens=2))
        await _wait(lambda: engine.stats()["queue_length"] == 1)
        with pytest.raises(TooManyRequestsError, match="max_queue=1"):
            await text_of(llm, ids, max_tokens=2)
        with pytest.raises(ServerBusyError, match="queue_timeout_s"):
            await waiting  # the slot stayed busy past 1 s
        assert engine.stats()["queue_length"] == 0
        await running.aclose()


@pytest.mark.timeout(120)
async def test_clients_that_go_away_leave_queue_and_slot(q4_path):
    async with loaded(q4_path, n_ctx=512, n_parallel=1, max_queue=4, queue_timeout_s=60) as llm:
        engine = llm.engine
        running, ids = await _hold_the_slot(llm)
        waiting = asyncio.ensure_future(text_of(llm, ids, max_tokens=2))
        await _wait(lambda: engine.stats()["queue_length"] == 1)
        waiting.cancel()  # a waiting client disconnects: it leaves the queue
        await _wait(lambda: engine.stats()["queue_length"] == 0)
        assert engine.stats()["slots_busy"] == 1
        await running.aclose()  # a running client disconnects: the slot frees within a step
        await _wait(lambda: engine.stats()["slots_busy"] == 0, timeout=2)
        text, last = await asyncio.wait_for(text_of(llm, ids, max_tokens=3, temperature=0), 10)
        assert last.completion_tokens == 3


@pytest.mark.timeout(120)
async def test_multibyte_text_streams_whole_and_a_long_prompt_is_chunked(f32_path):
    # n_batch 16: a prompt of ~100 tokens is evaluated over several steps
    async with loaded(f32_path, n_ctx=512, n_parallel=2, n_batch=16, stream_interval=0) as llm:
        ids = llm.completion_prompt("请用中文写一首关于大海的诗。" * 6)
        assert len(ids) > 48
        text, last = await text_of(llm, ids, max_tokens=40, temperature=0)
        assert "\ufffd" not in text and text.strip()
        cold, _ = await fresh_text(f32_path, ids, max_tokens=40, temperature=0)
        assert cold == text


@pytest.mark.timeout(120)
async def test_prompts_that_arrive_together_start_streaming_one_after_another(q4_path):
    # Four prompts longer than PROMPT_TOKENS_PER_STEP, sent at once: the first step
    # evaluates half of them, the next ones one each, so the first streams its second
    # token before the last has its first.
    from xinference.model.llm.engines.llama_cpp.scheduler import PROMPT_TOKENS_PER_STEP

    async with loaded(q4_path, n_ctx=512, n_parallel=4, stream_interval=0) as llm:
        ids = [llm.completion_prompt(f"{p}, " * 6) for p in PROMPTS[:4]]
        assert min(map(len, ids)) > PROMPT_TOKENS_PER_STEP
        events = []

        async def run(i):
            async for _ in llm.stream(ids[i], SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)):
                events.append(i)

        await asyncio.gather(*(run(i) for i in range(4)))
        first_of_last = events.index(3)
        assert events[:first_of_last].count(0) >= 2, events
        # two short prompts waiting together still share a step: both stream their first
        # token together. The scheduler looks at its queue under its condition's lock, so
        # holding it until both wait takes the race between the two submissions away.
        events.clear()
        ids = [llm.completion_prompt(p) for p in PROMPTS[:2]]
        assert sum(map(len, ids)) <= PROMPT_TOKENS_PER_STEP
        with llm.engine._scheduler._cond:
            both = asyncio.gather(*(run(i) for i in range(2)))
            await _wait(lambda: llm.engine.stats()["queue_length"] == 2)
        await both
        assert sorted(events[:2]) == [0, 1], events
