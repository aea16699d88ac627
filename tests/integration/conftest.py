"""Fixtures of the tests that run real engines in process."""

import ctypes

import pytest


@pytest.fixture(scope="session")
def f32_path(tmp_path_factory):
    """The embedded Gemma dequantized to F32 by llama.cpp's own quantizer (~10 s, 1 GB).

    Quantized kernels quantize activations to 8 bits and pick kernels by batch size,
    so two ways of evaluating the same tokens (alone or in a batch, a cold prompt or a
    reused prefix) can differ in a Q4 model's logits; in F32 they agree to ~1e-5, and
    any difference in text is a real bug.
    """
    llama_cpp = pytest.importorskip("llama_cpp")
    from xinference.model.llm.launch import plan_launch

    plan = plan_launch("gemma-3")
    q4 = plan.resolve_weights()
    out = str(tmp_path_factory.mktemp("f32") / "gemma-f32.gguf")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 0  # LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    assert llama_cpp.llama_model_quantize(q4.encode(), out.encode(), ctypes.byref(params)) == 0
    return out


@pytest.fixture
def openai_client(api):
    """The `openai` SDK on the session's server (`api`), without retries."""
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{api}/v1", api_key="none", max_retries=0)
