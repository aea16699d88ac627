"""The llama.cpp engine in-process on the embedded Gemma model."""

import asyncio

import pytest

from xinference.errors import InvalidRequestError
from xinference.model.llm.engines import get_engine_class
from xinference.model.llm.launch import plan_launch
from xinference.model.llm.llm import LLM
from xinference.model.llm.resolve import resolve_model_path
from xinference.types import SamplingParams

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def llm():
    plan = plan_launch("gemma-3", engine_kwargs={"n_ctx": 512})
    path = resolve_model_path(plan.family, plan.spec, plan.quantization)
    engine = get_engine_class(plan.engine)(path, plan.family, plan.spec, plan.quantization, **plan.engine_kwargs)
    asyncio.run(engine.load())
    return LLM(engine)


async def collect(llm, ids, **params):
    return [d async for d in llm.stream(ids, SamplingParams(**params))]


@pytest.mark.timeout(120)
async def test_greedy_is_deterministic_and_counts_tokens(llm):
    ids = llm.completion_prompt("The capital of France is")
    await collect(llm, ids, max_tokens=1)  # both runs below reuse the cached prompt
    a = await collect(llm, ids, max_tokens=10, temperature=0)
    b = await collect(llm, ids, max_tokens=10, temperature=0)
    text = "".join(d.text for d in a)
    assert text == "".join(d.text for d in b) and text.strip()
    last = a[-1]
    assert last.finish_reason == "length"
    assert last.completion_tokens == 10 and last.prompt_tokens == len(ids)


@pytest.mark.timeout(120)
async def test_chat_prompt_has_one_bos(llm):
    ids = llm.chat_prompt([{"role": "user", "content": "hi"}])
    bos = llm.engine.tokenize("", add_bos=True)
    assert ids[0] == bos[0] and ids[1] != bos[0]


@pytest.mark.timeout(120)
async def test_context_overflow_is_400(llm):
    ids = llm.completion_prompt("hello")
    with pytest.raises(InvalidRequestError, match="512"):
        await collect(llm, ids, max_tokens=600)


@pytest.mark.timeout(120)
async def test_abandoned_stream_frees_the_engine(llm):
    ids = llm.completion_prompt("Once upon a time")
    gen = llm.stream(ids, SamplingParams(max_tokens=400, temperature=0.7))
    await gen.__anext__()
    await gen.aclose()  # what the actor does when the HTTP client goes away
    done = await asyncio.wait_for(collect(llm, ids, max_tokens=3, temperature=0), timeout=10)
    assert done[-1].completion_tokens == 3


@pytest.mark.timeout(120)
async def test_text_matches_raw_llama_cpp_token_for_token(llm, f32_path):
    """Every generated token's text arrives, the last one included (F32: see conftest)."""
    import llama_cpp

    engine = type(llm.engine)(f32_path, llm.family, llm.engine.spec, llm.engine.quantization, n_ctx=512)
    await engine.load()
    ours = LLM(engine)
    ids = ours.completion_prompt("The capital of France is")
    raw = llama_cpp.Llama(model_path=f32_path, n_ctx=512, n_threads=2, verbose=False)
    expected = []
    for tok in raw.generate(list(ids), temp=0, top_k=40, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
        expected.append(tok)
        if len(expected) == 10:
            break
    want = raw.detokenize(expected).decode("utf-8", errors="replace")
    raw.close()
    got = await collect(ours, ids, max_tokens=10, temperature=0)
    await engine.close()
    assert "".join(d.text for d in got) == want


def test_coalescer_batches_by_time():
    from xinference.model.llm.engines.text_stream import Coalescer
    from xinference.types import GenerationDelta

    sent = []
    c = Coalescer(sent.append, interval=3600)
    for piece in ["a", "b", "c"]:
        c.add(piece)
    c.finish(GenerationDelta(finish_reason="length"))
    assert [d.text for d in sent] == ["a", "bc"]  # first at once, the rest with the last
    assert sent[-1].finish_reason == "length"
    sent.clear()
    c = Coalescer(sent.append, interval=0)
    for piece in ["a", "b"]:
        c.add(piece)
    c.finish(GenerationDelta(finish_reason="stop"))
    assert [d.text for d in sent] == ["a", "b", ""]
