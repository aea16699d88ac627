"""Importing an engine module, the model actor or the worker loads no engine library:
the worker, the supervisor and the REST server import them to read their options, and
must stay small and quick to start; the libraries load when a model does."""

import subprocess
import sys

ENGINE_LIBRARIES = ("torch", "llama_cpp", "transformers", "vllm", "sentence_transformers", "chatglm_cpp",
                    "llguidance")
MODULES = (
    "xinference.model.llm.engines.llama_cpp",
    "xinference.model.llm.engines.transformers_engine",
    "xinference.model.llm.engines.vllm_engine",
    "xinference.model.llm.engines.chatglm_cpp",
    "xinference.model.embedding.model",
    "xinference.model.rerank.model",
    "xinference.core.model_actor",
    "xinference.core.worker",
    "xinference.api.app",
    "xinference.deploy.cli",
)


def test_no_engine_library_is_imported_before_a_model_loads():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in MODULES)
            + f"print(','.join(m for m in {ENGINE_LIBRARIES!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"imported at module import: {out.stdout.strip()}"
