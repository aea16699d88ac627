"""Prefix-aware routing (api/prefix_affinity.py): each turn of a conversation goes to
the replica that served the previous one, where its history is cached; other
conversations still spread over the replicas; a much busier replica loses its claim."""

import json

import pytest

from tests.unit.fake_cluster import running_stack
from xinference.api.prefix_affinity import BLOCK_CHARS, PrefixAffinity, prefix_keys, prompt_text


@pytest.fixture
async def stack():
    async with running_stack() as s:
        r = await s.http.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "m", "replica": 2})
        assert r.status_code == 200, r.text
        yield s


async def _served_by(stack, messages, stream=False):
    r = await stack.http.post("/v1/chat/completions", json={"model": "m", "messages": messages, "stream": stream})
    assert r.status_code == 200, r.text
    if stream:
        chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).split(":")[0]
    return r.json()["choices"][0]["message"]["content"].split(":")[0]


def _conversation(name, turns):
    history = [{"role": "system", "content": f"You are the assistant of {name}. " * 3}]
    for i in range(turns):
        history = history + [{"role": "user", "content": f"question {i} from {name}"}]
        yield list(history)
        history.append({"role": "assistant", "content": f"answer {i} to {name}"})


async def test_every_turn_of_a_conversation_goes_to_the_replica_that_holds_it(stack):
    for name in ("ann", "bob", "cy", "dee"):
        replicas = [await _served_by(stack, msgs, stream=bool(i % 2)) for i, msgs in enumerate(_conversation(name, 5))]
        assert len(set(replicas)) == 1, (name, replicas)
    # new conversations (no known prefix) still go round-robin over idle replicas
    firsts = [await _served_by(stack, next(_conversation(f"new{i}", 1))) for i in range(4)]
    assert set(firsts) == {"m-0", "m-1"}


def test_keys_name_prefixes_and_the_longest_known_one_wins():
    text = "x" * (BLOCK_CHARS * 3 + 5)
    keys = prefix_keys(text)
    assert len(keys) == 3 and prefix_keys(text[: BLOCK_CHARS * 2]) == keys[:2]
    assert prefix_keys("y" + text[1:])[0] != keys[0]
    affinity = PrefixAffinity(max_entries=4)
    affinity.remember("m", keys[:1], "m-0")
    affinity.remember("m", keys[:2], "m-1")
    assert affinity.lookup("m", keys) == "m-1" and affinity.lookup("other", keys) is None
    affinity.remember("m", prefix_keys("z" * BLOCK_CHARS * 3), "m-0")  # the oldest entries go
    assert affinity.lookup("m", keys[:1]) is None
    assert prompt_text("chat", [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]).startswith("user")


async def test_a_much_busier_replica_loses_its_claim(stack):
    router = stack.app.state.replicas
    messages = next(_conversation("eve", 1))
    held = await _served_by(stack, messages)
    route, _ = await router._route("m")
    busy = next(r for r in route.replicas if r.replica_uid == held)
    busy.inflight += 3  # three requests more than the other replica
    try:
        assert await _served_by(stack, messages) != held
    finally:
        busy.inflight -= 3
    assert await _served_by(stack, messages) != held, "the conversation now lives on the other replica"
