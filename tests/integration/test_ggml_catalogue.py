"""A catalogue ggmlv3 LLaMA model launched by name from a (fake) Hugging Face hub: the worker
downloads the GGJT v3 file, the replica converts it to GGUF once, and llama.cpp serves it.

The hub serves a tiny random-weight GGJT v3 LLaMA (tests/tiny_ggml.py) under the repo and
file name the catalogue gives orca 3B q4_0.
"""

import json
import os

import pytest
import requests

from tests.fake_hub import FakeHub
from tests.servers import start_local
from tests.tiny_ggml import write_tiny_ggml

xc = pytest.importorskip("xinference_client")
openai = pytest.importorskip("openai")
pytest.importorskip("llama_cpp")

FAMILY_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "xinference", "model", "llm",
                           "llm_family.json")


def orca_3b_q4_0():
    """(repo, file name) of orca 3B q4_0 as the catalogue says."""
    with open(FAMILY_FILE) as f:
        family = next(m for m in json.load(f) if m["model_name"] == "orca")
    spec = next(s for s in family["model_specs"]
                if s["model_format"] == "ggmlv3" and s["model_size_in_billions"] == 3)
    return spec["model_id"], spec["model_file_name_template"].format(quantization="q4_0")


@pytest.mark.timeout(120)
def test_orca_ggmlv3_launches_by_name_and_chats(log_dir, tmp_path):
    repo, name = orca_3b_q4_0()
    assert (repo, name) == ("TheBloke/orca_mini_3B-GGML", "orca-mini-3b.ggmlv3.q4_0.bin")
    tiny = write_tiny_ggml(str(tmp_path / name), "q4_0")
    home = tmp_path / "home"
    with FakeHub() as hub:
        hub.add_repo(repo, {name: tiny})
        daemon = start_local(log_dir, {**hub.env, "XINFERENCE_HOME": str(home)})
        try:
            client = xc.RESTfulClient(daemon.endpoint)
            assert "llama.cpp" in client.query_engine_by_model_name("orca")
            uid = client.launch_model(model_name="orca", model_format="ggmlv3",
                                      model_size_in_billions=3, quantization="q4_0", n_ctx=256)
            assert client.describe_model(uid)["model_engine"] == "llama.cpp"
            assert hub.bytes_served(repo, name) == os.path.getsize(tiny)
            api = openai.OpenAI(base_url=daemon.endpoint + "/v1", api_key="none")
            out = api.chat.completions.create(
                model=uid, messages=[{"role": "user", "content": "hello world"}],
                max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
            assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 8
            assert out.usage.prompt_tokens > 10  # orca's system prompt came from the family
            # the GGUF sits beside the download, in the cache entry
            entry = home / "cache" / "orca--3B-ggmlv3-q4_0"
            assert (entry / (name + ".gguf")).is_file()
            client.terminate_model(uid)
            r = requests.get(daemon.endpoint + f"/v1/models/{uid}", timeout=10)
            assert r.status_code == 404
        finally:
            code = daemon.stop()
    assert code == 0, daemon.log()[-3000:]
