"""The web UI's logic without a browser: texts, stream figures, readable errors, the
launch form's choices, one streamed reply against a fake client, and the mount."""

import itertools
import json
import re
from pathlib import Path

import pytest
import requests

from xinference.client import ChatModelHandle
from xinference.client.common import APIError
from xinference.web.i18n import LANGUAGES, Translator, load_locale, pick_language
from xinference.web.launch_options import (
    RUNNING_COLUMNS,
    chat_models,
    engine_choices,
    first,
    format_choices,
    launch_progress_bar,
    parse_engine_kwargs,
    quantization_choices,
    running_rows,
    size_choices,
    size_value,
)
from xinference.web.replies import stream_reply
from xinference.web.streams import (
    StreamStats,
    chunk_text,
    content_text,
    follow,
    format_stats,
    readable_error,
    to_messages,
)

WEB = Path(__file__).resolve().parents[2] / "xinference" / "web"
T = Translator("en")


def _chunk(text=None, usage=None, finish=None):
    choices = [] if text is None else [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]
    out = {"object": "chat.completion.chunk", "choices": choices}
    if usage is not None:
        out["usage"] = {"prompt_tokens": 3, "completion_tokens": usage, "total_tokens": 3 + usage}
    return out


def _clock(*times):
    it = iter(times)
    return lambda: next(it)


# ---- texts -------------------------------------------------------------------


def test_locales_have_the_same_keys_and_placeholders():
    en, zh = load_locale("en"), load_locale("zh-CN")
    assert en.keys() == zh.keys()
    for key in en:
        assert set(re.findall(r"{(\w+)}", en[key])) == set(re.findall(r"{(\w+)}", zh[key])), key
    assert set(LANGUAGES) == {p.stem for p in (WEB / "locales").glob("*.json")}


def test_every_key_the_code_uses_exists():
    keys = set()
    for path in WEB.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        keys |= set(re.findall(r'\bt\("([a-z_]+\.[a-z_.]+)"', source))
        keys |= set(re.findall(r'"(?:label|value|placeholder|info)": "([a-z_]+\.[a-z_]+)"', source))
    keys |= {f"running.{column}" for column in RUNNING_COLUMNS}  # built as f"running.{column}"
    assert len(keys) > 40
    missing = keys - set(load_locale("en"))
    assert not missing


@pytest.mark.parametrize("header,lang", [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
    ("en-US,en;q=0.9", "en"),
    ("fr-FR,zh-TW;q=0.8,en;q=0.5", "zh-CN"),
    ("en;q=0.4,zh;q=0.9", "zh-CN"),
    ("de-DE", "en"),
    ("", "en"),
    (None, "en"),
    ("zh;q=bogus,en", "en"),
])
def test_pick_language(header, lang):
    assert pick_language(header) == lang


def test_translator_falls_back_to_english_then_to_the_key():
    assert Translator("zh-CN")("tab.chat") == "聊天"
    assert Translator("xx")("tab.chat") == "Chat"
    assert Translator("en")("no.such.key") == "no.such.key"
    assert Translator("en")("launch.ready", uid="m1") == "✓ **m1** is running."


# ---- streams -----------------------------------------------------------------


def test_stats_ttft_and_decode_speed():
    s = StreamStats(start=10.0, first_token=10.5, last_token=12.5, pieces=5)
    assert s.ttft == pytest.approx(0.5)
    assert s.tokens == 5
    assert s.tokens_per_second == pytest.approx(2.0)  # 4 tokens after the first, in 2 s
    s.usage_tokens = 9
    assert s.tokens_per_second == pytest.approx(4.0)


@pytest.mark.parametrize("stats", [
    StreamStats(start=0.0),
    StreamStats(start=0.0, first_token=1.0, last_token=1.0, pieces=1),
    StreamStats(start=0.0, first_token=1.0, last_token=1.0, pieces=3),
])
def test_stats_without_a_speed(stats):
    assert stats.tokens_per_second is None
    line = format_stats(stats, T)
    assert "—" in line and "tokens/s" in line


