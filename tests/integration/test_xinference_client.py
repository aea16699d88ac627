"""The `xinference-client` package (what Dify and LangChain use) against our server."""

import pytest

from tests.conftest import GEMMA_UID

xc = pytest.importorskip("xinference_client")


def test_xinference_client_package(api):
    client = xc.RESTfulClient(api)
    assert GEMMA_UID in client.list_models()
    desc = client.describe_model(GEMMA_UID)
    assert desc["model_type"] == "LLM" and "chat" in desc["model_ability"]
    model = client.get_model(GEMMA_UID)
    out = model.chat(
        messages=[{"role": "user", "content": "Say hi."}],
        generate_config={"max_tokens": 5, "temperature": 0},
    )
    assert out["choices"][0]["message"]["content"]
    chunks = list(model.chat(messages=[{"role": "user", "content": "Say hi."}],
                             generate_config={"max_tokens": 5, "temperature": 0, "stream": True}))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == out["choices"][0]["message"]["content"]
    gen = model.generate("Hello", generate_config={"max_tokens": 4})
    assert gen["choices"][0]["text"] is not None
    regs = client.list_model_registrations("LLM")
    assert any(r["model_name"] == "gemma-3" for r in regs)
    assert "llama.cpp" in client.query_engine_by_model_name("gemma-3")


def test_xinference_client_launch_and_terminate(api):
    """launch_model posts every key (most null) and n_gpu="auto": all accepted."""
    client = xc.RESTfulClient(api)
    uid = client.launch_model(model_name="gemma-3", model_engine="llama.cpp", model_uid="gemma-xc",
                              model_format="ggufv2", model_size_in_billions="0_27",
                              quantization="q4_k_m", n_ctx=512)
    try:
        assert uid == "gemma-xc"
        assert client.describe_model(uid)["context_length"] == 512
        progress = client.get_launch_model_progress(uid)
        assert progress["progress"] == 1.0
    finally:
        client.terminate_model(uid)
    assert uid not in client.list_models()
    with pytest.raises(RuntimeError, match="already running|gemma"):
        client.launch_model(model_name="gemma-3", model_uid=GEMMA_UID)
