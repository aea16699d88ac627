"""The Transformers engine, in-process, on tiny random-weight models built at test time.

The models are float32, so a sequence's logits do not depend on which other rows
share its batch beyond rounding (~1e-6): any difference in greedy text between a
request run alone and the same request in a batch is a scheduling bug (a row, a
position, a mask or a KV column mixed up).
"""

import asyncio
import json
import shutil
import time
from contextlib import asynccontextmanager

import pytest

from xinference.errors import InvalidRequestError, ServerBusyError, TooManyRequestsError
from xinference.model.llm.engines import get_engine_class
from xinference.model.llm.family import get_family, match_spec
from xinference.model.llm.llm import LLM
from xinference.types import LoRASpec, SamplingParams

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

FAMILY = {"llama": "llama-2-chat", "qwen2": "qwen1.5-chat"}
PROMPTS = [
    "Hello world",
    "你好世界🙂，今天天气很好。",
    "x",
    "The quick brown fox jumps over the lazy dog " * 4,  # longer than prefill_chunk
    "数据",
    "one two three four five",
    "🙂🙂🙂",
    "a b c",
]


@asynccontextmanager
async def loaded(path, kind="llama", **kwargs):
    family = get_family(FAMILY[kind])
    spec, quant = match_spec(family, "pytorch")
    kwargs.setdefault("dtype", "float32")
    engine = get_engine_class("Transformers")(path, family, spec, quant, 0, **kwargs)
    await engine.load()
    try:
        yield LLM(engine)
    finally:
        await engine.close()


async def run(engine, ids, **params):
    """Text and last delta of one request, straight to the engine (no family stops)."""
    deltas = [d async for d in engine.generate(ids, SamplingParams(**params))]
    return "".join(d.text for d in deltas), deltas[-1]


async def _wait(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture(params=["llama", "qwen2"])
def model(request, tiny_llama, tiny_qwen2):
    return request.param, {"llama": tiny_llama, "qwen2": tiny_qwen2}[request.param]


@pytest.mark.timeout(120)
async def test_batched_greedy_text_equals_solo_and_hf_generate(model):
    kind, path = model
    # prefill_chunk 24: short prompts are prefilled in groups, the long one in chunks;
    # different max_tokens make rows leave the batch at different steps.
    async with loaded(path, kind, prefill_chunk=24, stream_interval=0) as llm:
        engine = llm.engine
        ids = [llm.completion_prompt(p) for p in PROMPTS]
        assert max(len(i) for i in ids) > 24
        lengths = [12 + 5 * i for i in range(len(ids))]
        solo = [await run(engine, i, temperature=0, max_tokens=n, ignore_eos=True)
                for i, n in zip(ids, lengths)]
        both = await asyncio.gather(*(run(engine, i, temperature=0, max_tokens=n, ignore_eos=True)
                                      for i, n in zip(ids, lengths)))
        assert [t for t, _ in both] == [t for t, _ in solo]
        for (_, last), n, i in zip(both, lengths, ids):
            assert last.finish_reason == "length"
            assert (last.completion_tokens, last.prompt_tokens) == (n, len(i))
        # the same tokens as Hugging Face's own generate, turned into text our way
        from xinference.model.llm.engines.detokenize import Detokenizer

        hf, tok = engine._model, engine._tok
        eos = sorted(engine._scheduler._eos)
        for (text, _), i, n in zip(solo, ids, lengths):
            out = hf.generate(torch.tensor([i]), max_new_tokens=n, do_sample=False,
                              suppress_tokens=eos, attention_mask=torch.ones(1, len(i), dtype=torch.long))
            detok = Detokenizer(tok, i)
            expected = "".join(detok.add(t) for t in out[0, len(i):].tolist()) + detok.flush()
            assert text == expected


@pytest.mark.timeout(60)
async def test_cjk_and_emoji_stream_as_whole_characters(model):
    kind, path = model
    from transformers import AutoTokenizer

    from xinference.model.llm.engines.detokenize import Detokenizer

    tok = AutoTokenizer.from_pretrained(path)
    text = "模型说：你好世界🙂 and 👨‍👩‍👧 done。"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    detok = Detokenizer(tok, [])
    pieces = [detok.add(t) for t in ids]
    assert "".join(pieces) + detok.flush() == text
    assert all("\ufffd" not in p for p in pieces)
    # some characters span several tokens, so some steps had nothing to emit
    assert sum(1 for p in pieces if not p) > 0


@pytest.mark.timeout(60)
async def test_chat_uses_the_tokenizers_own_template(tiny_llama, tiny_qwen2):
    messages = [{"role": "user", "content": "hi"}]
    async with loaded(tiny_llama, "llama") as llm:
        ids = llm.chat_prompt(messages)
        assert llm.engine._tok.decode(ids) == "<s>[INST] hi [/INST]"
        assert ids[0] == 1 and ids[1] != 1  # the template writes BOS once
    async with loaded(tiny_qwen2, "qwen2") as llm:
        ids = llm.chat_prompt(messages)
        assert llm.engine._tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.timeout(60)
async def test_seeded_sampling_is_reproducible_inside_a_batch(tiny_qwen2):
    async with loaded(tiny_qwen2, "qwen2", stream_interval=0) as llm:
        ids = llm.completion_prompt("Once upon a time")
        sampled = dict(temperature=0.9, top_p=0.95, top_k=50, max_tokens=24, ignore_eos=True)
        other = llm.completion_prompt("other")
        results = await asyncio.gather(
            run(llm.engine, ids, seed=7, **sampled),
            run(llm.engine, other, temperature=0, max_tokens=30),
            run(llm.engine, ids, seed=7, **sampled),
            run(llm.engine, ids, seed=8, **sampled),
        )
        assert results[0][0] == results[2][0]
        assert results[0][0] != results[3][0]


@pytest.mark.timeout(60)
async def test_stop_strings_and_max_tokens_end_a_stream(tiny_qwen2):
    async with loaded(tiny_qwen2, "qwen2", stream_interval=0) as llm:
        ids = llm.completion_prompt("The quick brown fox")
        full, last = await run(llm.engine, ids, temperature=0, max_tokens=30, ignore_eos=True)
        assert (last.finish_reason, last.completion_tokens) == ("length", 30)
        stop = next(full[k:k + 2] for k in range(4, len(full) - 2)
                    if "\ufffd" not in full[k:k + 2] and full[k:k + 2] not in full[:k + 1])
        cut, last = await run(llm.engine, ids, temperature=0, max_tokens=30, ignore_eos=True, stop=[stop])
        assert cut == full[: full.index(stop)] and last.finish_reason == "stop"


@pytest.mark.timeout(120)
async def test_lora_adapters_change_the_output_and_share_a_batch(tiny_llama, tiny_lora_a, tiny_lora_b):
    loras = [LoRASpec(lora_name="a", local_path=tiny_lora_a), LoRASpec(lora_name="b", local_path=tiny_lora_b)]
    async with loaded(tiny_llama, "llama", lora_list=loras, stream_interval=0) as llm:
        ids = llm.completion_prompt("Hello world")
        cases = [None, "a", "b", None, "a", "b"]
        solo = {n: (await run(llm.engine, ids, temperature=0, max_tokens=16, ignore_eos=True, lora_name=n))[0]
                for n in ("a", "b", None)}
        assert len(set(solo.values())) == 3
        mixed = await asyncio.gather(*(run(llm.engine, ids, temperature=0, max_tokens=16, ignore_eos=True,
                                           lora_name=n) for n in cases))
        assert [t for t, _ in mixed] == [solo[n] for n in cases]
        with pytest.raises(InvalidRequestError, match="no LoRA adapter 'c'"):
            await run(llm.engine, ids, max_tokens=2, lora_name="c")
        eos = sorted(llm.engine._scheduler._eos)
    # the same tokens as peft's own LoRA model, turned into text our way
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from xinference.model.llm.engines.detokenize import Detokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    for name, path in (("a", tiny_lora_a), ("b", tiny_lora_b)):
        ref = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), path)
        out = ref.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                           max_new_tokens=16, do_sample=False, suppress_tokens=eos)
        detok = Detokenizer(tok, ids)
        assert solo[name] == "".join(detok.add(t) for t in out[0, len(ids):].tolist()) + detok.flush()
    async with loaded(tiny_llama, "llama") as llm:  # the base alone, without peft
        plain, _ = await run(llm.engine, ids, temperature=0, max_tokens=16, ignore_eos=True)
        assert plain == solo[None]


