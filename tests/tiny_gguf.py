"""Turn the tiny Llama of tiny_models.py into a GGUF file, built at test time.

A real GGUF checkpoint takes tens of seconds to load through transformers;
this one loads in about a second and gives exactly the logits of the folder it
came from, so a test can compare the two directly. The file is laid out the
way llama.cpp's convert_hf_to_gguf.py writes a Llama with a SentencePiece
vocabulary, so llama.cpp can load it as well.

gguf, numpy, safetensors and transformers are imported inside the builder so
that merely importing this module (e.g. from conftest.py) costs nothing.
"""

from __future__ import annotations

import json
import os
import re


def _permute(weights, n_head: int):
    # llama.cpp's rotary embedding pairs adjacent dimensions where HF pairs
    # the two halves of each head, so the converter interleaves the rows of
    # q/k; transformers' LlamaTensorProcessor undoes exactly this.
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _vocab(tokenizer):
    import gguf

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    tokens = [by_id[i] for i in range(len(by_id))]
    special = set(tokenizer.all_special_ids)
    scores, types = [], []
    for i, token in enumerate(tokens):
        if i == tokenizer.unk_token_id:
            kind = gguf.TokenType.UNKNOWN
        elif i in special:
            kind = gguf.TokenType.CONTROL
        elif re.fullmatch(r"<0x[0-9A-F]{2}>", token):
            kind = gguf.TokenType.BYTE
        else:
            kind = gguf.TokenType.NORMAL
        # A GGUF keeps no BPE merges for a SentencePiece vocabulary: llama.cpp
        # merges the pair whose result scores highest, and transformers
        # rebuilds its merge list from the same scores. The trainer numbered
        # the pieces in merge order, so -id ranks them as the folder does.
        scores.append(-float(i) if kind == gguf.TokenType.NORMAL else 0.0)
        types.append(kind)
    return tokens, scores, types


def build_tiny_llama_gguf(hf_dir, out_path, chat_template=None) -> str:
    """`chat_template`: the template the file carries instead of the tokenizer's."""
    import gguf
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    hf_dir, out_path = os.fspath(hf_dir), os.fspath(out_path)
    with open(os.path.join(hf_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["model_type"] == "llama", config["model_type"]
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    rope = config.get("rope_parameters") or {"rope_theta": config.get("rope_theta", 10000.0)}
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)

    arch = gguf.MODEL_ARCH.LLAMA
    writer = gguf.GGUFWriter(out_path, gguf.MODEL_ARCH_NAMES[arch])
    # transformers only treats a llama file as Mistral if the name says so.
    writer.add_name("tiny-llama")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])

    tokens, scores, types = _vocab(tokenizer)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_unk_token_id(tokenizer.unk_token_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(True)
    if chat_template or tokenizer.chat_template:
        writer.add_chat_template(chat_template or tokenizer.chat_template)

    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    for hf_name, weights in sorted(load_file(os.path.join(hf_dir, "model.safetensors")).items()):
        name = names.get_name(hf_name, try_suffixes=(".weight",))
        if name is None:
            raise ValueError(f"no GGUF name for {hf_name}")
        if name.endswith(".attn_q.weight"):
            weights = _permute(weights, n_head)
        elif name.endswith(".attn_k.weight"):
            weights = _permute(weights, n_kv)
        writer.add_tensor(name, weights.astype("float32"))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path
