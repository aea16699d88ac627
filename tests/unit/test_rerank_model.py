"""The rerank model layer, in-process, on a tiny random cross-encoder built at test time.

Scores are checked against `CrossEncoder.predict` on the same pairs and token counts
against the tokenizer: both are computed independently of `RerankModel`. The model is
float32, so a pair's score does not depend on its batch beyond rounding (~1e-6).
"""

import asyncio
import json
import threading
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from xinference.errors import InvalidRequestError
from xinference.model.rerank.family import builtin_rerank_families, get_rerank_family
from xinference.model.rerank.model import RerankModel

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")

FAMILY = "bge-reranker-base"
QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital of France.",
    "熊猫是中国的国宝，住在四川的山里。",
    "A man is riding a horse.",
    "北京是中国的首都",
    "Berlin is the capital of Germany and has about four million people.",
    "",
]
LONG_DOC = "The weather is nice today, so we will go to the park and play. " * 10


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory):
    from tests.tiny_rerank import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-reranker"))


@pytest.fixture(scope="module")
def reference(tiny_reranker):
    """predict(pairs, max_length) straight from sentence-transformers, and the tokenizer."""
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer

    models = {}

    def predict(pairs, max_length=512):
        if max_length not in models:
            models[max_length] = CrossEncoder(tiny_reranker, max_length=max_length, local_files_only=True)
        return [float(s) for s in models[max_length].predict(pairs, show_progress_bar=False)]

    predict.tokenizer = AutoTokenizer.from_pretrained(tiny_reranker)
    return predict


@asynccontextmanager
async def loaded(path, **kwargs):
    model = RerankModel(str(path), get_rerank_family(FAMILY), **kwargs)
    await model.load()
    try:
        yield model
    finally:
        await model.close()


def by_index(response):
    return {r["index"]: r["relevance_score"] for r in response["results"]}


# ---- families ---------------------------------------------------------------------------


def test_families_point_at_hub_ids():
    families = builtin_rerank_families()
    assert families["bge-reranker-base"].model_src["huggingface"].model_id == "BAAI/bge-reranker-base"
    assert families["bge-reranker-v2-m3"].model_src["modelscope"].model_id == "AI-ModelScope/bge-reranker-v2-m3"
    assert families["jina-reranker-v2"].trust_remote_code is True
    assert families["mxbai-rerank-base-v1"].model_src["huggingface"].model_id == "mixedbread-ai/mxbai-rerank-base-v1"
    assert all(f.model_hub == "huggingface" and f.max_tokens > 0 for f in families.values())


def test_unknown_family_suggests_close_names():
    with pytest.raises(InvalidRequestError) as info:
        get_rerank_family("bge-reranker")
    assert info.value.param == "model_name" and info.value.code == "model_not_found"
    assert "bge-reranker-base" in info.value.message


# ---- responses --------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_shape_order_and_scores(tiny_reranker, reference):
    async with loaded(tiny_reranker) as model:
        r = await model.rerank(QUERY, DOCS)
    json.dumps(r)  # plain JSON types only
    assert set(r) == {"id", "results", "meta"}
    uuid.UUID(r["id"])
    assert r["meta"] == {"api_version": None, "billed_units": None, "tokens": None, "warnings": None}
    assert sorted(x["index"] for x in r["results"]) == list(range(len(DOCS)))
    for x in r["results"]:
        assert set(x) == {"index", "relevance_score", "document"}
        assert x["document"] is None
        assert isinstance(x["relevance_score"], float) and 0.0 < x["relevance_score"] < 1.0
    scores = [x["relevance_score"] for x in r["results"]]
    assert scores == sorted(scores, reverse=True)
    expected = reference([(QUERY, d) for d in DOCS])
    assert len(set(round(s, 4) for s in expected)) == len(DOCS), "pick pairs with distinct scores"
    got = by_index(r)
    for i, score in enumerate(expected):
        assert got[i] == pytest.approx(score, abs=1e-5)
    assert [x["index"] for x in r["results"]] == sorted(range(len(DOCS)), key=lambda i: -expected[i])


@pytest.mark.timeout(60)
async def test_top_n_and_return_documents(tiny_reranker):
    async with loaded(tiny_reranker) as model:
        full = await model.rerank(QUERY, DOCS, return_documents=True)
        top = await model.rerank(QUERY, DOCS, top_n=2, return_documents=True)
        bare = await model.rerank(QUERY, DOCS, top_n=2, return_documents=False)
        more = await model.rerank(QUERY, DOCS, top_n=100)
        ids = {full["id"], top["id"], bare["id"], more["id"]}
    assert len(ids) == 4
    for x in full["results"]:
        assert x["document"] == {"text": DOCS[x["index"]]}
    assert top["results"] == full["results"][:2]
    assert [x["index"] for x in bare["results"]] == [x["index"] for x in top["results"]]
    assert all(x["document"] is None for x in bare["results"])
    assert len(more["results"]) == len(DOCS)


