"""Tiny random-weight Hugging Face models, built at test time.

Nothing here downloads: the tokenizers are trained on the corpus below and the
weights come from a fixed seed, so every build of a model is byte-identical.
The tokenizers deliberately leave some CJK characters and every emoji outside
the vocabulary, so text decodes through multi-token byte sequences - the case
where incremental (streaming) detokenisation goes wrong.

torch, transformers and peft are imported inside the builders so that merely
importing this module (e.g. from conftest.py) costs nothing.
"""

from __future__ import annotations

import json
import os
import unicodedata
import warnings
from collections import Counter

# Shared by both tokenizers. Characters that occur once here (e.g. 界) are kept
# out of the Llama alphabet, so they must go through byte fallback.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! This is a tiny model used for testing.",
    "How are you today? I am fine, thank you very much.",
    "What is the capital of France? The capital of France is Paris.",
    "Tell me a story about a cat and a dog who live in a small house.",
    "The weather is nice today, so we will go to the park and play.",
    "Please write a short poem about the sea, the sun and the sky.",
    "Numbers like 1, 2, 3, 10, 42 and 2024 appear in text too.",
    "Machine learning models generate text one token at a time.",
    "A streaming server sends each new piece of text as soon as it is ready.",
    "Once upon a time there was a little robot that wanted to learn.",
    "Can you help me with my homework? Sure, what do you need?",
    'She said: "It\'s a good day to read a book." He agreed.',
    "def add(a, b):\n    return a + b\n",
    "The end of the sentence is marked with a full stop.",
    "你好，我是一个小模型。你好吗？我很好，谢谢你。",
    "今天天气很好，我们去公园玩吧。",
    "我喜欢学习中文，中文很有意思。",
    "他是我的朋友，我们是好朋友。",
    "这个世上有很多人，每个人都有自己的故事。",
    "你好世上的人们，大家好！",
    "请给我讲一个故事。好的，从前有一只小猫。",
    "谢谢大家，再见！",
    "你好世界！Hello world!",
    "I love pizza 🍕 and coffee ☕ and smiling 🙂 😀.",
    "Great job 👍 🎉 see you 👋",
]

_LLAMA_CHAT_TEMPLATE = (
    # Llama-2 style, minus the strict user/assistant alternation check; the
    # template writes the bos token itself, as the real one does.
    "{% if messages[0]['role'] == 'system' %}"
    "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)

_CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# The pre-tokenizer regex of Qwen2's tokenizer.json.
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_TINY_SIZES = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=4096,
    # Wider than the 0.02 default so greedy output is not one repeated token.
    initializer_range=0.2,
)

_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _trained_vocab_and_merges(tokenizer, trainer):
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def _llama_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    # SentencePiece-like: the alphabet is every character seen at least twice,
    # minus symbols (emoji); everything else can only be spelt with <0xXX> tokens.
    counts = Counter(c for line in CORPUS for c in line.replace(" ", "▁"))
    alphabet = sorted(
        c
        for c, n in counts.items()
        if n >= 2 and ord(c) <= 0xFFFF and not unicodedata.category(c).startswith(("S", "C"))
    )
    alphabet.append("▁")
    # limit_alphabet == len(initial_alphabet) makes the trainer drop every other
    # character deterministically (they have lower counts than the forced ones).
    # vocab_size is only a cap: the corpus runs out of pairs seen twice first.
    trainer = BpeTrainer(
        vocab_size=1000,
        min_frequency=2,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        show_progress=False,
    )
    scratch = Tokenizer(models.BPE(unk_token="<unk>"))
    scratch.pre_tokenizer = metaspace
    trained, merges = _trained_vocab_and_merges(scratch, trainer)

    # Llama layout: <unk>, <s>, </s>, then the 256 byte tokens, then the pieces.
    specials = ["<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)])}
    for token in sorted(trained, key=trained.get):
        vocab.setdefault(token, len(vocab))

    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    tok.pre_tokenizer = metaspace
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(content=" ", left=1, right=0),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok


def _qwen2_tokenizer():
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # All 256 byte symbols are in the alphabet, so nothing is ever unknown; a
    # CJK character is a single token only if BPE merged its three bytes.
    trainer = BpeTrainer(
        vocab_size=1000,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    # Added after training so they sit at the end of the vocab, as in Qwen.
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok


def _save_model(model_cls, config, seed, out_dir):
    import torch

    torch.manual_seed(seed)
    model = model_cls(config).to(torch.float32).eval()
    model.save_pretrained(out_dir, safe_serialization=True)


def build_tiny_llama(out_dir) -> str:
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    out_dir = os.fspath(out_dir)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_llama_tokenizer(),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        add_bos_token=True,
        model_max_length=_TINY_SIZES["max_position_embeddings"],
        chat_template=_LLAMA_CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(out_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        dtype="float32",
        **_TINY_SIZES,
    )
    _save_model(LlamaForCausalLM, config, 1234, out_dir)
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    ).save_pretrained(out_dir)
    return out_dir


def build_tiny_qwen2(out_dir) -> str:
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    out_dir = os.fspath(out_dir)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_qwen2_tokenizer(),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=_TINY_SIZES["max_position_embeddings"],
        chat_template=_CHATML_TEMPLATE,
    )
    tokenizer.save_pretrained(out_dir)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        # Tied like the small Qwen2 checkpoints, so that code path is covered too.
        tie_word_embeddings=True,
        bos_token_id=eot,
        eos_token_id=tokenizer.eos_token_id,
        dtype="float32",
        **_TINY_SIZES,
    )
    _save_model(Qwen2ForCausalLM, config, 5678, out_dir)
    GenerationConfig(
        bos_token_id=eot, eos_token_id=[tokenizer.eos_token_id, eot], pad_token_id=eot
    ).save_pretrained(out_dir)
    return out_dir


def build_lora(base_dir, out_dir, seed: int) -> str:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base_dir, out_dir = os.path.abspath(base_dir), os.fspath(out_dir)
    torch.manual_seed(seed)  # lora_A init draws from the global generator
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=_LORA_TARGETS, task_type="CAUSAL_LM"
    )
    with warnings.catch_warnings():
        # peft 0.21 calls a transformers 5 method deprecated in favour of another.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        model = get_peft_model(base, config)
    # peft zero-initialises lora_B, which would make the adapter a no-op.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    # An absolute local path: informative, and never a resolvable hub repo id.
    model.peft_config["default"].base_model_name_or_path = base_dir
    model.save_pretrained(out_dir)
    return out_dir