def test_follow_accumulates_text_and_times_it():
    chunks = [
        {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
        _chunk("Hel"), _chunk("lo"), _chunk(" world", finish="length"), _chunk(usage=4),
    ]
    clock = _clock(1.0, 1.5, 2.0, 2.1)
    seen = list(follow(chunks, clock, start=0.0))
    assert [text for text, _ in seen] == ["Hel", "Hello", "Hello world", "Hello world"]
    stats = seen[-1][1]
    assert stats.end == 2.1 and stats.ttft == 1.0
    assert stats.tokens == 4  # the server's count, not the 3 pieces
    assert stats.tokens_per_second == pytest.approx(3 / 1.0)
    assert format_stats(stats, T) == "**3.0** tokens/s · first token after **1.00 s** · 4 tokens"


def test_follow_an_empty_stream_ends_once():
    seen = list(follow([], _clock(0.0, 1.0)))
    assert len(seen) == 1 and seen[0][0] == "" and seen[0][1].ttft is None


def test_chunk_text_of_chat_and_completion_chunks():
    assert chunk_text(_chunk("a")) == "a"
    assert chunk_text({"choices": [{"text": "b"}]}) == "b"
    assert chunk_text({"choices": [{"delta": {"content": None}}]}) == ""
    assert chunk_text({"choices": []}) == ""


def test_history_to_messages_reads_gradio_6_parts():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
        {"role": "system", "content": "ignored: the system prompt comes from its own field"},
    ]
    assert to_messages(history, "Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "AB"},
    ]
    assert to_messages([], "   ") == []
    assert content_text({"text": "x"}) == "x" and content_text(None) == ""


@pytest.mark.parametrize("exc,expected", [
    (APIError("x", 404, "Model not found in the model list, uid: m1."),
     "That model is not running (any more): Model not found in the model list, uid: m1. Refresh"),
    (APIError("x", 429, "Too many requests queued"), "The model is busy"),
    (APIError("x", 503, "Model m1 is still loading; retry shortly."), "cannot answer right now: Model m1"),
    (APIError("x", 400, "max_tokens must be positive"), "refused the request: max_tokens must be positive."),
    (APIError("x", 500, "boom"), "The server failed: boom."),
    (requests.ConnectionError("refused"), "Cannot reach the Xinference server at http://h:1"),
    (requests.ReadTimeout("slow"), "did not answer in time"),
    (ValueError("'x' is not key=value"), "Please check the form: 'x' is not key=value."),
    (RuntimeError("engine crashed"), "The answer stopped: engine crashed."),
    (KeyError("k"), "Something went wrong (KeyError)"),
])
def test_readable_errors(exc, expected):
    text = readable_error(exc, T, "http://h:1")
    assert expected in text
    assert "Traceback" not in text and ".." not in text


def test_readable_errors_in_chinese():
    text = readable_error(APIError("x", 404, "gone"), Translator("zh-CN"))
    assert text.startswith("该模型未在运行") and "gone" in text


# ---- launch form -------------------------------------------------------------

ENGINES = {
    "llama.cpp": [
        {"model_format": "ggufv2", "model_size_in_billions": "0_27", "quantizations": ["q4_k_m", "q8_0"]},
        {"model_format": "ggufv2", "model_size_in_billions": 7, "quantizations": ["q4_0"]},
    ],
    "Transformers": [
        {"model_format": "pytorch", "model_size_in_billions": 1, "quantizations": ["none"]},
        {"model_format": "ggufv2", "model_size_in_billions": "0_27", "quantizations": ["q4_k_m"]},
    ],
    "vLLM": [],
}


def test_cascading_choices():
    assert engine_choices(ENGINES) == ["llama.cpp", "Transformers"]
    assert format_choices(ENGINES, "Transformers") == ["pytorch", "ggufv2"]
    assert format_choices(ENGINES, None) == []
    assert size_choices(ENGINES, "llama.cpp", "ggufv2") == ["0_27", "7"]
    assert quantization_choices(ENGINES, "llama.cpp", "ggufv2", "0_27") == ["q4_k_m", "q8_0"]
    assert quantization_choices(ENGINES, "llama.cpp", "ggufv2", "7") == ["q4_0"]
    assert quantization_choices(ENGINES, "llama.cpp", "pytorch", "7") == []
    # the size goes back as the catalogue's own value
    assert size_value(ENGINES, "llama.cpp", "ggufv2", "7") == 7
    assert size_value(ENGINES, "llama.cpp", "ggufv2", "0_27") == "0_27"
    assert size_value(ENGINES, "llama.cpp", "ggufv2", "13") is None


