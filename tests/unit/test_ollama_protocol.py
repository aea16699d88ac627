"""The pure pieces of the Ollama API: names, option mapping, formats, NDJSON lines,
timing fields, model details, request validation."""

import json

import pytest
from pydantic import ValidationError

from xinference.api.protocol.ollama import (
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaModelRequest,
    OllamaOptions,
    done_reply,
    format_schema,
    model_details,
    model_entry,
    model_info,
    model_uid,
    ndjson,
    ollama_name,
    parameter_size,
    reply,
    sampling_params,
    timing_fields,
)
from xinference.types import SamplingParams

LLM_DESC = {"model_type": "LLM", "model_name": "gemma-3", "model_format": "ggufv2",
            "model_size_in_billions": "0_27", "quantization": "q4_k_m", "model_engine": "llama.cpp",
            "model_ability": ["generate", "chat"], "context_length": 2048, "created": 1700000000,
            "weights_bytes": 253113024}


def test_latest_tag_is_the_model_uid():
    assert model_uid("gemma:latest") == model_uid("gemma") == "gemma"
    assert model_uid("gemma:7b") == "gemma:7b"  # another tag is part of the uid
    assert ollama_name("gemma") == "gemma:latest" and ollama_name("gemma:7b") == "gemma:7b"


def test_options_map_to_sampling_params_with_ollamas_defaults():
    defaults = sampling_params(None)
    assert defaults == {"max_tokens": None, "temperature": 0.8, "top_p": 0.9, "top_k": 40,
                        "repetition_penalty": 1.1, "presence_penalty": 0.0, "frequency_penalty": 0.0,
                        "seed": None, "stop": []}
    given = sampling_params(OllamaOptions(num_predict=16, temperature=0, top_p=0.5, top_k=0,
                                          repeat_penalty=1.0, presence_penalty=0.5,
                                          frequency_penalty=0.25, seed=7, stop="\n",
                                          num_thread=4, mirostat=2))  # ignored
    assert given == {"max_tokens": 16, "temperature": 0, "top_p": 0.5, "top_k": 0,
                     "repetition_penalty": 1.0, "presence_penalty": 0.5, "frequency_penalty": 0.25,
                     "seed": 7, "stop": ["\n"]}
    SamplingParams.model_validate(given)  # what the replica does with them
    for endless in (-1, -2, 0):  # until the model stops / fill the context: our default cap
        assert sampling_params(OllamaOptions(num_predict=endless))["max_tokens"] is None
    assert sampling_params(OllamaOptions(seed=-1))["seed"] is None
    assert sampling_params(OllamaOptions(stop=["a", "b", "c", "d", "e"]))["stop"] == list("abcde")
    with pytest.raises(ValidationError):
        OllamaOptions(temperature=-0.1)


def test_format_is_json_or_a_schema():
    assert format_schema(None) is None and format_schema("") is None
    assert format_schema("json") == {"type": "object"}
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    assert format_schema(schema) is schema
    with pytest.raises(ValueError, match="format"):
        format_schema("xml")
    with pytest.raises(ValidationError, match="format"):
        OllamaChatRequest(model="m", format="yaml")


def test_ndjson_lines_are_one_object_each():
    line = ndjson({"response": "two\nlines \u4f60\u597d", "done": False})
    assert line.endswith("\n") and line.count("\n") == 1 and "\u4f60\u597d" in line
    assert json.loads(line) == {"response": "two\nlines \u4f60\u597d", "done": False}


def test_replies_and_the_done_object():
    chat = reply("chat", "gemma:latest", "Hi")
    assert chat["message"] == {"role": "assistant", "content": "Hi"} and chat["done"] is False
    assert chat["created_at"].endswith("Z") and "response" not in chat
    gen = done_reply("generate", "gemma", "", "length", {"eval_count": 3})
    assert gen["response"] == "" and gen["done"] is True and gen["done_reason"] == "length"
    assert gen["eval_count"] == 3 and "message" not in gen


def test_timing_fields_are_positive_integer_nanoseconds():
    t = timing_fields(started_ns=1_000, first_ns=51_000, last_ns=251_000, ended_ns=252_000,
                      prompt_tokens=13, completion_tokens=8)
    assert t == {"total_duration": 251_000, "load_duration": 0, "prompt_eval_count": 13,
                 "prompt_eval_duration": 50_000, "eval_count": 8, "eval_duration": 200_000}
    # one delta held the whole answer: no duration is 0 (clients divide by them)
    one = timing_fields(5, 10, 10, 10, 4, 1)
    assert one["eval_duration"] == 1 and all(isinstance(v, int) for v in one.values())


def test_model_details_entry_and_info():
    assert parameter_size("0_27") == "270M" and parameter_size(7) == "7B"
    assert parameter_size("1_8") == "1.8B" and parameter_size(None) == ""
    assert model_details(LLM_DESC) == {"parent_model": "", "format": "gguf", "family": "gemma-3",
                                       "families": ["gemma-3"], "parameter_size": "270M",
                                       "quantization_level": "Q4_K_M"}
    entry = model_entry("gemma", LLM_DESC)
    assert entry["name"] == entry["model"] == "gemma:latest" and entry["size"] == 253113024
    assert entry["modified_at"] == "2023-11-14T22:13:20Z" and len(entry["digest"]) == 64
    assert entry["digest"] != model_entry("other", LLM_DESC)["digest"]
    assert model_info(LLM_DESC)["gemma-3.context_length"] == 2048
    assert model_info(LLM_DESC)["general.parameter_count"] == 270_000_000
    pytorch = model_details({**LLM_DESC, "model_format": "pytorch", "quantization": "none"})
    assert pytorch["format"] == "safetensors" and pytorch["quantization_level"] == ""
    emb = {"model_type": "embedding", "model_name": "minilm", "dimensions": 384, "max_tokens": 256}
    assert model_info(emb) == {"general.architecture": "minilm", "general.basename": "minilm",
                               "minilm.context_length": 256, "minilm.embedding_length": 384}


def test_requests_refuse_what_would_be_silently_wrong():
    with pytest.raises(ValidationError, match="tools.0.function"):
        OllamaChatRequest(model="m", tools=[{"type": "function"}])  # a tool must name its function
    assert OllamaChatRequest(model="m", tools=[]).streaming  # Ollama streams by default
    for key in ("suffix", "template"):
        with pytest.raises(ValidationError, match=key):
            OllamaGenerateRequest(model="m", prompt="x", **{key: "y"})
    with pytest.raises(ValidationError, match="context"):
        OllamaGenerateRequest(model="m", prompt="x", context=[1, 2])
    assert OllamaModelRequest(name="old-client").model_name == "old-client"
    with pytest.raises(ValidationError, match="model is required"):
        OllamaModelRequest()
    req = OllamaChatRequest(model="m", think=False, keep_alive="0", stream=None)
    assert not req.wants_thinking and req.unloads and req.streaming
