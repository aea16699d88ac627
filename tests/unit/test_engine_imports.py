"""Importing an engine module, the model actor or the worker loads no engine library:
the worker, the supervisor and the REST server import them to read their options, and
must stay small and quick to start; the libraries load when a model does."""

import pkgutil
import subprocess
import sys

import xinference.model.llm.engines as engines

ENGINE_LIBRARIES = ("torch", "llama_cpp", "transformers", "vllm", "sentence_transformers", "chatglm_cpp",
                    "llguidance")
# Modules only an engine's load() imports (after the library it needs): they may import it.
LOAD_PATH_ONLY = (
    "xinference.model.llm.engines.transformers.scheduler",
    "xinference.model.llm.engines.transformers.sampling",
    "xinference.model.llm.engines.transformers.slot_cache",
    "xinference.model.llm.engines.transformers.lora",
)
OTHER_MODULES = (
    "xinference.model.embedding.model",
    "xinference.model.rerank.model",
    "xinference.core.model_actor",
    "xinference.core.worker",
    "xinference.api.app",
    "xinference.deploy.cli",
)


def engine_modules():
    """Every module and package under model/llm/engines, engine sub-packages included."""
    return sorted(m.name for m in pkgutil.walk_packages(engines.__path__, engines.__name__ + "."))


def test_the_walk_finds_every_engine_and_every_load_path_module():
    found = engine_modules()
    for target in engines.ENGINES.values():
        assert target.split(":")[0] in found
    assert set(LOAD_PATH_ONLY) <= set(found)


def test_no_engine_library_is_imported_before_a_model_loads():
    modules = [m for m in engine_modules() if m not in LOAD_PATH_ONLY] + list(OTHER_MODULES)
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + f"print(','.join(m for m in {ENGINE_LIBRARIES!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"imported at module import: {out.stdout.strip()}"
