"""Checks a launch request against the catalogue and the engine registry.

Pure and cheap: the supervisor runs it before it reserves anything, so a bad
request fails at once and leaves nothing behind.
"""

from typing import Any, Dict, List, Literal, Optional, Union

from ...errors import InvalidRequestError
from ...types import LoRASpec
from ..hub.request import HubFiles, WeightsRequest
from ..hub.source import check_hub, pick_hub
from ..launch_options import check_options
from ..memory import (
    MemoryNeed,
    catalogue_weights,
    disk_bytes,
    gguf_bits_per_weight,
    kv_bytes_per_token,
)
from ..model_type import Plan, ServedModel
from .engines import ENGINES, get_engine_class
from .family import LLMFamily, LLMSpec, get_family, match_spec

GGUF_FORMATS = ("ggufv2", "ggmlv3")


class LLMPlan(Plan):
    model_type: Literal["LLM"] = "LLM"
    family: LLMFamily
    spec: LLMSpec
    quantization: str
    # LoRA adapters loaded next to the base model (peft_model_config.lora_list).
    lora_list: List[LoRASpec] = []

    @classmethod
    def from_request(cls, model_name: str, **request: Any) -> "LLMPlan":
        return plan_launch(model_name, **request)

    @property
    def needs_remote_code(self) -> bool:
        """No LLM family declares that it runs code from its folder; a folder that does
        is refused when the engine loads it (remote_code.load_error)."""
        return False

    @property
    def model_version(self) -> str:
        spec = self.spec
        return f"{self.family.model_name}--{spec.size_str()}B-{spec.model_format}-{self.quantization}"

    def adapters(self) -> List[LoRASpec]:
        return self.lora_list

    def memory_need(self) -> MemoryNeed:
        """What one replica will hold, from the weights on this machine if they are
        here, else from the catalogue (then without the KV cache, whose size per token
        only the files say)."""
        path = self.weights_on_disk()
        if path:
            weights, per_token, basis = disk_bytes(path), kv_bytes_per_token(path), "disk"
        else:
            bits = gguf_bits_per_weight(self.quantization) if self.spec.model_format in GGUF_FORMATS else 16.0
            weights, per_token = catalogue_weights(self.spec.model_size_in_billions, bits), None
            basis = "catalogue"
        return get_engine_class(self.engine).memory_need(weights, per_token, self.engine_kwargs,
                                                        self.family, basis)

    def weights_request(self) -> WeightsRequest:
        spec, quant = self.spec, self.quantization
        sources = {
            hub: HubFiles(repo_id=src.model_id, revision=src.model_revision,
                          files=spec.source_files(hub, quant))
            for hub, src in spec.model_src.items()
            if src.quantizations is None or quant in src.quantizations
        }
        return WeightsRequest(
            model_version=self.model_version, model_name=self.family.model_name, model_type="LLM",
            model_format=spec.model_format, model_size_in_billions=spec.size_str(),
            quantization=quant, kind="file" if spec.model_format in GGUF_FORMATS else "folder",
            model_path=self.model_path, model_uri=spec.model_uri, sources=sources,
            file_hint=next(iter(spec.source_files("", quant) or []), None),
            embedded_package=spec.embedded_package, download_hub=self.download_hub)

    def interpreter(self) -> Optional[str]:
        """An engine in a virtualenv of its own names its Python; an engine this worker
        lacks fails the launch before any process starts."""
        engine = get_engine_class(self.engine)
        if not engine.is_installed():
            raise InvalidRequestError(
                f"Engine {self.engine} is not installed on this worker: `{engine.install_hint}`.",
                param="model_engine")
        return engine.interpreter()

    def create(self, path: str) -> ServedModel:
        """The engine the plan chose over `path`, under the family's prompt rules."""
        from .llm import LLM

        engine = get_engine_class(self.engine)(
            path, self.family, self.spec, self.quantization, int(self.n_gpu or 0),
            lora_list=self.lora_list, **self.engine_kwargs)
        return LLM(engine)

    def describe_fields(self) -> Dict[str, Any]:
        family, spec = self.family, self.spec
        return {
            "model_type": "LLM",
            "model_name": family.model_name,
            "model_lang": family.model_lang,
            "model_ability": family.model_ability,
            "model_description": family.model_description,
            "model_format": spec.model_format,
            "model_size_in_billions": spec.model_size_in_billions,
            "model_family": family.model_name,
            "quantization": self.quantization,
            "model_hub": self.download_hub or spec.model_hub,
            "model_version": self.model_version,
            "context_length": family.context_length,
            "model_engine": self.engine,
            "lora_adapters": [lora.model_dump() for lora in self.lora_list],
        }


