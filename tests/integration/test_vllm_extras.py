"""What the vLLM engine honours besides plain sampling: forced tool calls (tool_choice
"required" or a named function, through vLLM's llguidance backend and our Lark grammar),
log-probabilities (chat and completions, streamed or not) and logit_bias, through a
real xinference-local and the `openai` SDK.

The model is the embedded Gemma 3 270M as a Hugging Face folder (tests/hf_gemma.py, the
conversion tests/integration/test_vllm.py caches), launched as the tool-capable
qwen2.5-instruct family: Qwen2.5's chat template (the family's, as the folder has none)
declares the tools and teaches the Hermes call format. A base model never writes a call
by itself, so every call seen here was forced by the grammar, and must still be a valid
call of a declared tool at temperature 1, whatever the seed.

The first tests check, without vLLM, how a stream's log-probability entries follow its
text (engines/vllm/stream.py, PendingOutput) when vLLM merges steps and stop strings hold
text back.
"""

import json
import math
from types import SimpleNamespace

import jsonschema
import pytest
import requests

from tests.servers import start_local
from tests.tool_defs import ASK, SCHEMAS, TOOLS
from xinference.model.llm.engines.vllm.engine import VllmEngine
from xinference.model.llm.engines.vllm.stream import PendingOutput

needs_vllm = pytest.mark.skipif(not VllmEngine.is_installed(),
                                reason="vLLM is not installed (bash scripts/install_vllm.sh)")

UID = "qwen-tools-vllm"
PROMPT = "The weather in Paris is"


# ---- PendingOutput, with vLLM's step shapes faked --------------------------------------

def _step(tokens, text, finish=None, k=2):
    """A vLLM DELTA step: token t's log-probability is -t/10, its text "<t>", and the top
    alternatives are tokens 1..k (-0.1 .. -k/10)."""
    lp = lambda t, rank: SimpleNamespace(logprob=-t / 10, rank=rank, decoded_token=f"<{t}>")  # noqa: E731
    dicts = [{t: lp(t, t), **{a: lp(a, a) for a in range(1, k + 1)}} for t in tokens]
    return SimpleNamespace(token_ids=list(tokens), text=text, logprobs=dicts, finish_reason=finish)


def _never(token):
    raise AssertionError("vLLM decoded every token already")


def test_entries_travel_with_their_text_through_merged_steps_and_held_stop_text():
    out = PendingOutput(["STOP"], 2, _never)
    assert not out.feed(_step([5], "a"))
    assert out.take() == ("a", [{"token": "<5>", "bytes": list(b"<5>"), "logprob": -0.5,
                                 "top": [{"token": "<1>", "bytes": list(b"<1>"), "logprob": -0.1},
                                         {"token": "<2>", "bytes": list(b"<2>"), "logprob": -0.2}]}])
    # "ST" may begin the stop string: held back, and so is its token's entry
    assert not out.feed(_step([6], "ST"))
    assert out.take() == ("", [])
    # a merged step of two tokens releases the held text and all three entries
    assert not out.feed(_step([7, 8], "AYb"))
    text, entries = out.take()
    assert text == "STAYb" and [e["token"] for e in entries] == ["<6>", "<7>", "<8>"]
    # a stop string: the text ends before it, the tokens that made it keep their entries
    assert not out.feed(_step([9], "xS"))
    assert out.feed(_step([10], "TOP"))
    out.finish(hit=True)
    text, entries = out.take()
    assert text == "x" and [e["token"] for e in entries] == ["<9>", "<10>"]


def test_the_end_of_generation_token_has_no_entry_and_without_logprobs_none_are_made():
    out = PendingOutput([], 0, _never)
    out.feed(_step([3, 1], "z", finish="stop", k=0))  # 1: the EOS vLLM stopped on
    out.finish(hit=False)
    text, entries = out.take()
    assert text == "z" and [(e["token"], e["top"]) for e in entries] == [("<3>", [])]
    out = PendingOutput([], 2, _never)
    out.feed(_step([4], "q", finish="length"))
    assert len(out.take()[1]) == 1  # "length": the last token is output
    plain = PendingOutput([], None, _never)
    plain.feed(_step([4], "q"))
    assert plain.take() == ("q", [])


