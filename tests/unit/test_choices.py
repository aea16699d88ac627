"""n choices of one prompt on both batching engines: the prompt is evaluated once and
its KV copied to each choice, which then samples on its own (choice i with seed + i).

On the tiny random Llama in float32 (llama.cpp: an F32 GGUF of the same weights), a
copied KV cache that was wrong (a missed layer, a position off by one, the copy taken
after the slot was reused) changes the text; so every choice must read exactly like
the same request run alone with that choice's seed."""

import asyncio

import pytest

from xinference.model.llm.engines import get_engine_class
from xinference.model.llm.family import get_family, match_spec
from xinference.model.llm.llm import LLM
from xinference.types import SamplingParams

torch = pytest.importorskip("torch")

PROMPT = "Hello world! This is a tiny model that writes"


def _engine(kind, path, slots):
    family = get_family("llama-2-chat")
    if kind == "Transformers":
        spec, quant = match_spec(family, "pytorch")
        return get_engine_class(kind)(path, family, spec, quant, 0, dtype="float32", max_num_seqs=slots,
                                      stream_interval=0)
    spec, quant = match_spec(family, "ggufv2")
    return get_engine_class(kind)(path, family, spec, quant, 0, n_ctx=256, n_parallel=slots, stream_interval=0)


@pytest.fixture(params=["Transformers", "llama.cpp"])
async def llm(request, tiny_llama, tiny_llama_gguf):
    if request.param == "llama.cpp":
        pytest.importorskip("llama_cpp")
    eng = _engine(request.param, tiny_llama if request.param == "Transformers" else tiny_llama_gguf, slots=4)
    await eng.load()
    yield LLM(eng)
    await eng.close()


async def _choices(llm, ids, **params):
    texts, finals = {}, {}
    async for d in llm.stream(ids, SamplingParams(**params)):
        texts[d.index] = texts.get(d.index, "") + d.text
        if d.finish_reason:
            finals[d.index] = d
    return texts, finals


async def _alone(llm, ids, **params):
    return "".join([d.text async for d in llm.stream(ids, SamplingParams(**params))])


@pytest.mark.timeout(300)
async def test_each_choice_reads_like_its_request_alone(llm):
    ids = llm.completion_prompt(PROMPT)
    args = dict(max_tokens=12, ignore_eos=True, temperature=1.0, top_k=0)
    texts, finals = await _choices(llm, ids, n=3, seed=11, **args)
    assert sorted(texts) == [0, 1, 2]
    assert len(set(texts.values())) == 3  # sampled on their own
    for i in range(3):
        assert texts[i] == await _alone(llm, ids, seed=11 + i, **args), i
    # the prompt counts once, each choice's tokens on their own
    assert [finals[i].prompt_tokens for i in range(3)] == [len(ids), 0, 0]
    assert all(finals[i].completion_tokens == 12 for i in range(3))
    greedy, _ = await _choices(llm, ids, n=3, max_tokens=12, temperature=0, ignore_eos=True)
    assert set(greedy.values()) == {await _alone(llm, ids, max_tokens=12, temperature=0, ignore_eos=True)}


@pytest.mark.timeout(300)
async def test_more_choices_than_slots_run_in_groups(llm):
    ids = llm.completion_prompt(PROMPT)
    texts, finals = await _choices(llm, ids, n=6, max_tokens=6, temperature=0, ignore_eos=True)
    assert sorted(texts) == list(range(6)) and len(set(texts.values())) == 1
    # the usage counts the prompt once, whatever the groups
    assert sum(f.prompt_tokens for f in finals.values()) == len(ids)
    await asyncio.sleep(0.2)
    assert llm.engine.stats()["slots_busy"] == 0


@pytest.mark.timeout(300)
async def test_leaving_mid_way_frees_every_choices_slot(llm):
    ids = llm.completion_prompt(PROMPT)
    stream = llm.stream(ids, SamplingParams(n=3, max_tokens=200, temperature=0, ignore_eos=True))
    seen = set()
    async for d in stream:
        seen.add(d.index)
        if len(seen) == 3:
            break
    await stream.aclose()
    for _ in range(50):
        if llm.engine.stats()["slots_busy"] == 0:
            break
        await asyncio.sleep(0.1)
    assert llm.engine.stats()["slots_busy"] == 0


@pytest.mark.timeout(300)
async def test_best_of_answers_the_likeliest_choices(llm):
    ids = llm.completion_prompt(PROMPT)
    args = dict(max_tokens=8, ignore_eos=True, temperature=1.0, top_k=0, seed=3)
    picked = [d async for d in llm.stream(ids, SamplingParams(n=2, best_of=4, **args))]
    assert [d.index for d in picked] == [0, 1] and all(d.finish_reason for d in picked)
    assert all(not d.logprobs for d in picked)  # not asked for
    assert sum(d.completion_tokens for d in picked) == 4 * 8  # every generated token counts
    # the same four, with their log-probabilities: the two answered have the best means
    everything = [d async for d in llm.stream(ids, SamplingParams(n=4, logprobs=0, **args))]
    texts, means = {}, {}
    for d in everything:
        texts[d.index] = texts.get(d.index, "") + d.text
        means.setdefault(d.index, []).extend(e["logprob"] for e in d.logprobs)
    ranked = sorted(range(4), key=lambda i: -sum(means[i]) / len(means[i]))
    assert [d.text for d in picked] == [texts[i] for i in ranked[:2]]


@pytest.mark.timeout(300)
async def test_a_greedy_grammar_row_checks_its_argmax_and_answers_as_if_masked(llm):
    """Greedy without log-probabilities checks the argmax against the grammar and masks
    only when it is refused; asking for log-probabilities makes every step mask the
    whole row. A random model's argmax is refused often, so both paths run, and the
    answers must be the same valid JSON."""
    import json

    import jsonschema

    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6},
                                               "n": {"type": "integer"}}, "required": ["name", "n"]}
    ids = llm.completion_prompt(PROMPT)
    args = dict(max_tokens=60, temperature=0, json_schema=schema)
    checked = await _alone(llm, ids, **args)
    masked = await _alone(llm, ids, logprobs=0, **args)
    assert checked == masked
    jsonschema.validate(json.loads(checked), schema)
