import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: F401  (the renderer's engine)

from xinference.errors import InvalidRequestError
from xinference.model.llm.chat_template import render_chat
from xinference.model.llm.family import builtin_families, get_family, match_spec, normalize_size
from xinference.model.llm.launch import engine_params, plan_launch

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "again"},
]


def test_builtin_catalogue_has_the_required_families():
    names = set(builtin_families())
    assert {"gemma-3", "qwen1.5-chat", "chatglm2", "chatglm3", "llama-2-chat", "baichuan-2-chat",
            "vicuna-v1.3", "wizardlm-v1.0", "orca", "yi-chat", "qwen2.5-instruct", "qwen3",
            "llama-3.1-instruct", "gemma-3-it", "mistral-instruct-v0.3", "deepseek-r1-distill-qwen",
            "glm4-chat"} <= names


@pytest.mark.parametrize("name", sorted(builtin_families()))
def test_every_template_renders_the_conversation(name):
    fam = get_family(name)
    assert fam.context_length > 0 and fam.model_specs
    prompt = render_chat(fam.chat_template, CONVERSATION, bos_token=fam.bos_token)
    for text in ("hi", "hello", "again"):
        assert text in prompt
    for spec in fam.model_specs:
        assert spec.model_src, f"{name} {spec.model_format} has no hub"
        assert set(spec.model_src) <= {"huggingface", "modelscope"}
        for hub, src in spec.model_src.items():
            assert "/" in src.model_id, f"{name}: {src.model_id!r} is not a repo id"
            assert set(src.quantizations or spec.quantizations) <= set(spec.quantizations)
            if spec.model_format in ("ggufv2", "ggmlv3"):
                for quant in src.quantizations or spec.quantizations:
                    files = spec.source_files(hub, quant)
                    assert files and all(quant in f for f in files), (name, hub, quant, files)


def test_gemma_template_matches_gemma_format():
    fam = get_family("gemma-3")
    prompt = render_chat(fam.chat_template, CONVERSATION[1:], bos_token=fam.bos_token)
    assert prompt == (
        "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nhello<end_of_turn>\n"
        "<start_of_turn>user\nagain<end_of_turn>\n<start_of_turn>model\n"
    )
    with_system = render_chat(fam.chat_template, CONVERSATION[:2], bos_token=fam.bos_token)
    assert "<start_of_turn>user\nBe brief.\n\nhi" in with_system


def test_template_errors_are_400():
    fam = get_family("gemma-3")
    with pytest.raises(InvalidRequestError, match="alternate"):
        render_chat(fam.chat_template, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_unknown_name_suggests_close_ones():
    with pytest.raises(InvalidRequestError, match="gemma-3") as e:
        get_family("gemma3")
    assert e.value.status_code == 400


def test_match_spec_filters_and_reports_choices():
    fam = get_family("qwen1.5-chat")
    spec, quant = match_spec(fam, "ggufv2", 0.5, "Q4_K_M")
    assert spec.size_str() == "0_5" and quant == "q4_k_m"
    assert spec.file_name(quant) == "qwen1_5-0_5b-chat-q4_k_m.gguf"
    with pytest.raises(InvalidRequestError, match="Available"):
        match_spec(fam, "ggufv2", 3, None)
    assert normalize_size(7.0) == "7" and normalize_size("1.8") == "1_8"


def test_plan_launch_checks_engine_and_kwargs():
    plan = plan_launch("gemma-3", engine_kwargs={"n_ctx": 512})
    assert plan.engine == "llama.cpp" and plan.spec.model_format == "ggufv2"
    with pytest.raises(InvalidRequestError, match="cannot run"):
        plan_launch("gemma-3", model_engine="llama.cpp", model_format="pytorch")
    with pytest.raises(InvalidRequestError, match="does not take"):
        plan_launch("gemma-3", engine_kwargs={"bogus": 1})
    plan = plan_launch("gemma-3", model_format="pytorch")
    assert plan.engine == "Transformers"
    rows = engine_params(get_family("gemma-3"))
    by_engine = {(r["engine"], r["model_format"]) for r in rows}
    assert ("llama.cpp", "ggufv2") in by_engine and ("Transformers", "pytorch") in by_engine
    assert ("llama.cpp", "pytorch") not in by_engine


def test_lora_needs_an_engine_that_loads_adapters():
    lora = {"lora_list": [{"lora_name": "sql", "local_path": "/loras/sql"}]}
    plan = plan_launch("gemma-3", peft_model_config=lora)
    assert plan.engine == "Transformers" and [a.lora_name for a in plan.lora_list] == ["sql"]
    with pytest.raises(InvalidRequestError, match="cannot load LoRA"):
        plan_launch("gemma-3", model_engine="llama.cpp", peft_model_config=lora)
    twice = {"lora_list": [lora["lora_list"][0], lora["lora_list"][0]]}
    with pytest.raises(InvalidRequestError, match="unique"):
        plan_launch("gemma-3", peft_model_config=twice)
    with pytest.raises(InvalidRequestError, match="lora_list"):
        plan_launch("gemma-3", peft_model_config={"lora_list": [{"lora_name": "x"}]})
    with pytest.raises(InvalidRequestError, match="not supported"):
        plan_launch("gemma-3", peft_model_config={"image_lora_load_kwargs": {"a": 1}})


def test_model_templates_get_the_hugging_face_extras():
    template = ("{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
                "{{ m.content | tojson }}{% if loop.index > 2 %}{% break %}{% endif %}{% endfor %}")
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "你好"},
                {"role": "assistant", "content": "<b>"}, {"role": "user", "content": "never"}]
    assert render_chat(template, messages) == '"你好""<b>"'


def test_a_launch_by_name_alone_takes_a_spec_this_machine_can_run(monkeypatch):
    from xinference.model.llm.engines import get_engine_class

    pytest.importorskip("llama_cpp")
    plan = plan_launch("qwen2.5-instruct", model_engine="llama.cpp")
    assert (plan.spec.model_format, plan.spec.size_str(), plan.quantization) == ("ggufv2", "0_5", "q4_k_m")
    # no torch and no vLLM on this machine: the name alone launches the GGUF spec with llama.cpp
    for engine in ("Transformers", "vLLM"):
        monkeypatch.setattr(get_engine_class(engine), "is_installed", classmethod(lambda cls: False))
    plan = plan_launch("qwen2.5-instruct")
    assert plan.engine == "llama.cpp" and plan.spec.model_format == "ggufv2"
    assert plan.weights_request().sources["huggingface"].files == ["qwen2.5-0.5b-instruct-q4_k_m.gguf"]
    assert plan.model_version == "qwen2.5-instruct--0_5B-ggufv2-q4_k_m"