def test_first_keeps_a_valid_choice():
    assert first(["a", "b"], "b") == "b"
    assert first(["a", "b"], "c") == "a"
    assert first([], "c") is None


@pytest.mark.parametrize("text,expected", [
    ("", {}),
    (None, {}),
    ("n_ctx=2048 n_parallel=4", {"n_ctx": 2048, "n_parallel": 4}),
    ("n_ctx=2048\nuse_mmap=false\nrope=0.5", {"n_ctx": 2048, "use_mmap": False, "rope": 0.5}),
    ("chat_format=gemma path='/a b/c'", {"chat_format": "gemma", "path": "/a b/c"}),
    # shell quoting: a JSON value with quotes inside goes in single quotes
    ("""stop='["a","b"]' n=[1,2]""", {"stop": ["a", "b"], "n": [1, 2]}),
    ('{"n_ctx": 1024, "flash_attn": true}', {"n_ctx": 1024, "flash_attn": True}),
])
def test_parse_engine_kwargs(text, expected):
    assert parse_engine_kwargs(text) == expected


@pytest.mark.parametrize("text", ["n_ctx", "=3", '{"n_ctx": ', "[1, 2]", "{1}", "a='unclosed"])
def test_parse_engine_kwargs_rejects(text):
    with pytest.raises(ValueError):
        parse_engine_kwargs(text)


MODELS = {
    "b": {"model_name": "gemma-3", "model_type": "LLM", "model_engine": "llama.cpp", "model_format": "ggufv2",
          "model_size_in_billions": "0_27", "quantization": "q4_k_m", "replica": 2, "status": "READY",
          "model_ability": ["generate", "chat"], "created": 2},
    "a": {"model_name": "bge", "model_type": "embedding", "replica": 1, "status": "READY", "created": 1},
    "lora1": {"model_name": "gemma-3", "model_type": "LLM", "parent": "b", "status": "READY",
              "model_ability": ["generate", "chat"], "created": 2},
    "c": {"model_name": "gemma-3", "model_type": "LLM", "status": "CREATING",
          "model_ability": ["generate", "chat"], "created": 3},
    "d": {"model_name": "base", "model_type": "LLM", "status": "READY", "model_ability": ["generate"], "created": 4},
}


def test_running_rows_and_chat_models():
    rows = running_rows(MODELS)
    assert [r[0] for r in rows] == ["a", "b", "c", "d"]  # launch order; the adapter is not a row
    assert rows[0] == ["a", "bge", "embedding", "—", "—", "—", "—", "1", "READY"]
    assert rows[1] == ["b", "gemma-3", "LLM", "llama.cpp", "ggufv2", "0_27", "q4_k_m", "2", "READY"]
    assert chat_models(MODELS) == ["b", "lora1"]


def test_progress_bar():
    assert launch_progress_bar(0.0, 4) == ("░░░░", 0)
    assert launch_progress_bar(0.5, 4) == ("██░░", 50)
    assert launch_progress_bar(7, 4) == ("████", 100)


# ---- one streamed reply, against a fake client -------------------------------


class _FakeClient:
    def __init__(self, handle=None, error=None):
        self.handle, self.error, self.closed = handle, error, False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True

    def get_model(self, uid):
        if self.error is not None:
            raise self.error
        return self.handle


class _FakeHandle(ChatModelHandle):
    def __init__(self, chunks):
        self.chunks, self.calls = chunks, []

    def chat(self, messages, tools=None, generate_config=None):
        self.calls.append((messages, generate_config))
        yield from self.chunks


def _reply(client, model="m1", history=None, message="Hi", **params):
    params = {"system_prompt": "Be brief.", "max_tokens": 16, "temperature": 0, **params}
    ticks = itertools.count(0, 0.1)
    return list(stream_reply(lambda: client, "http://h:1", message, history, model, params, "en",
                             clock=lambda: next(ticks)))


