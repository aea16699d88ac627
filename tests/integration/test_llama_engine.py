"""The llama.cpp engine in-process on the embedded Gemma model."""

import asyncio

import pytest

from xinference.errors import InvalidRequestError
from xinference.model.llm.engines import get_engine_class
from xinference.model.llm.launch import plan_launch
from xinference.model.llm.llm import LLM
from xinference.types import SamplingParams

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def llm():
    plan = plan_launch("gemma-3", engine_kwargs={"n_ctx": 512})
    path = plan.resolve_weights()
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


FEW_SHOT = [{"role": "user", "content": "A cat as JSON."},
            {"role": "assistant", "content": '{"animal": "cat", "legs": 4}'},
            {"role": "user", "content": "A dog as JSON."}]


@pytest.mark.timeout(120)
async def test_json_schema_constrains_the_output_through_a_grammar(llm):
    import json

    ids = llm.chat_prompt(FEW_SHOT)
    free = "".join(d.text for d in await collect(llm, ids, max_tokens=30, temperature=0))
    with pytest.raises(json.JSONDecodeError):
        json.loads(free)  # the base model goes on after the object
    out = await collect(llm, ids, max_tokens=60, temperature=0, json_schema={"type": "object"})
    assert out[-1].finish_reason == "stop" and isinstance(json.loads("".join(d.text for d in out)), dict)
    schema = {"type": "object", "properties": {"legs": {"type": "integer"}, "tail": {"type": "boolean"}},
              "required": ["legs", "tail"]}
    # sampled (not greedy) and with penalties: the grammar masks the row before any sampler
    out = await collect(llm, ids, max_tokens=60, temperature=0.9, seed=3, repetition_penalty=1.1,
                        json_schema=schema)
    data = json.loads("".join(d.text for d in out))
    assert set(data) == {"legs", "tail"} and isinstance(data["legs"], int) and isinstance(data["tail"], bool)


@pytest.mark.timeout(120)
async def test_a_schema_that_cannot_become_a_grammar_is_400(llm):
    ids = llm.chat_prompt(FEW_SHOT)
    with pytest.raises(InvalidRequestError, match="schema"):
        await collect(llm, ids, max_tokens=5, json_schema={"$ref": "https://example.invalid/s.json"})


@pytest.mark.timeout(120)
async def test_penalties_sample_in_this_llama_cpp_build(llm):
    ids = llm.completion_prompt("1, 2, 3,")
    out = await collect(llm, ids, max_tokens=6, temperature=0, repetition_penalty=1.3,
                        frequency_penalty=0.5, presence_penalty=0.5)
    assert out[-1].completion_tokens == 6


def test_engines_without_grammar_refuse_json_schema_before_generating():
    from xinference.model.llm.engines.base import LLMEngine

    class NoGrammar(LLMEngine):
        name = "plain"
        model_formats = ("pytorch",)
        context_length = 64

        async def load(self):
            return None

        def tokenize(self, text, add_bos):
            return [1, 2]

        def generate(self, prompt_ids, params):
            raise AssertionError("never reached")

    plan = plan_launch("gemma-3")
    engine = NoGrammar("/nowhere", plan.family, plan.spec, plan.quantization)
    with pytest.raises(InvalidRequestError, match="cannot constrain output to JSON") as err:
        LLM(engine).stream([1, 2], SamplingParams(json_schema={"type": "object"}))
    assert err.value.param == "response_format"


@pytest.mark.timeout(300)
async def test_a_ggufs_own_chat_template_is_used(tiny_llama_gguf):
    """A GGUF that carries `tokenizer.chat_template` renders chats with it (and the
    BOS text it writes), not with the family's."""
    plan = plan_launch("gemma-3", model_path=tiny_llama_gguf, engine_kwargs={"n_ctx": 128})
    engine = get_engine_class("llama.cpp")(tiny_llama_gguf, plan.family, plan.spec, plan.quantization,
                                           **plan.engine_kwargs)
    await engine.load()
    try:
        own = engine.chat_template()
        assert own is not None
        template, tokens = own
        assert "[INST]" in template and "<start_of_turn>" not in template
        assert tokens["bos_token"] == "<s>" and tokens["eos_token"] == "</s>"
        ids = LLM(engine).chat_prompt([{"role": "user", "content": "hello"}])
        text = "".join(engine._piece(i).decode("utf-8", "replace") for i in ids)
        assert "[INST]" in text and "<start_of_turn>" not in text
        assert ids.count(engine.tokenize("<s>", add_bos=False)[0]) == 1  # BOS once, from the template
    finally:
        await engine.close()
