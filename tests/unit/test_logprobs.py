"""Log-probabilities and logit_bias on both engines, checked against a direct
computation: the tiny random Llama run by Hugging Face itself, token by token.

The llama.cpp engine runs the same weights from an F32 GGUF (tests/tiny_gguf.py), so
its log-softmax must agree with the PyTorch model's to float rounding."""

import pytest

from xinference.errors import InvalidRequestError
from xinference.model.llm.engines import get_engine_class
from xinference.model.llm.family import get_family, match_spec
from xinference.types import SamplingParams

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPT = "Hello world! This is a tiny model"


def _engine(kind, path):
    family = get_family("llama-2-chat")
    if kind == "Transformers":
        spec, quant = match_spec(family, "pytorch")
        return get_engine_class(kind)(path, family, spec, quant, 0, dtype="float32")
    spec, quant = match_spec(family, "ggufv2")
    return get_engine_class(kind)(path, family, spec, quant, 0, n_ctx=256, n_parallel=2)


@pytest.fixture(params=["Transformers", "llama.cpp"])
async def engine(request, tiny_llama, tiny_llama_gguf):
    if request.param == "llama.cpp":
        pytest.importorskip("llama_cpp")
    eng = _engine(request.param, tiny_llama if request.param == "Transformers" else tiny_llama_gguf)
    await eng.load()
    yield eng
    await eng.close()


@pytest.fixture(scope="module")
def reference(tiny_llama):
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()

    def log_softmax_after(ids):
        with torch.no_grad():
            return torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), -1)

    return log_softmax_after


async def _generate(engine, ids, **params):
    deltas = [d async for d in engine.generate(ids, SamplingParams(**params))]
    return deltas, [e for d in deltas for e in d.logprobs]


@pytest.mark.timeout(300)
async def test_logprobs_are_the_models_log_softmax(engine, reference):
    ids = engine.tokenize(PROMPT, add_bos=True)
    _, entries = await _generate(engine, ids, max_tokens=6, temperature=0, ignore_eos=True, logprobs=3)
    assert len(entries) == 6
    # llama.cpp keeps its KV cache in float16: its values drift from float32 by ~1e-3
    tol = 2e-3 if engine.name == "Transformers" else 1e-2
    seq = list(ids)
    for e in entries:
        ref = reference(seq)
        best = int(ref.argmax())
        assert abs(e["logprob"] - float(ref[best])) < tol, (e, float(ref[best]))
        assert [t["logprob"] for t in e["top"]] == pytest.approx(ref.topk(3).values.tolist(), abs=tol)
        assert e["top"][0]["token"] == e["token"]
        assert bytes(e["bytes"]).decode("utf-8", "replace") == e["token"]  # a byte piece is "\ufffd"
        seq.append(best)


@pytest.mark.timeout(300)
async def test_logprobs_follow_penalties_and_sampling_leaves_them_alone(engine, reference):
    ids = engine.tokenize(PROMPT, add_bos=True)
    # a penalty changes the distribution the values come from...
    _, plain = await _generate(engine, ids, max_tokens=1, temperature=0, logprobs=0)
    _, pen = await _generate(engine, ids, max_tokens=1, temperature=0, logprobs=0, presence_penalty=2.0,
                             repetition_penalty=1.3)
    assert plain[0]["logprob"] != pytest.approx(pen[0]["logprob"], abs=1e-4)
    # ...temperature does not: a sampled token's value is still the model's own
    _, hot = await _generate(engine, ids, max_tokens=1, temperature=1.5, seed=1, logprobs=0)
    ref = reference(list(ids))
    assert (ref - hot[0]["logprob"]).abs().min() < 1e-2


@pytest.mark.timeout(300)
async def test_logit_bias_forces_and_bans_tokens(engine, reference):
    ids = engine.tokenize(PROMPT, add_bos=True)
    ref = reference(list(ids))
    greedy, runner_up = ref.topk(2).indices.tolist()
    _, entries = await _generate(engine, ids, max_tokens=1, temperature=0, logprobs=0)
    # banning the greedy token leaves the runner-up; its value is after the bias
    _, banned = await _generate(engine, ids, max_tokens=1, temperature=0, logprobs=0,
                                logit_bias={greedy: -100.0})
    assert banned[0]["token"] != entries[0]["token"]
    assert banned[0]["logprob"] > float(ref[runner_up]) - 1e-2
    # +100 makes one token all but certain, even sampled hot
    forced_id = int(ref.argmin())
    _, forced = await _generate(engine, ids, max_tokens=3, temperature=1.5, seed=3, ignore_eos=True,
                                logprobs=0, logit_bias={forced_id: 100.0})
    assert len({e["token"] for e in forced}) == 1 and forced[0]["logprob"] > -1e-3
    with pytest.raises(InvalidRequestError, match="not in this model's vocabulary"):
        await _generate(engine, ids, max_tokens=1, logit_bias={10**9: 1.0})
