"""Tiny random ChatGLM2/ChatGLM3 models in chatglm.cpp's GGML format, built at test time.

No ChatGLM weights exist offline, and chatglm.cpp reads only its own format, so the
test model is made the way a real one is: a (tiny, random) ChatGLM-architecture state
dict and a SentencePiece tokenizer written by chatglm-cpp's own converter classes.
The converter reads `model.config`, `model.state_dict()` and
`tokenizer.tokenizer.sp_model` only, so plain namespaces stand in for the Hugging Face
objects (whose modelling code is remote code). A model builds in about a second.

sentencepiece, torch and chatglm_cpp are imported inside the builder.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from types import SimpleNamespace

WORDS = (
    "the quick brown fox jumps over lazy dog hello world model token chat system user "
    "assistant answer question tiny random test python stream generate glm ggml weights "
    "vocab layer head alpha beta gamma delta one two three four five six seven eight nine ten"
).split()
# chatglm.cpp numbers these special tokens right after the SentencePiece pieces
SPECIAL_TOKENS = {"chatglm2": 5, "chatglm3": 9}  # [MASK] [gMASK] [sMASK] sop eop (+ 4 roles)


def _sentencepiece(vocab_size: int, seed: int):
    import sentencepiece as spm

    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) for _ in range(2000)]
    lines += ["Hello! How are you? I am fine, thanks.", "What is 1+2? It is 3.", "你好，世界"]
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=out, vocab_size=vocab_size,
        model_type="bpe", character_coverage=1.0,
        byte_fallback=True,  # any text, "\n" of the chat format included, encodes
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,  # ChatGLM2/3: eos is 2
        hard_vocab_limit=False, num_threads=1, minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_proto=out.getvalue())


def build_tiny_chatglm(out_dir, kind: str = "chatglm3", seq_length: int = 512, seed: int = 0,
                       hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                       ffn: int = 128) -> Path:
    """Writes `tiny-<kind>.bin` (f16) into out_dir and returns its path."""
    import torch
    from chatglm_cpp.convert import ChatGLM2Converter, ChatGLM3Converter, GGMLType

    sp = _sentencepiece(400, seed)
    # exact, so that sampling can never pick an id that is neither a piece nor special
    vocab = sp.get_piece_size() + SPECIAL_TOKENS[kind]
    head_dim = hidden // heads
    config = SimpleNamespace(
        # fixed by the architecture (the converter asserts them)
        add_bias_linear=False, add_qkv_bias=True, apply_residual_connection_post_layernorm=False,
        kv_channels=head_dim, num_attention_heads=heads, hidden_size=hidden,
        multi_query_attention=True, original_rope=True, post_layer_norm=True, rmsnorm=True,
        # written into the file
        padded_vocab_size=vocab, multi_query_group_num=kv_heads, num_layers=layers,
        ffn_hidden_size=ffn, layernorm_epsilon=1e-5, pre_seq_len=None, rope_ratio=1,
        seq_length=seq_length, eos_token_id=2, pad_token_id=0, quantization_bit=None,
    )
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.02):
        return torch.randn(*shape, generator=gen) * std

    qkv = hidden + 2 * head_dim * kv_heads
    sd = {"transformer.embedding.word_embeddings.weight": rnd(vocab, hidden, std=1.0)}
    for i in range(layers):
        p = f"transformer.encoder.layers.{i}."
        sd[p + "input_layernorm.weight"] = torch.ones(hidden)
        sd[p + "self_attention.query_key_value.weight"] = rnd(qkv, hidden)
        sd[p + "self_attention.query_key_value.bias"] = torch.zeros(qkv)
        sd[p + "self_attention.dense.weight"] = rnd(hidden, hidden)
        sd[p + "post_attention_layernorm.weight"] = torch.ones(hidden)
        sd[p + "mlp.dense_h_to_4h.weight"] = rnd(2 * ffn, hidden)  # gate and up, stacked
        sd[p + "mlp.dense_4h_to_h.weight"] = rnd(hidden, ffn)
    sd["transformer.encoder.final_layernorm.weight"] = torch.ones(hidden)
    sd["transformer.output_layer.weight"] = rnd(vocab, hidden, std=1.0)

    model = SimpleNamespace(config=config, state_dict=lambda: dict(sd))
    tokenizer = SimpleNamespace(tokenizer=SimpleNamespace(sp_model=sp))
    converter = {"chatglm2": ChatGLM2Converter, "chatglm3": ChatGLM3Converter}[kind]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"tiny-{kind}.bin"
    with open(path, "wb") as f:
        converter.convert(f, model, tokenizer, GGMLType.F16)
    return path