@pytest.mark.timeout(60)
async def test_return_len_counts_the_tokens_the_model_sees(tiny_reranker, reference):
    tok = reference.tokenizer
    docs = DOCS + [LONG_DOC]

    def count(max_length):
        # Batched, as the model gets them: a lone tok(QUERY, "") would drop the empty
        # second segment and its [SEP] (a falsy text_pair), the batch keeps both.
        ids = tok([QUERY] * len(docs), docs, truncation="longest_first", max_length=max_length)
        return sum(len(row) for row in ids["input_ids"])

    async with loaded(tiny_reranker) as model:
        r = await model.rerank(QUERY, docs, top_n=1, return_len=True)
    # top_n cuts the results, not the work: every pair was read
    assert r["meta"]["tokens"] == {"input_tokens": count(512), "output_tokens": count(512)}
    assert count(512) > count(16) > 0

    # A pair longer than max_length is truncated, counted and scored as truncated.
    async with loaded(tiny_reranker, max_length=16, max_batch=3) as model:
        assert model.max_tokens == 16
        r = await model.rerank(QUERY, docs, return_len=True)
    assert r["meta"]["tokens"]["input_tokens"] == count(16)
    expected = reference([(QUERY, d) for d in docs], max_length=16)
    got = by_index(r)
    assert [got[i] for i in range(len(docs))] == pytest.approx(expected, abs=1e-5)


@pytest.mark.timeout(60)
async def test_invalid_requests(tiny_reranker):
    cases = [
        (dict(query=QUERY, documents=[]), "documents"),
        (dict(query="", documents=DOCS), "query"),
        (dict(query="  \n", documents=DOCS), "query"),
        (dict(query=None, documents=DOCS), "query"),
        (dict(query=QUERY, documents="Paris"), "documents"),
        (dict(query=QUERY, documents=["Paris", 3]), "documents"),
        (dict(query=QUERY, documents=["Paris", {"text": "Berlin"}]), "documents"),
        (dict(query=QUERY, documents=["Paris", None]), "documents"),
        (dict(query=QUERY, documents=DOCS, top_n=0), "top_n"),
        (dict(query=QUERY, documents=DOCS, top_n=-1), "top_n"),
        (dict(query=QUERY, documents=DOCS, top_n="2"), "top_n"),
    ]
    async with loaded(tiny_reranker) as model:
        for kwargs, param in cases:
            with pytest.raises(InvalidRequestError) as info:
                await model.rerank(**kwargs)
            assert info.value.status_code == 400
            assert info.value.param == param, kwargs
        # still serving
        r = await model.rerank(QUERY, ["Paris"], top_n=1)
        assert [x["index"] for x in r["results"]] == [0]


@pytest.mark.timeout(60)
async def test_concurrent_requests_match_sequential_ones(tiny_reranker):
    requests = [
        (QUERY, DOCS),
        ("北京", ["上海是一个很大的城市", "北京是中国的首都", "熊猫"]),
        ("horse", ["A man is riding a horse.", "A woman is playing violin.", LONG_DOC]),
        ("机器学习", ["机器学习模型可以给文档排序。", "今天天气很好"]),
        ("Berlin", ["How many people live in Berlin?", "Berlin is the capital of Germany."]),
        (QUERY, list(reversed(DOCS))),
    ]
    async with loaded(tiny_reranker) as model:
        threads = set()
        predict = model._model.predict

        def spy(*args, **kwargs):
            threads.add(threading.current_thread())
            return predict(*args, **kwargs)

        model._model.predict = spy
        sequential = [await model.rerank(q, d, return_len=True) for q, d in requests]
        calls = model.stats()["batches"]
        concurrent = await asyncio.gather(
            *(model.rerank(q, d, return_len=True) for q, d in requests)
        )
        shared = model.stats()["batches"] - calls
    assert threading.main_thread() not in threads  # never on the event loop
    assert shared < len(requests)  # concurrent requests shared forward passes
    for a, b in zip(sequential, concurrent):
        assert [x["index"] for x in a["results"]] == [x["index"] for x in b["results"]]
        assert [x["relevance_score"] for x in b["results"]] == pytest.approx(
            [x["relevance_score"] for x in a["results"]], abs=1e-5
        )
        assert a["meta"] == b["meta"]
    assert len({r["id"] for r in sequential + list(concurrent)}) == 2 * len(requests)


# ---- loading ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_folders_that_are_not_cross_encoders(tmp_path, tiny_reranker):
    family = get_rerank_family(FAMILY)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    embedder = tmp_path / "embedder"  # a bare encoder: it would load with a random score head
    embedder.mkdir()
    source_config = (Path(tiny_reranker) / "config.json").read_text()
    config = json.loads(source_config)
    config["architectures"] = ["BertModel"]
    (embedder / "config.json").write_text(json.dumps(config))
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(source_config)
    for folder in (empty, tmp_path / "missing", embedder, no_weights):
        model = RerankModel(str(folder), family)
        with pytest.raises(InvalidRequestError) as info:
            await model.load()
        assert info.value.param == "model_path", folder
        await model.close()


def test_launch_kwargs_are_checked(tiny_reranker):
    family = get_rerank_family(FAMILY)
    with pytest.raises(InvalidRequestError) as info:
        RerankModel(tiny_reranker, family, use_fp16=True)
    assert info.value.param == "use_fp16" and "max_batch" in info.value.message
    with pytest.raises(InvalidRequestError) as info:
        RerankModel(tiny_reranker, family, max_batch=0)
    assert info.value.param == "max_batch"
    with pytest.raises(InvalidRequestError) as info:
        RerankModel(tiny_reranker, family, batch_wait_ms="soon")
    assert info.value.param == "batch_wait_ms"
    with pytest.raises(InvalidRequestError) as info:
        RerankModel(tiny_reranker, family, max_batch="4")  # a number, not its text
    assert info.value.param == "max_batch"
    # a server setting: naming it in a launch is refused, and says where it is set
    with pytest.raises(InvalidRequestError) as info:
        RerankModel(tiny_reranker, family, trust_remote_code=True)
    assert info.value.param == "trust_remote_code" and "--trust-remote-code" in info.value.message
    assert set(RerankModel.launch_kwargs) == {"device", "max_batch", "max_length", "batch_wait_ms"}