def test_alternatives_are_the_top_k_by_rank_and_a_token_outside_them_is_not_one():
    out = PendingOutput([], 2, _never)
    out.feed(_step([30], "w"))  # rank 30: outside the top 2
    (e,) = out.take()[1]
    assert e["logprob"] == -3.0 and [a["token"] for a in e["top"]] == ["<1>", "<2>"]
    grammar = _step([1], "v")  # the grammar allowed one token: the others are -inf
    grammar.logprobs[0][2].logprob = -math.inf
    out.feed(grammar)
    (e,) = out.take()[1]
    assert [a["token"] for a in e["top"]] == ["<1>"]  # no -inf in JSON


# ---- the real engine -------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(log_dir):
    if not VllmEngine.is_installed():
        pytest.skip("vLLM is not installed (bash scripts/install_vllm.sh)")
    from tests.hf_gemma import build_gemma_folder
    from tests.integration.test_vllm import CACHE
    from xinference.model.llm.launch import plan_launch

    base = build_gemma_folder(plan_launch("gemma-3").resolve_weights(), CACHE)
    daemon = start_local(log_dir)
    try:
        r = requests.post(daemon.endpoint + "/v1/models", json={
            "model_name": "qwen2.5-instruct", "model_uid": UID, "model_format": "pytorch",
            "model_size_in_billions": "0_5", "model_engine": "vLLM", "model_path": base,
            "max_model_len": 1024, "max_num_seqs": 4, "kv_cache_space_gib": 1,
        }, timeout=600)
        assert r.status_code == 200, r.text
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.endpoint + "/v1", api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def tok(server):
    from tokenizers import Tokenizer

    from tests.integration.test_vllm import CACHE

    return Tokenizer.from_file(str(CACHE / "tokenizer.json"))


@pytest.fixture(scope="module")
def n_vocab(server):
    from tests.integration.test_vllm import CACHE

    return json.loads((CACHE / "config.json").read_text())["vocab_size"]


def _one_id(tok, text):
    ids = tok.encode(text, add_special_tokens=False).ids
    assert len(ids) == 1, (text, ids)
    return ids[0]


def _valid(call):
    assert call.type == "function" and call.id
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, SCHEMAS[call.function.name])
    return call.function.name, args


@needs_vllm
@pytest.mark.timeout(900)  # the first test waits for vLLM to start
@pytest.mark.parametrize("seed", range(3))
def test_required_always_gives_a_valid_call_of_a_declared_tool(client, seed):
    r = client.chat.completions.create(model=UID, messages=ASK, tools=TOOLS, tool_choice="required",
                                       temperature=1.0, seed=seed, max_tokens=200,
                                       parallel_tool_calls=False)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None and len(choice.message.tool_calls) == 1
    assert _valid(choice.message.tool_calls[0])[0] in SCHEMAS


@needs_vllm
@pytest.mark.timeout(300)
def test_a_named_function_is_the_one_called_streamed_or_not(client):
    named = {"type": "function", "function": {"name": "get_time"}}
    for seed in range(2):
        # one call: with parallel calls allowed a base model at temperature 1 may go on
        # writing calls until max_tokens
        r = client.chat.completions.create(model=UID, messages=ASK, tools=TOOLS, tool_choice=named,
                                           temperature=1.0, seed=seed, max_tokens=200,
                                           parallel_tool_calls=False)
        assert r.choices[0].finish_reason == "tool_calls", r.choices[0]
        calls = r.choices[0].message.tool_calls
        assert len(calls) == 1 and _valid(calls[0])[0] == "get_time"
    chunks = list(client.chat.completions.create(model=UID, messages=ASK, tools=TOOLS, tool_choice=named,
                                                 temperature=0, max_tokens=200, stream=True,
                                                 parallel_tool_calls=False))
    parts = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert parts[0].function.name == "get_time"
    jsonschema.validate(json.loads("".join(p.function.arguments or "" for p in parts)), SCHEMAS["get_time"])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def _check_entries(tokens, logprobs, tops, k):
    """One generated token's values: a log-probability, k alternatives, and at
    temperature 0 the chosen one is the likeliest (in a tie, the alternatives may list
    another one first, or only others)."""
    for token, lp, top in zip(tokens, logprobs, tops):
        assert lp <= 0 and len(top) == k
        assert lp == pytest.approx(max(top.values()), abs=1e-4)
        if token in top:
            assert top[token] == pytest.approx(lp, abs=1e-6)
        else:  # every listed alternative ties with the chosen token
            assert min(top.values()) == pytest.approx(lp, abs=1e-4)


