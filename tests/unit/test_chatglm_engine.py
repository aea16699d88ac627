"""The chatglm.cpp engine in-process, on tiny random ChatGLM2/3 models built by the
package's own converter (tests/tiny_chatglm.py)."""

import asyncio
import time

import pytest

from tests.tiny_chatglm import build_tiny_chatglm
from xinference.errors import InvalidRequestError, ServerBusyError, TooManyRequestsError
from xinference.model.llm.engines import get_engine_class
from xinference.model.llm.family import get_family
from xinference.model.llm.launch import engine_params, plan_launch
from xinference.model.llm.llm import LLM
from xinference.types import SamplingParams

chatglm_cpp = pytest.importorskip("chatglm_cpp")
pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("chatglm")
    return {kind: str(build_tiny_chatglm(out, kind)) for kind in ("chatglm2", "chatglm3")}


async def load_llm(path, model="chatglm3", **engine_kwargs):
    plan = plan_launch(model, model_format="ggmlv3", engine_kwargs=engine_kwargs)
    assert plan.engine == "chatglm.cpp"
    engine = get_engine_class(plan.engine)(path, plan.family, plan.spec, plan.quantization,
                                           **plan.engine_kwargs)
    await engine.load()
    return LLM(engine)


def make_llm(path, model="chatglm3", **engine_kwargs):
    return asyncio.run(load_llm(path, model, **engine_kwargs))


@pytest.fixture(scope="module")
def glm3(files):
    llm = make_llm(files["chatglm3"])
    yield llm
    asyncio.run(llm.engine.close())


async def collect(llm, ids, **params):
    return [d async for d in llm.stream(ids, SamplingParams(**params))]


def text_of(deltas):
    return "".join(d.text for d in deltas)


def raw_greedy(path, prompt, n):
    """What chatglm.cpp's own generation loop produces, greedy, for comparison."""
    pipe = chatglm_cpp.Pipeline(path)
    config = chatglm_cpp._C.GenerationConfig(max_length=pipe.model.config.max_length,
                                             max_new_tokens=n, do_sample=False)
    return list(pipe._stream_generate_ids(prompt, None, config))


def test_the_catalogue_runs_chatglm_ggml_with_chatglm_cpp_only():
    for name in ("chatglm2", "chatglm3"):
        rows = [r for r in engine_params(get_family(name)) if r["model_format"] == "ggmlv3"]
        assert {r["engine"] for r in rows} == {"chatglm.cpp"}
        assert plan_launch(name).engine == "chatglm.cpp"
    for name in ("vicuna-v1.3", "orca", "wizardlm-v1.0"):
        assert not [r for r in engine_params(get_family(name)) if r["engine"] == "chatglm.cpp"]


@pytest.mark.timeout(60)
async def test_greedy_matches_chatglm_cpps_own_loop_and_counts_tokens(glm3, files):
    ids = glm3.chat_prompt([{"role": "user", "content": "hello world"}])
    deltas = await collect(glm3, ids, temperature=0, max_tokens=12, ignore_eos=True)
    last = deltas[-1]
    assert last.finish_reason == "length"
    assert (last.prompt_tokens, last.completion_tokens) == (len(ids), 12)
    expected = raw_greedy(files["chatglm3"], ids, 12)
    tok = glm3.engine._pipe.tokenizer
    assert text_of(deltas) == tok.decode(expected)


def test_chats_use_the_models_own_role_tokens(glm3, files):
    tok = glm3.engine._pipe.tokenizer
    msgs = [{"role": "system", "content": "be terse"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "tool", "content": "42"},
            {"role": "user", "content": [{"type": "text", "text": "and "}, {"type": "text", "text": "now"}]}]
    ids = glm3.chat_prompt(msgs)
    shown = tok.decode(ids, False)
    assert shown.startswith("[gMASK]sop<|system|>")
    assert "<|observation|>" in shown and shown.endswith("<|assistant|>")
    assert "and now" in shown
    glm2 = make_llm(files["chatglm2"], "chatglm2")
    try:
        prompt = glm2.engine._pipe.tokenizer.decode(glm2.chat_prompt([{"role": "user", "content": "hi"}]))
        assert prompt == "[Round 1]\n\n问：hi\n\n答："
        with pytest.raises(InvalidRequestError) as e:  # ChatGLM2 has no observation role
            glm2.chat_prompt([{"role": "tool", "content": "x"}, {"role": "user", "content": "hi"}])
        assert e.value.param == "messages"
        with pytest.raises(InvalidRequestError):  # its template needs user/assistant turns
            glm2.chat_prompt([{"role": "assistant", "content": "x"}])
    finally:
        asyncio.run(glm2.engine.close())


