"""The lazy engine registry: engine name -> "module:Class".

Importing an engine module must stay cheap; heavy libraries load in `load()`.
"""

import importlib
from types import MappingProxyType
from typing import Mapping, Type

from ....errors import InvalidRequestError
from .base import LLMEngine

ENGINES: Mapping[str, str] = MappingProxyType({
    "llama.cpp": "xinference.model.llm.engines.llama_cpp.engine:LlamaCppEngine",
    "Transformers": "xinference.model.llm.engines.transformers.engine:TransformersEngine",
    "chatglm.cpp": "xinference.model.llm.engines.chatglm_cpp.engine:ChatglmCppEngine",
    "vLLM": "xinference.model.llm.engines.vllm.engine:VllmEngine",
})


def get_engine_class(name: str) -> Type[LLMEngine]:
    try:
        target = ENGINES[name]
    except KeyError:
        raise InvalidRequestError(
            f"Unknown engine {name!r}; available engines: {', '.join(ENGINES)}.",
            param="model_engine",
        ) from None
    module_name, cls_name = target.split(":")
    return getattr(importlib.import_module(module_name), cls_name)