@needs_vllm
@pytest.mark.timeout(300)
def test_chat_logprobs_one_entry_per_token_streamed_or_not(client):
    args = dict(model=UID, messages=[{"role": "user", "content": "Name a fruit."}], max_tokens=8,
                temperature=0, logprobs=True, top_logprobs=3, extra_body={"ignore_eos": True})
    whole = client.chat.completions.create(**args)
    content = whole.choices[0].logprobs.content
    # 8 tokens, or fewer if the base model wrote one of the family's stop strings
    assert 1 <= len(content) == whole.usage.completion_tokens <= 8
    _check_entries([t.token for t in content], [t.logprob for t in content],
                   [{a.token: a.logprob for a in t.top_logprobs} for t in content], 3)
    if whole.choices[0].finish_reason == "length":
        assert "".join(t.token for t in content) == whole.choices[0].message.content
    streamed = [t for c in client.chat.completions.create(stream=True, **args)
                if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in content]
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in content], abs=0.05)
    two = client.chat.completions.create(**{**args, "top_logprobs": 0, "max_tokens": 2})
    assert [len(t.top_logprobs) for t in two.choices[0].logprobs.content] == [0, 0]
    plain = client.chat.completions.create(**{**args, "logprobs": False, "top_logprobs": None})
    assert plain.choices[0].logprobs is None


@needs_vllm
@pytest.mark.timeout(300)
def test_completion_logprobs_follow_the_text_of_each_chunk(client):
    args = dict(model=UID, prompt=PROMPT, max_tokens=12, temperature=0, logprobs=2,
                extra_body={"ignore_eos": True})
    whole = client.completions.create(**args)
    lp = whole.choices[0].logprobs
    assert len(lp.tokens) == whole.usage.completion_tokens == 12
    assert "".join(lp.tokens) == whole.choices[0].text
    _check_entries(lp.tokens, lp.token_logprobs, lp.top_logprobs, 2)
    # streamed: no chunk's text comes before its tokens' entries, and all of them come
    # (a stop string that never matches makes the engine hold text back on the way)
    never = whole.choices[0].text.split()[3] + " never"
    text, tokens = "", ""
    for chunk in client.completions.create(stream=True, stop=[never], **args):
        if not chunk.choices:
            continue
        text += chunk.choices[0].text
        tokens += "".join(chunk.choices[0].logprobs.tokens if chunk.choices[0].logprobs else [])
        assert tokens.startswith(text)
    assert text == tokens == whole.choices[0].text


@needs_vllm
@pytest.mark.timeout(300)
def test_logit_bias_forces_and_bans_tokens(client, tok):
    greedy = client.completions.create(model=UID, prompt=PROMPT, max_tokens=1, temperature=0, logprobs=2)
    first = greedy.choices[0].logprobs
    top = sorted(first.top_logprobs[0].items(), key=lambda kv: -kv[1])
    banned = client.completions.create(model=UID, prompt=PROMPT, max_tokens=1, temperature=0,
                                       logit_bias={str(_one_id(tok, first.tokens[0])): -100})
    assert banned.choices[0].text != first.tokens[0]
    assert banned.choices[0].text == top[1][0]  # the runner-up
    forced = _one_id(tok, " banana")
    r = client.completions.create(model=UID, prompt=PROMPT, max_tokens=3, temperature=0,
                                  logit_bias={str(forced): 100}, extra_body={"ignore_eos": True})
    assert r.choices[0].text == " banana" * 3


@needs_vllm
@pytest.mark.timeout(120)
def test_a_token_outside_the_vocabulary_is_a_400(client, n_vocab):
    openai = pytest.importorskip("openai")
    inside = client.completions.create(model=UID, prompt=PROMPT, max_tokens=1, temperature=0,
                                       logit_bias={str(n_vocab - 1): 1})
    assert inside.choices[0].text
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=UID, prompt=PROMPT, max_tokens=1,
                                  logit_bias={str(n_vocab): 5})
    assert err.value.status_code == 400
    error = err.value.response.json()["error"]
    assert error["param"] == "logit_bias" and error["type"] == "invalid_request_error"
    assert str(n_vocab) in error["message"] and set(error) >= {"message", "type", "param", "code"}
