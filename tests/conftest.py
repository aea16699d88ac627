import os
import tempfile

# xoscar reads XOSCAR_DIR when it is imported: keep its sockets out of ~/.xoscar.
# The daemons the tests start inherit both variables.
os.environ.setdefault("XOSCAR_DIR", tempfile.mkdtemp(prefix="xo-tests-"))
os.environ.setdefault("XINFERENCE_HOME", tempfile.mkdtemp(prefix="xinference-home-"))
# No test reaches a real hub: a launch that would download meets a closed port on
# loopback and fails at once (tests of downloads point these at a fake hub).
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["MODELSCOPE_ENDPOINT"] = "http://127.0.0.1:9"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import requests  # noqa: E402

from tests.servers import start_local  # noqa: E402

GEMMA_UID = "gemma"


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("daemons"))


@pytest.fixture(scope="session")
def local(log_dir):
    """One real xinference-local with the embedded Gemma launched as `gemma`."""
    daemon = start_local(log_dir, ui=True)  # the web UI tests use it too
    try:
        r = requests.post(
            daemon.endpoint + "/v1/models",
            json={"model_name": "gemma-3", "model_uid": GEMMA_UID, "n_ctx": 2048},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        yield daemon
    finally:
        code = daemon.stop()
    assert code == 0, f"xinference-local did not exit cleanly:\n{daemon.log()[-3000:]}"


@pytest.fixture
def api(local):
    return local.endpoint


# Tiny random-weight HF models (tests/tiny_models.py), built once per session.
# The heavy imports happen only when a test asks for one of these.


def _need_hf(*extra):
    for name in ("torch", "transformers", *extra):
        pytest.importorskip(name)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    _need_hf()
    from tests.tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory):
    _need_hf()
    from tests.tiny_models import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


def _lora(tmp_path_factory, base_dir, name, seed):
    _need_hf("peft")
    from tests.tiny_models import build_lora

    return build_lora(base_dir, tmp_path_factory.mktemp(name), seed)


@pytest.fixture(scope="session")
def tiny_lora_a(tmp_path_factory, tiny_llama):
    return _lora(tmp_path_factory, tiny_llama, "tiny-lora-a", 1)


@pytest.fixture(scope="session")
def tiny_lora_b(tmp_path_factory, tiny_llama):
    return _lora(tmp_path_factory, tiny_llama, "tiny-lora-b", 2)


@pytest.fixture(scope="session")
def tiny_qwen2_lora(tmp_path_factory, tiny_qwen2):
    return _lora(tmp_path_factory, tiny_qwen2, "tiny-qwen2-lora", 3)


@pytest.fixture(scope="session")
def tiny_llama_gguf(tmp_path_factory, tiny_llama):
    """tiny_llama as an F32 GGUF file (tests/tiny_gguf.py); returns the file's path."""
    _need_hf("gguf")
    from tests.tiny_gguf import build_tiny_llama_gguf

    out_dir = tmp_path_factory.mktemp("tiny-llama-gguf")
    return build_tiny_llama_gguf(tiny_llama, out_dir / "tiny-llama-F32.gguf")


@pytest.fixture(scope="session")
def tiny_qwen_template_gguf(tmp_path_factory, tiny_llama):
    """tiny_llama as a GGUF that carries Qwen2.5's chat template, which declares tools and
    teaches the Hermes call format: a tool-capable model whose calls only a grammar makes."""
    _need_hf("gguf")
    from tests.tiny_gguf import build_tiny_llama_gguf
    from xinference.model.llm.family import builtin_families

    template = builtin_families()["qwen2.5-instruct"].chat_template
    out_dir = tmp_path_factory.mktemp("tiny-qwen-template-gguf")
    return build_tiny_llama_gguf(tiny_llama, out_dir / "tiny-tools-F32.gguf", chat_template=template)
