"""Legacy GGJT v3 ("ggmlv3") LLaMA files: converted to GGUF once, then served by llama.cpp."""

import os
import struct
import threading

import pytest

from tests.tiny_ggml import vocab, write_tiny_ggml
from xinference.errors import InvalidRequestError
from xinference.model.llm import ggml_v3
from xinference.model.llm.family import get_family
from xinference.model.llm.ggml_v3 import convert_to_gguf, gguf_for, read_ggjt_v3
from xinference.model.llm.launch import engine_params, plan_launch

gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")

# old tensor names -> GGUF names (a layer's are "layers.N.<old>" -> "blk.N.<new>")
ENDS = {"tok_embeddings.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
        "output.weight": "output.weight"}
LAYER = {"attention.wq": "attn_q", "attention.wk": "attn_k", "attention.wv": "attn_v",
         "attention.wo": "attn_output", "attention_norm": "attn_norm", "feed_forward.w1": "ffn_gate",
         "feed_forward.w2": "ffn_down", "feed_forward.w3": "ffn_up", "ffn_norm": "ffn_norm"}


def gguf_name(old: str) -> str:
    if old in ENDS:
        return ENDS[old]
    _, layer, rest = old.removesuffix(".weight").split(".", 2)
    return f"blk.{layer}.{LAYER[rest]}.weight"


def field(reader, key):
    return reader.fields[key].contents()


@pytest.mark.parametrize("kind,ggml_type", [("f32", 0), ("f16", 1), ("q4_0", 2)])
def test_conversion_keeps_every_tensor_byte_and_writes_llama_metadata(tmp_path, kind, ggml_type):
    src = write_tiny_ggml(str(tmp_path / f"tiny-{kind}.ggmlv3.bin"), kind)
    dst = str(tmp_path / "out.gguf")
    convert_to_gguf(src, dst, context_length=2048)
    raw = open(src, "rb").read()
    model = read_ggjt_v3(src)
    # the directory covers the file to its last byte, each tensor 32-byte aligned
    last = model.tensors[-1]
    assert last.offset + last.nbytes == len(raw) and all(t.offset % 32 == 0 for t in model.tensors)
    reader = gguf.GGUFReader(dst)
    out = {t.name: t for t in reader.tensors}
    assert len(out) == len(model.tensors) == 3 + 2 * 9
    for t in model.tensors:
        name = gguf_name(t.name)
        assert t.gguf_name == name
        got = out[name]
        assert got.data.tobytes() == raw[t.offset:t.offset + t.nbytes], name
        assert list(got.shape) == list(t.dims), name  # GGUF reader shapes are ggml order
        assert int(got.tensor_type) == (0 if len(t.dims) == 1 else ggml_type), name
    # F32 values read back as numbers equal what the writer wrote
    emb = out["token_embd.weight"]
    if kind == "f32":
        first = np.frombuffer(raw, np.float32, count=64, offset=model.tensors[0].offset)
        assert np.array_equal(np.asarray(emb.data).reshape(-1)[:64], first)

    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "general.file_type") == ggml_type
    assert field(reader, "llama.context_length") == 2048
    assert field(reader, "llama.embedding_length") == 64
    assert field(reader, "llama.block_count") == 2
    assert field(reader, "llama.feed_forward_length") == 192  # w1's rows
    assert field(reader, "llama.attention.head_count") == field(reader, "llama.attention.head_count_kv") == 4
    assert field(reader, "llama.rope.dimension_count") == 16
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    assert field(reader, "tokenizer.ggml.model") == "llama"
    assert (field(reader, "tokenizer.ggml.unknown_token_id"), field(reader, "tokenizer.ggml.bos_token_id"),
            field(reader, "tokenizer.ggml.eos_token_id")) == (0, 1, 2)
    tokens, types = field(reader, "tokenizer.ggml.tokens"), field(reader, "tokenizer.ggml.token_type")
    scores = field(reader, "tokenizer.ggml.scores")
    items = vocab()
    assert len(tokens) == len(types) == len(scores) == len(items)
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and types[:3] == [2, 3, 3]
    assert tokens[3 + 0x0A] == "<0x0A>" and tokens[3 + 0xFF] == "<0xFF>" and set(types[3:259]) == {6}
    hello = tokens.index("\u2581hello")  # the space is the SentencePiece marker again
    assert types[hello] == 1 and scores[hello] == items[hello][1]
    assert " " not in "".join(tokens[259:])