@pytest.mark.parametrize("messages, kwargs", [
    ([{"role": "function", "content": "x"}], None),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], None),
    ([{"role": "user", "content": "hi"}], {"enable_thinking": True}),
])
def test_what_the_model_cannot_format_is_a_400(glm3, messages, kwargs):
    with pytest.raises(InvalidRequestError):
        glm3.chat_prompt(messages, kwargs)


@pytest.mark.parametrize("field", [{"seed": 1}, {"presence_penalty": 0.5},
                                   {"frequency_penalty": 0.5}, {"lora_name": "x"},
                                   {"json_schema": {"type": "object"}}])
async def test_options_its_sampler_cannot_honour_are_refused(glm3, field):
    ids = glm3.completion_prompt("hello")
    with pytest.raises(InvalidRequestError) as e:
        await collect(glm3, ids, max_tokens=2, **field)
    assert e.value.param in (*field, "response_format")


@pytest.mark.timeout(60)
async def test_stop_strings_and_stop_ids_end_the_answer(glm3):
    ids = glm3.completion_prompt("the quick brown")
    full = text_of(await collect(glm3, ids, temperature=0, max_tokens=20, ignore_eos=True))
    stop = full[len(full) // 2:][:3]
    assert stop.strip()
    cut = await collect(glm3, ids, temperature=0, max_tokens=20, ignore_eos=True, stop=[stop])
    assert cut[-1].finish_reason == "stop"
    assert text_of(cut) == full[: full.index(stop)]
    first = raw_greedy(glm3.engine.model_path, ids, 1)[0]
    none = await collect(glm3, ids, temperature=0, max_tokens=20, stop_token_ids=[first])
    assert (text_of(none), none[-1].finish_reason, none[-1].completion_tokens) == ("", "stop", 0)


async def test_sampling_runs_and_the_context_is_checked(glm3):
    ids = glm3.completion_prompt("alpha")
    # Random weights at temperature 1.5 sometimes draw one of the family's stop tokens,
    # which end a reply even with ignore_eos (the engine cannot be seeded): a few tries,
    # one of which runs to max_tokens, unless sampling is broken.
    ends = []
    for _ in range(5):
        deltas = await collect(glm3, ids, temperature=1.5, top_p=0.9, top_k=20,
                               repetition_penalty=1.2, max_tokens=8, ignore_eos=True)
        ends.append((deltas[-1].finish_reason, deltas[-1].completion_tokens))
        if ends[-1] == ("length", 8):
            break
    assert ends[-1] == ("length", 8), ends
    assert all(reason == "stop" and n < 8 for reason, n in ends[:-1]), ends
    assert glm3.engine.context_length == 512  # the file's, below the family's default
    with pytest.raises(InvalidRequestError) as e:
        await collect(glm3, ids, max_tokens=512)
    assert e.value.code == "context_length_exceeded"


class SlowModel:
    def __init__(self, model):
        self._model = model

    def generate_next_token(self, *args):
        time.sleep(0.01)
        return self._model.generate_next_token(*args)


@pytest.mark.timeout(60)
async def test_one_sequence_at_a_time_behind_a_bounded_queue(files):
    llm = await load_llm(files["chatglm3"], max_queue=1, queue_timeout_s=0.5, stream_interval=0)
    # the tiny model decodes a token in microseconds: slow it down so that the running
    # request is still running while the others queue
    llm.engine._runner._model = SlowModel(llm.engine._runner._model)
    try:
        ids = llm.completion_prompt("hello")
        running = llm.stream(ids, SamplingParams(max_tokens=400, ignore_eos=True))
        await running.__anext__()
        stats = llm.engine.stats()
        assert (stats["slots_total"], stats["slots_busy"], stats["batching"]) == (1, 1, False)
        waiting = asyncio.ensure_future(collect(llm, ids, max_tokens=2))
        await asyncio.sleep(0.05)
        with pytest.raises(TooManyRequestsError):
            await collect(llm, ids, max_tokens=2)
        with pytest.raises(ServerBusyError):
            await waiting
        await running.aclose()  # the client left: the sequence stops at its next token
        done = await collect(llm, ids, max_tokens=3, ignore_eos=True)
        assert done[-1].completion_tokens == 3
        assert llm.engine.stats()["slots_busy"] == 0
    finally:
        await llm.engine.close()


def test_load_errors_are_400s(files, tmp_path):
    with pytest.raises(InvalidRequestError) as e:
        make_llm(files["chatglm3"], n_ctx=4096)  # more than the file's 512
    assert e.value.param == "n_ctx"
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"tjgg" + bytes(64))
    with pytest.raises(InvalidRequestError) as e:
        make_llm(str(junk))
    assert e.value.param == "model_path"
