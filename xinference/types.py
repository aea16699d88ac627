"""Plain data shapes shared by engines, actors and the REST layer."""

from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, Field


class SamplingParams(BaseModel):
    """What an engine needs to generate; validated once in the REST layer."""

    max_tokens: Optional[int] = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: Optional[int] = None
    stop: List[str] = Field(default_factory=list)
    stop_token_ids: List[int] = Field(default_factory=list)
    # Never end at an end-of-generation token (benchmarks, fixed-length runs).
    ignore_eos: bool = False
    # The LoRA adapter to generate with (a name given at launch); None: the base model.
    lora_name: Optional[str] = None
    # Constrain the output to JSON matching this schema ({"type": "object"}: any JSON
    # object). Only engines with `supports_grammar` can; the others answer 400.
    json_schema: Optional[Dict[str, Any]] = None
    # The same constraint as a GBNF grammar (rule "root"): what the llama.cpp engine
    # turns json_schema into before its sampler sees the request.
    grammar: Optional[str] = None


FinishReason = Literal["stop", "length"]


class GenerationDelta(BaseModel):
    """One step of a generation: new text, and on the last step why it ended."""

    text: str = ""
    finish_reason: Optional[FinishReason] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Prompt tokens whose KV state was reused from an earlier request.
    cached_tokens: int = 0


class LoRASpec(BaseModel):
    """One LoRA adapter given at launch: the name requests use, and its folder."""

    lora_name: str = Field(min_length=1)
    local_path: str = Field(min_length=1)


ModelDescription = Dict[str, Any]