@pytest.mark.timeout(120)
async def test_llama_cpp_engine_converts_once_then_generates(tmp_path):
    pytest.importorskip("llama_cpp")
    from xinference.model.llm.engines import get_engine_class
    from xinference.model.llm.llm import LLM
    from xinference.types import SamplingParams

    plan = plan_launch("orca", model_format="ggmlv3", model_size_in_billions=3,
                       quantization="q4_0", engine_kwargs={"n_ctx": 128})
    assert plan.engine == "llama.cpp"
    src = write_tiny_ggml(str(tmp_path / "orca-mini-3b.ggmlv3.q4_0.bin"), "q4_0")
    cls = get_engine_class(plan.engine)
    engine = cls(src, plan.family, plan.spec, plan.quantization, **plan.engine_kwargs)
    await engine.load()
    try:
        assert engine.model_path == src + ".gguf" and engine.load_progress == 0.5
        llm = LLM(engine)
        ids = engine.tokenize("hello world", add_bos=True)
        assert ids[0] == 1 and len(ids) >= 3
        assert b"".join(engine._piece(t) for t in ids[1:]).decode() == " hello world"
        params = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
        deltas = [d async for d in llm.stream(llm.completion_prompt("hello"), params)]
        assert deltas[-1].finish_reason == "length" and deltas[-1].completion_tokens == 6
        chat = llm.chat_prompt([{"role": "user", "content": "hi"}])  # the family's template
        assert chat[0] == 1 and len(chat) > 5
    finally:
        await engine.close()
    # a second replica takes the cached GGUF
    mtime = os.stat(src + ".gguf").st_mtime_ns
    again = cls(src, plan.family, plan.spec, plan.quantization, **plan.engine_kwargs)
    await again.load()
    await again.close()
    assert os.stat(src + ".gguf").st_mtime_ns == mtime


def test_cached_gguf_is_reused_and_a_newer_source_converts_again(tmp_path):
    src = write_tiny_ggml(str(tmp_path / "m.ggmlv3.q4_0.bin"), "q4_0")
    seen = []
    dst = gguf_for(src, 2048, seen.append)
    assert dst == src + ".gguf" and seen[-1] == 1.0 and seen == sorted(seen)
    mtime = os.stat(dst).st_mtime_ns
    assert gguf_for(src, 2048) == dst and os.stat(dst).st_mtime_ns == mtime
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(src), os.path.basename(dst),
                                                   os.path.basename(dst) + ".lock"])
    later = os.stat(dst).st_mtime + 10
    os.utime(src, (later, later))  # re-downloaded
    gguf_for(src, 2048)
    assert os.stat(dst).st_mtime_ns != mtime


def test_two_replicas_at_once_convert_once(tmp_path, monkeypatch):
    src = write_tiny_ggml(str(tmp_path / "m.ggmlv3.f16.bin"), "f16")
    real, calls = ggml_v3._write, []

    def slow_write(*args, **kwargs):
        calls.append(1)
        threading.Event().wait(0.3)  # the other replica arrives while this one writes
        real(*args, **kwargs)

    monkeypatch.setattr(ggml_v3, "_write", slow_write)
    results = []
    threads = [threading.Thread(target=lambda: results.append(gguf_for(src, 2048))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [src + ".gguf"] * 2 and len(calls) == 1


def _ggjt_v3_cut(tmp_path):
    whole = open(write_tiny_ggml(str(tmp_path / "whole.bin"), "q4_0"), "rb").read()
    return whole[:len(whole) - 100]


BAD = {
    "chatglm.cpp": lambda _: b"ggml" + struct.pack("<ii", 1, 1) + b"\0" * 64,
    "ggjt-v1": lambda _: b"tjgg" + struct.pack("<I", 1) + b"\0" * 64,
    "gguf": lambda _: b"GGUF" + struct.pack("<I", 3) + b"\0" * 64,
    "empty": lambda _: b"",
    "text": lambda _: b"<html>rate limited</html>",
    "truncated-header": lambda _: b"tjgg" + struct.pack("<I", 3) + struct.pack("<3I", 32000, 4096, 256),
    "truncated-data": _ggjt_v3_cut,
}


@pytest.mark.parametrize("what", sorted(BAD))
def test_a_file_that_is_not_ggjt_v3_is_a_400_and_writes_nothing(tmp_path, what):
    folder = tmp_path / "cache"
    folder.mkdir()
    src = folder / "model.ggmlv3.q4_0.bin"
    src.write_bytes(BAD[what](tmp_path))
    with pytest.raises(InvalidRequestError) as err:
        gguf_for(str(src), 2048)
    assert err.value.status_code == 400 and err.value.param == "model_path"
    assert "ggmlv3" in err.value.message and "GGUF" in err.value.message
    assert os.listdir(folder) == [src.name]


def test_a_tensor_that_is_not_llama_is_a_400(tmp_path):
    src = write_tiny_ggml(str(tmp_path / "m.bin"), "f32")
    data = open(src, "rb").read().replace(b"layers.1.ffn_norm.weight", b"layers.1.ffn_xxxx.weight")
    open(src, "wb").write(data)
    with pytest.raises(InvalidRequestError, match="ffn_xxxx"):
        gguf_for(src, 2048)
    assert os.listdir(tmp_path) == ["m.bin"]


def test_the_catalogue_offers_llama_cpp_for_llama_ggmlv3_only():
    assert plan_launch("orca", model_format="ggmlv3").engine == "llama.cpp"
    rows = [r for r in engine_params(get_family("vicuna-v1.3")) if r["model_format"] == "ggmlv3"]
    assert {r["engine"] for r in rows} == {"llama.cpp"}
    assert sorted(r["model_size_in_billions"] for r in rows) == [7, 13, 33]
    assert "q4_K_M" in rows[0]["quantizations"]
    for name in ("chatglm2", "chatglm3"):
        assert not [r for r in engine_params(get_family(name))
                    if r["engine"] == "llama.cpp" and r["model_format"] == "ggmlv3"]
