"""n choices, lists of prompts and best_of through the real server and the `openai` SDK,
on the embedded Gemma (llama.cpp): OpenAI's shapes, streamed and not, and the usage."""

import pytest
import requests

pytest.importorskip("openai")

ASK = [{"role": "user", "content": "Name a fruit."}]


def _streamed(chunks):
    texts, reasons, usage = {}, {}, None
    for c in chunks:
        if c.usage is not None:
            usage = c.usage
        for ch in c.choices:
            piece = ch.delta.content if hasattr(ch, "delta") else ch.text
            texts[ch.index] = texts.get(ch.index, "") + (piece or "")
            if ch.finish_reason:
                reasons[ch.index] = ch.finish_reason
    return texts, reasons, usage


def test_chat_n_gives_n_choices_streamed_or_not_with_the_prompt_counted_once(openai_client):
    args = dict(model="gemma", messages=ASK, max_tokens=8, temperature=1.0, seed=7, n=3)
    whole = openai_client.chat.completions.create(**args)
    assert [c.index for c in whole.choices] == [0, 1, 2]
    texts = [c.message.content for c in whole.choices]
    assert len(set(texts)) > 1  # sampled on their own (exact equalities: tests/unit/test_choices.py)
    one = openai_client.chat.completions.create(model="gemma", messages=ASK, max_tokens=8, temperature=1.0, seed=7)
    assert whole.usage.prompt_tokens == one.usage.prompt_tokens
    assert whole.usage.completion_tokens > one.usage.completion_tokens
    streamed, reasons, usage = _streamed(openai_client.chat.completions.create(
        stream=True, stream_options={"include_usage": True}, **args))
    assert sorted(streamed) == [0, 1, 2] and all(streamed.values())
    assert sorted(reasons) == [0, 1, 2]
    assert 3 <= usage.completion_tokens <= 3 * 8
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_a_list_of_prompts_gets_n_choices_each_in_order(openai_client):
    prompts = ["The capital of France is", "Two plus two equals"]
    r = openai_client.completions.create(model="gemma", prompt=prompts, max_tokens=6, temperature=0, n=2, echo=True)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    texts = [c.text for c in r.choices]
    # greedy: a prompt's two choices agree (they share its KV and batch), and each
    # echoes its own prompt
    assert texts[0] == texts[1] and texts[2] == texts[3]
    assert texts[0].startswith(prompts[0]) and texts[2].startswith(prompts[1])
    assert texts[0] != prompts[0] and texts[2] != prompts[1]
    streamed, reasons, _ = _streamed(openai_client.completions.create(
        model="gemma", prompt=prompts, max_tokens=6, temperature=0, n=2, stream=True))
    assert sorted(streamed) == [0, 1, 2, 3] and sorted(reasons) == [0, 1, 2, 3]
    assert streamed[0] == streamed[1] and streamed[2] == streamed[3] and streamed[0] != streamed[2]
    counted = openai_client.completions.create(model="gemma", prompt=prompts, max_tokens=6, temperature=0)
    each = [openai_client.completions.create(model="gemma", prompt=p, max_tokens=1).usage.prompt_tokens for p in prompts]
    assert counted.usage.prompt_tokens == sum(each)


def test_best_of_answers_n_and_counts_every_generated_token(openai_client):
    r = openai_client.completions.create(model="gemma", prompt="Once upon a time", max_tokens=5, temperature=1.0,
                                  seed=1, best_of=3, extra_body={"ignore_eos": True})
    assert len(r.choices) == 1 and r.choices[0].index == 0 and r.choices[0].logprobs is None
    assert r.usage.completion_tokens == 3 * 5
    with_lp = openai_client.completions.create(model="gemma", prompt="Once upon a time", max_tokens=5, temperature=1.0,
                                        seed=1, best_of=3, n=2, logprobs=1, extra_body={"ignore_eos": True})
    means = [sum(c.logprobs.token_logprobs) / len(c.logprobs.token_logprobs) for c in with_lp.choices]
    assert [c.index for c in with_lp.choices] == [0, 1] and means[0] >= means[1]


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x", "n": 3, "best_of": 2}, "best_of"),
    ({"prompt": "x", "best_of": 2, "stream": True}, "best_of"),
    ({"prompt": "x", "n": 129}, "n"),
    ({"prompt": [], "n": 1}, "prompt"),
    ({"prompt": ["x"] * 65, "n": 2}, None),
    ({"prompt": ["x", 3]}, "prompt"),
])
def test_bad_choice_requests_are_400s(api, body, param):
    r = requests.post(f"{api}/v1/completions", json={"model": "gemma", "max_tokens": 2, **body}, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    if param is not None:
        assert err["param"] == param, err


def test_the_xinference_client_asks_for_n(api):
    from xinference.client import Client

    model = Client(api).get_model("gemma")
    out = model.chat(messages=ASK, generate_config={"n": 2, "max_tokens": 4, "temperature": 0})
    assert [c["index"] for c in out["choices"]] == [0, 1]
    assert out["choices"][0]["message"]["content"] == out["choices"][1]["message"]["content"]