def parse_lora_list(peft_model_config: Optional[Dict[str, Any]]) -> List[LoRASpec]:
    """`{"lora_list": [{"lora_name": ..., "local_path": ...}]}` as checked specs.

    Xinference clients also send image-LoRA keys (`image_lora_load_kwargs`, ...), which
    mean nothing to an LLM: they are accepted only when empty.
    """
    if not peft_model_config:
        return []
    if not isinstance(peft_model_config, dict):
        raise InvalidRequestError("peft_model_config must be an object.", param="peft_model_config")
    for key, value in peft_model_config.items():
        if key != "lora_list" and value:
            raise InvalidRequestError(
                f"peft_model_config.{key} is not supported for LLMs; give lora_list.",
                param="peft_model_config",
            )
    raw = peft_model_config.get("lora_list") or []
    if not isinstance(raw, list):
        raise InvalidRequestError("peft_model_config.lora_list must be a list.", param="peft_model_config")
    specs: List[LoRASpec] = []
    for i, item in enumerate(raw):
        try:
            specs.append(LoRASpec.model_validate(item))
        except ValueError:
            raise InvalidRequestError(
                f"peft_model_config.lora_list[{i}] must be "
                '{"lora_name": "...", "local_path": "..."}; got ' + repr(item) + ".",
                param="peft_model_config",
            ) from None
    names = [s.lora_name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidRequestError(
            f"LoRA names must be unique; repeated: {', '.join(dup)}.", param="peft_model_config"
        )
    return specs


def plan_launch(
    model_name: str,
    model_engine: Optional[str] = None,
    model_format: Optional[str] = None,
    model_size_in_billions: Union[int, float, str, None] = None,
    quantization: Optional[str] = None,
    model_path: Optional[str] = None,
    engine_kwargs: Optional[Dict[str, Any]] = None,
    n_gpu: Union[int, str, None] = 0,
    peft_model_config: Optional[Dict[str, Any]] = None,
    download_hub: Optional[str] = None,
    family: Optional[LLMFamily] = None,
) -> LLMPlan:
    """`family` is the registry's (a custom one); None: the builtin `model_name`."""
    family = family or get_family(model_name)

    def runnable(spec: LLMSpec, quant: str) -> bool:
        names = [model_engine] if model_engine is not None and model_engine in ENGINES else list(ENGINES)
        return any(get_engine_class(n).match(family, spec, quant) and get_engine_class(n).is_installed()
                   for n in names)

    spec, quant = match_spec(family, model_format, model_size_in_billions, quantization, runnable)
    hub = check_hub(download_hub)
    if hub and not model_path:
        pick_hub(spec.model_src, hub)  # 400 now when the spec has no such source
    lora_list = parse_lora_list(peft_model_config)
    # Without a named engine, installed engines come first (in registry order): a machine
    # with vLLM but no torch runs a pytorch spec on vLLM instead of failing on Transformers.
    engines = [model_engine] if model_engine else sorted(
        ENGINES, key=lambda n: not get_engine_class(n).is_installed())
    tried = []
    for name in engines:
        cls = get_engine_class(name)
        if cls.match(family, spec, quant) and (cls.supports_lora or not lora_list or model_engine):
            if lora_list and not cls.supports_lora:
                raise InvalidRequestError(
                    f"Engine {name} cannot load LoRA adapters; use an engine that can "
                    f"({', '.join(n for n in ENGINES if get_engine_class(n).supports_lora)}).",
                    param="peft_model_config",
                )
            if not cls.is_installed():
                hint = cls.install_hint or f"pip install 'xinference[{name.lower().replace('.', '_')}]'"
                raise InvalidRequestError(
                    f"Engine {name} is not installed on this machine: `{hint}`.",
                    param="model_engine",
                )
            options = check_options(f"Engine {name} does not take", engine_kwargs,
                                    cls.launch_options, {"context_length": family.context_length})
            return LLMPlan(
                family=family,
                spec=spec,
                quantization=quant,
                engine=name,
                model_path=model_path,
                engine_kwargs=options,
                n_gpu=n_gpu,
                lora_list=lora_list,
                download_hub=hub,
            )
        tried.append(name)
    ok = [e["engine"] for e in engine_params(family)]
    raise InvalidRequestError(
        f"Engine {', '.join(tried)} cannot run {family.model_name} in format "
        f"{spec.model_format} (size {spec.size_str()}, {quant}). "
        + (f"Engines that can run this model: {', '.join(sorted(set(ok)))}." if ok
           else "No installed engine can run this model yet."),
        param="model_engine",
        code="engine_mismatch",
    )


def engine_params(family: LLMFamily) -> List[Dict[str, Any]]:
    """Every (engine, format, size, quantizations) this catalogue can launch."""
    rows = []
    for name in ENGINES:
        cls = get_engine_class(name)
        for spec in family.model_specs:
            quants = [q for q in spec.quantizations if cls.match(family, spec, q)]
            if quants:
                rows.append(
                    {
                        "engine": name,
                        "model_name": family.model_name,
                        "model_format": spec.model_format,
                        "model_size_in_billions": spec.model_size_in_billions,
                        "quantizations": quants,
                        "llm_class": cls.__name__,
                    }
                )
    return rows
