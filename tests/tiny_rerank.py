"""A tiny random-weight cross-encoder (BERT sequence classification, one label).

No rerank model ships on PyPI, so tests build one: a WordPiece tokenizer made with
`tokenizers` from the small English + Chinese corpus below, and a 2-layer BERT with
`num_labels=1` from a fixed seed. The folder loads offline with
`sentence_transformers.CrossEncoder(out_dir)` (Sigmoid scores, as bge-reranker gives).

Heavy libraries are imported inside the builder: importing this module costs nothing.
"""

from __future__ import annotations

import os
from typing import Any, Dict

CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Paris is a big city with many museums and old streets.",
    "Berlin is the capital of Germany and has about four million people.",
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating pasta. A man is eating food. A man is eating a piece of bread.",
    "The girl is carrying a baby. A man is riding a horse. A woman is playing violin.",
    "Machine learning models rank documents by how relevant they are to a query.",
    "A reranker reads the query and the document together and gives one score.",
    "How many people live in Berlin? Berlin had a population of 3,520,031 in 2019.",
    "The weather is nice today, so we will go to the park and play.",
    "Numbers like 1, 2, 3, 10, 42 and 2024 appear in text too.",
    "北京是中国的首都，有很多历史建筑。",
    "上海是一个很大的城市，人口很多。",
    "今天天气很好，我们去公园玩吧。",
    "机器学习模型可以给文档排序。",
    "我喜欢学习中文，中文很有意思。",
    "熊猫是中国的国宝，住在四川的山里。",
]

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

TINY_SIZES: Dict[str, Any] = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=512,
    # Wider than the 0.02 default, so different pairs get clearly different scores.
    initializer_range=0.5,
)


def _wordpiece():
    """A BERT-style WordPiece tokenizer "trained" on CORPUS by counting: every character,
    alone and as a "##" continuation, plus every word seen at least twice. (The
    `tokenizers` WordPiece trainer breaks ties in hash order, so its vocabulary changes
    from run to run.) Words seen once are spelt in pieces, CJK is one token a character."""
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    # BertNormalizer lower-cases and puts spaces around CJK characters, as bert-base-chinese.
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter = Counter()
    for line in CORPUS:
        pieces = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))
        words.update(word for word, _ in pieces)
    chars = sorted({c for word in words for c in word})
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for token in chars + [f"##{c}" for c in chars] + sorted(w for w, n in words.items() if n >= 2):
        vocab.setdefault(token, len(vocab))

    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tok


def build_tiny_cross_encoder(out_dir, seed: int = 7) -> str:
    """Writes the model and its tokenizer to out_dir and returns the folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    out_dir = os.fspath(out_dir)
    # The trained tokenizer is used as it is (lower-casing, CJK splitting and the
    # [CLS] a [SEP] b [SEP] template with token types are all in it).
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_wordpiece(),
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        model_max_length=TINY_SIZES["max_position_embeddings"],
    )
    tokenizer.save_pretrained(out_dir)
    config = BertConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        architectures=["BertForSequenceClassification"],
        dtype="float32",
        **TINY_SIZES,
    )
    config.num_labels = 1  # one relevance score per pair: a regression head
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