def test_stream_reply_streams_into_the_history():
    handle = _FakeHandle([_chunk("Hel"), _chunk("lo"), _chunk(usage=2)])
    out = _reply(_FakeClient(handle), history=[{"role": "user", "content": [{"type": "text", "text": "Q"}]},
                                               {"role": "assistant", "content": "A"}])
    history, status, failed = out[-1]
    assert not failed
    assert history[-2:] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert "tokens/s" in status and "2 tokens" in status
    assert out[0][1].startswith("Waiting for m1")
    messages, config = handle.calls[0]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert [m["content"] for m in messages[1:]] == ["Q", "A", "Hi"]
    assert config == {"stream": True, "max_tokens": 16, "temperature": 0.0,
                      "stream_options": {"include_usage": True}}


def test_stream_reply_without_a_model_or_a_message():
    (history, status, failed), = _reply(_FakeClient(), model=None)
    assert failed and history == [] and "Choose a running chat model" in status
    assert _reply(_FakeClient(), message="   ") == []


def test_stream_reply_to_a_model_that_is_gone():
    client = _FakeClient(error=APIError("get the model description", 404, "Model not found, uid: m1."))
    history, status, failed = _reply(client)[-1]
    assert failed and client.closed
    assert history == [{"role": "user", "content": "Hi"}]
    assert status.startswith("That model is not running")


def test_stream_reply_error_in_the_middle_keeps_the_partial_answer():
    def chunks():
        yield _chunk("par")
        raise RuntimeError("replica died")

    class Handle(_FakeHandle):
        def chat(self, messages, tools=None, generate_config=None):
            return chunks()

    history, status, failed = _reply(_FakeClient(Handle([])))[-1]
    assert failed and status == "The answer stopped: replica died."
    assert history[-1] == {"role": "assistant", "content": "par"}


def test_stream_reply_refuses_a_model_that_cannot_chat():
    history, status, failed = _reply(_FakeClient(handle=object()))[-1]
    assert failed and "cannot chat" in status


# ---- the mount ---------------------------------------------------------------


def test_self_url():
    from xinference.deploy.web_ui import self_url

    assert self_url("0.0.0.0", 9997) == "http://127.0.0.1:9997"
    assert self_url("::", 9997) == "http://[::1]:9997"
    assert self_url("fe80::1", 80) == "http://[fe80::1]:80"
    assert self_url("10.0.0.5", 1) == "http://10.0.0.5:1"


def test_without_gradio_the_server_still_serves(monkeypatch, caplog):
    import builtins

    from fastapi import FastAPI

    from xinference.deploy.web_ui import attach_ui

    real_import = builtins.__import__

    def no_gradio(name, *args, **kwargs):
        if name == "gradio" or name.startswith("gradio."):
            raise ImportError("No module named 'gradio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    app = FastAPI()
    with caplog.at_level("INFO", logger="xinference.deploy.web_ui"):
        assert attach_ui(app, "http://127.0.0.1:1") is False
    assert 'pip install "xinference[ui]"' in caplog.text
    assert not [r for r in app.routes if getattr(r, "path", None) == "/"]


def test_mounted_ui_and_redirect():
    pytest.importorskip("gradio")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from xinference.deploy.web_ui import attach_ui

    app = FastAPI()
    assert attach_ui(app, "http://127.0.0.1:1") is True
    with TestClient(app) as client:
        r = client.get("/", follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "ui/"
        page = client.get("/ui/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        config = client.get("/ui/config").json()
    labels = json.dumps(config)
    assert "Launch model" in labels and "Arena" in labels


def test_the_idle_page_does_not_poll_the_shared_event_loop():
    # Gradio's own pace is 1 ms and 10 ms: 6.5% of a core with nobody on the page
    from xinference.web.app import build_ui

    queue = build_ui("http://127.0.0.1:9")._queue
    assert queue.sleep_when_free >= 0.05 and queue.progress_update_sleep_when_free >= 0.1
