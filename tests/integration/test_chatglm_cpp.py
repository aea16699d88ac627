"""The catalogue's chatglm3 GGML spec, launched by name on a real xinference-local: the
weights come from a fake Hugging Face hub on 127.0.0.1 (a tiny random ChatGLM3 under the
catalogue's repo and file name) and the chatglm.cpp engine serves them over the OpenAI
and Ollama APIs."""

import pytest
import requests

from tests.fake_hub import FakeHub
from tests.servers import start_local
from tests.tiny_chatglm import build_tiny_chatglm

pytest.importorskip("chatglm_cpp")
pytest.importorskip("sentencepiece")
openai = pytest.importorskip("openai")
ollama = pytest.importorskip("ollama")

REPO = "Xorbits/chatglm3-6B-GGML"
FILE = "chatglm3-ggml-q4_0.bin"


@pytest.fixture(scope="module")
def server(log_dir, tmp_path_factory):
    model = build_tiny_chatglm(tmp_path_factory.mktemp("glm"), "chatglm3")
    with FakeHub() as hub:
        hub.add_repo(REPO, {FILE: str(model)})
        home = tmp_path_factory.mktemp("glm-home")
        daemon = start_local(log_dir, {**hub.env, "XINFERENCE_HOME": str(home)})
        try:
            yield daemon
        finally:
            daemon.stop()


@pytest.mark.timeout(180)
def test_chatglm3_by_name_serves_openai_and_ollama_chats(server):
    r = requests.post(server.endpoint + "/v1/models",
                      json={"model_name": "chatglm3", "model_uid": "glm"}, timeout=120)
    assert r.status_code == 200, r.text
    desc = requests.get(server.endpoint + "/v1/models/glm", timeout=10).json()
    assert (desc["model_engine"], desc["model_format"], desc["quantization"]) == ("chatglm.cpp", "ggmlv3", "q4_0")
    assert desc["slots_total"] == 1 and desc["batching"] is False

    client = openai.OpenAI(base_url=server.endpoint + "/v1", api_key="x")
    messages = [{"role": "system", "content": "be terse"}, {"role": "user", "content": "hello"}]
    full = client.chat.completions.create(model="glm", messages=messages, max_tokens=8,
                                          temperature=0, extra_body={"ignore_eos": True})
    assert full.choices[0].finish_reason == "length" and full.usage.completion_tokens == 8
    streamed = client.chat.completions.create(model="glm", messages=messages, max_tokens=8,
                                              temperature=0, stream=True,
                                              extra_body={"ignore_eos": True})
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == full.choices[0].message.content

    answer = ollama.Client(host=server.endpoint).chat(
        model="glm", messages=messages, options={"num_predict": 4, "temperature": 0})
    assert answer["done"] and answer["eval_count"] <= 4

    # what its sampler cannot honour is a 400 in the OpenAI error shape
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="glm", messages=messages, max_tokens=4, seed=7)
    assert e.value.body["param"] == "seed"
    # and the replica still answers
    again = client.chat.completions.create(model="glm", messages=messages, max_tokens=2)
    assert again.usage.completion_tokens >= 1