@pytest.mark.timeout(60)
async def test_bad_launch_options_are_clear_errors(tiny_llama, tiny_lora_a, tmp_path):
    with pytest.raises(InvalidRequestError, match="dtype must be"):
        async with loaded(tiny_llama, dtype="float8"):
            pass
    with pytest.raises(InvalidRequestError, match="max_num_seqs must be"):
        async with loaded(tiny_llama, max_num_seqs=0):
            pass
    with pytest.raises(InvalidRequestError, match="not a peft adapter"):
        async with loaded(tiny_llama, lora_list=[LoRASpec(lora_name="x", local_path=str(tmp_path))]):
            pass
    with pytest.raises(InvalidRequestError, match="could not load"):
        async with loaded(str(tmp_path)):
            pass
    # an adapter made for a wider model, and one that is not plain LoRA
    from safetensors.torch import load_file, save_file

    wide = tmp_path / "wide"
    shutil.copytree(tiny_lora_a, wide)
    weights = load_file(str(wide / "adapter_model.safetensors"))
    weights = {k: torch.zeros(v.shape[0], 2 * v.shape[1]) if "lora_A" in k else v for k, v in weights.items()}
    save_file(weights, str(wide / "adapter_model.safetensors"))
    with pytest.raises(InvalidRequestError, match="do not fit the layer"):
        async with loaded(tiny_llama, lora_list=[LoRASpec(lora_name="w", local_path=str(wide))]):
            pass
    dora = tmp_path / "dora"
    shutil.copytree(tiny_lora_a, dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(InvalidRequestError, match="uses use_dora"):
        async with loaded(tiny_llama, lora_list=[LoRASpec(lora_name="d", local_path=str(dora))]):
            pass


@pytest.mark.timeout(60)
async def test_queue_is_bounded_and_clients_that_leave_free_their_slot(tiny_llama):
    async with loaded(tiny_llama, max_num_seqs=1, max_queue=1, queue_timeout_s=1) as llm:
        engine = llm.engine
        ids = llm.completion_prompt("1, 2, 3")
        running = engine.generate(ids, SamplingParams(max_tokens=3000, temperature=0, ignore_eos=True))
        await running.__anext__()
        assert engine.stats()["slots_busy"] == 1
        waiting = asyncio.ensure_future(run(engine, ids, max_tokens=2))
        await _wait(lambda: engine.stats()["queue_length"] == 1)
        with pytest.raises(TooManyRequestsError, match="max_queue=1"):
            await run(engine, ids, max_tokens=2)
        with pytest.raises(ServerBusyError, match="queue_timeout_s"):
            await waiting
        await running.aclose()  # the client went away: its slot frees at the next step
        await _wait(lambda: engine.stats()["slots_busy"] == 0, timeout=2)
        _, last = await asyncio.wait_for(run(engine, ids, max_tokens=3, temperature=0, ignore_eos=True), 10)
        assert last.completion_tokens == 3
