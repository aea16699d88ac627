"""Launch and request inputs that must be refused whatever the auth: environment variables
for the replica's process, trust_remote_code, replica counts, typed engine options,
chat_template_kwargs and the sizes of texts, stops, inputs and documents.

Over the real REST app and SupervisorActor with a fake worker (tests/unit/fake_cluster.py):
each refusal is a 4xx in the error shape, starts no replica (the fake worker's plans stay
as they were), and the cluster serves afterwards. The worker's own checks run on a real
WorkerActor whose pool records the processes it is asked to start.
"""

from typing import Any, Dict, List, Optional

import pytest
import xoscar as xo

from tests.unit.fake_cluster import running_stack
from xinference.constants import (
    MAX_CHAT_MESSAGES,
    MAX_EMBEDDING_INPUTS,
    MAX_REPLICAS,
    MAX_REPLICAS_PER_WORKER,
    MAX_RERANK_DOCUMENTS,
    MAX_STOP_CHARS,
    MAX_TEXT_CHARS,
    TRUST_REMOTE_CODE_ENV,
)
from xinference.core.placement import WorkerView, choose_workers
from xinference.core.supervisor import SupervisorActor
from xinference.core.worker import WorkerActor
from xinference.errors import InvalidRequestError
from xinference.model.launch_env import check_launch_env
from xinference.model.llm.family import get_family

pytestmark = pytest.mark.timeout(120)

ASK = [{"role": "user", "content": "hi"}]
GEMMA_CONTEXT = get_family("gemma-3").context_length


@pytest.fixture
async def stack():
    async with running_stack() as s:
        await s.supervisor.launch_model({"model_name": "gemma-3", "model_uid": "base"})
        yield s


def _refused(resp, status: int = 400, param: str = None, code: str = None) -> Dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "detail"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["detail"] == body["error"]["message"]
    if param is not None:
        assert (body["error"]["param"] or "").split(".")[0] == param, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


async def _still_serves(stack, launched: List[str]) -> None:
    """Nothing was started beyond `launched`, and the running model still answers."""
    assert sorted(await stack.worker.launched()) == sorted(launched)
    r = await stack.http.post("/v1/chat/completions", json={"model": "base", "messages": ASK})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].startswith("base-0")


def _launch(uid: str, **extra: Any) -> Dict[str, Any]:
    return {"model_name": "gemma-3", "model_uid": uid, **extra}


async def test_an_unknown_model_type_is_refused(stack):
    r = await stack.http.post("/v1/models", json=_launch("m", model_type="image"))
    assert "model_type 'image' is not supported" in _refused(r, 400, "model_type")["message"]
    await _still_serves(stack, ["base-0"])


# ---- envs ----------------------------------------------------------------------------

REFUSED_ENVS = [
    {"LD_PRELOAD": "/tmp/x.so"},
    {"LD_LIBRARY_PATH": "/tmp"},
    {"PYTHONPATH": "/tmp"},
    {"PYTHONSTARTUP": "/tmp/x.py"},
    {"PATH": "/tmp"},
    {"HOME": "/tmp"},
    {"XINFERENCE_HOME": "/tmp"},
    {"HF_HOME": "/tmp"},
    {"HF_HUB_CACHE": "/tmp"},
    {"CUDA_INJECTION64_PATH": "/tmp/x.so"},
    {"CUDA_VISIBLE_DEVICES": "0"},
    {TRUST_REMOTE_CODE_ENV: "1"},
    {"OMP_NUM_THREADS": "2", "LD_AUDIT": "/tmp/x.so"},  # one bad name among good ones
]


@pytest.mark.parametrize("envs", REFUSED_ENVS, ids=lambda e: ",".join(e))
async def test_envs_outside_the_allow_list_are_refused(stack, envs):
    bad = [n for n in envs if n != "OMP_NUM_THREADS"][0]
    r = await stack.http.post("/v1/models", json=_launch("m", envs=envs))
    error = _refused(r, 400, "envs")
    assert bad in error["message"]
    await _still_serves(stack, ["base-0"])


@pytest.mark.parametrize("envs,why", [
    ({"OMP_NUM_THREADS": "abc"}, "positive integer"),
    ({"OMP_NUM_THREADS": "0"}, "positive integer"),
    ({"HF_TOKEN": "a\u0000b"}, "NUL"),
    ({"HF_TOKEN": "x" * 4097}, "4096"),
    ({"XINFERENCE_MODEL_SRC": "http://evil"}, "huggingface"),
    ({"HF_HUB_OFFLINE": "maybe"}, "true/false"),
])
async def test_env_values_are_checked(stack, envs, why):
    r = await stack.http.post("/v1/models", json=_launch("m", envs=envs))
    assert why in _refused(r, 400, "envs")["message"]
    await _still_serves(stack, ["base-0"])


async def test_a_hub_address_must_be_a_known_mirror_or_the_workers_own(stack, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.internal:8080")
    monkeypatch.delenv("MODELSCOPE_ENDPOINT", raising=False)
    for envs in ({"HF_ENDPOINT": "http://127.0.0.1:1"}, {"HF_ENDPOINT": "https://evil.example"},
                 {"MODELSCOPE_ENDPOINT": "http://127.0.0.1:1"}):
        r = await stack.http.post("/v1/models", json=_launch("m", envs=envs))
        error = _refused(r, 400, "envs")
        assert list(envs)[0] in error["message"] and "worker's environment" in error["message"]
    await _still_serves(stack, ["base-0"])
    for i, envs in enumerate(({"HF_ENDPOINT": "https://hf-mirror.com"},
                              {"HF_ENDPOINT": "http://mirror.internal:8080/"},
                              {"MODELSCOPE_ENDPOINT": "https://www.modelscope.ai"})):
        r = await stack.http.post("/v1/models", json=_launch(f"ok{i}", envs=envs))
        assert r.status_code == 200, r.text


async def test_env_values_must_be_strings(stack):
    r = await stack.http.post("/v1/models", json=_launch("m", envs={"OMP_NUM_THREADS": 2}))
    _refused(r, 400, "envs")
    await _still_serves(stack, ["base-0"])


async def test_harmless_envs_launch(stack):
    envs = {"OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false", "HF_TOKEN": "hf_x",
            "HF_HUB_OFFLINE": "1", "XINFERENCE_MODEL_SRC": "modelscope", "XINFERENCE_HUB_TIMEOUT": "2.5"}
    r = await stack.http.post("/v1/models", json=_launch("m", envs=envs))
    assert r.status_code == 200, r.text
    await _still_serves(stack, ["base-0", "m-0"])


async def test_supervisor_checks_envs_of_callers_that_skip_rest(stack):
    with pytest.raises(InvalidRequestError) as info:
        await stack.supervisor.launch_model({**_launch("m"), "env": {"LD_PRELOAD": "/x.so"}})
    assert info.value.param == "envs" and "LD_PRELOAD" in info.value.message
    await _still_serves(stack, ["base-0"])


# ---- trust_remote_code ----------------------------------------------------------------


@pytest.mark.parametrize("request_body", [
    _launch("m", trust_remote_code=True),
    _launch("m", trust_remote_code=False),
    {"model_name": "all-MiniLM-L6-v2", "model_type": "embedding", "model_uid": "m",
     "trust_remote_code": True},
    {"model_name": "bge-reranker-base", "model_type": "rerank", "model_uid": "m",
     "trust_remote_code": True},
])
async def test_trust_remote_code_is_a_server_setting(stack, request_body):
    r = await stack.http.post("/v1/models", json=request_body)
    error = _refused(r, 400, "trust_remote_code", "server_setting")
    assert "--trust-remote-code" in error["message"] and TRUST_REMOTE_CODE_ENV in error["message"]
    await _still_serves(stack, ["base-0"])


@pytest.mark.parametrize("model_type,model_name", [
    ("embedding", "jina-embeddings-v2-small-en"),
    ("embedding", "nomic-embed-text-v1.5"),
    ("rerank", "jina-reranker-v2"),
])
async def test_family_that_runs_its_own_code_needs_a_worker_that_allows_it(stack, model_type, model_name):
    body = {"model_name": model_name, "model_type": model_type, "model_uid": "remote"}
    r = await stack.http.post("/v1/models", json=body)
    error = _refused(r, 400, code="trust_remote_code_disabled")
    assert model_name in error["message"] and "--trust-remote-code" in error["message"]
    await _still_serves(stack, ["base-0"])
    # the same worker, now reporting that its machine allows it: the launch goes there
    await stack.supervisor.add_worker(stack.address, {"memory_available": 1, "gpus": [],
                                                      "trust_remote_code": True})
    r = await stack.http.post("/v1/models", json=body)
    assert r.status_code == 200, r.text
    assert "remote-0" in await stack.worker.launched()


# ---- replicas ----------------------------------------------------------------------


@pytest.mark.parametrize("replica", [0, MAX_REPLICAS + 1, 400, "abc", 1.5])
async def test_replica_count_is_bounded(stack, replica):
    r = await stack.http.post("/v1/models", json=_launch("m", replica=replica))
    _refused(r, 400, "replica")
    await _still_serves(stack, ["base-0"])


async def test_supervisor_bounds_replicas_of_callers_that_skip_rest(stack):
    for replica in (MAX_REPLICAS + 1, "3", True):
        with pytest.raises(InvalidRequestError) as info:
            await stack.supervisor.launch_model(_launch("m", replica=replica))
        assert info.value.param == "replica"
    await _still_serves(stack, ["base-0"])


async def test_a_worker_holds_a_bounded_number_of_replicas(stack):
    launched = ["base-0"]
    free = MAX_REPLICAS_PER_WORKER - 1
    i = 0
    while free > 0:
        n = min(MAX_REPLICAS, free)
        r = await stack.http.post("/v1/models", json=_launch(f"m{i}", replica=n))
        assert r.status_code == 200, r.text
        launched += [f"m{i}-{k}" for k in range(n)]
        free -= n
        i += 1
    # the worker is full: a launch is refused whole, before any process starts
    r = await stack.http.post("/v1/models", json=_launch("over", replica=1))
    error = _refused(r, 400, "replica", "replica_limit")
    assert str(MAX_REPLICAS_PER_WORKER) in error["message"]
    await _still_serves(stack, launched)
    # room again once a model is terminated
    assert (await stack.http.delete("/v1/models/m0")).status_code == 200
    r = await stack.http.post("/v1/models", json=_launch("after", replica=1))
    assert r.status_code == 200, r.text


def test_placement_spreads_over_the_room_left_and_refuses_what_does_not_fit():
    workers = [WorkerView("a:1", 12, 10), WorkerView("b:1", 12, 5), WorkerView("c:1", 16, 99)]
    chosen = choose_workers(workers, 8, max_per_worker=16)
    assert sorted(chosen) == ["a:1"] * 4 + ["b:1"] * 4  # c is full
    with pytest.raises(InvalidRequestError) as info:
        choose_workers(workers, 9, max_per_worker=16)
    assert info.value.code == "replica_limit" and "room for 8" in info.value.message


def test_placement_of_a_remote_code_model_goes_to_workers_that_allow_it():
    workers = [WorkerView("a:1", 0, 10), WorkerView("b:1", 5, 5, trust_remote_code=True)]
    assert choose_workers(workers, 2, remote_code_model="jina") == ["b:1", "b:1"]
    assert choose_workers(workers, 1) == ["a:1"]
    with pytest.raises(InvalidRequestError) as info:
        choose_workers(workers, 1, worker_ip="a", remote_code_model="jina")
    assert info.value.code == "trust_remote_code_disabled" and "no worker at a" in info.value.message


# ---- typed engine options -----------------------------------------------------------


@pytest.mark.parametrize("options,param", [
    ({"n_ctx": "abc"}, "n_ctx"),
    ({"n_ctx": 0}, "n_ctx"),
    ({"n_ctx": -5}, "n_ctx"),
    ({"n_ctx": 512.5}, "n_ctx"),
    ({"n_ctx": GEMMA_CONTEXT + 1}, "n_ctx"),
    ({"n_parallel": 0}, "n_parallel"),
    ({"n_parallel": 100_000}, "n_parallel"),
    ({"n_batch": True}, "n_batch"),
    ({"use_mmap": "true"}, "use_mmap"),
    ({"stream_interval": -1}, "stream_interval"),
    ({"queue_timeout_s": "soon"}, "queue_timeout_s"),
    ({"rope_freq": 2}, "rope_freq"),  # not an option of the engine
])
async def test_llm_engine_options_are_typed_and_ranged(stack, options, param):
    r = await stack.http.post("/v1/models", json=_launch("m", **options))
    error = _refused(r, 400, param)
    if param == "n_ctx" and options[param] == GEMMA_CONTEXT + 1:
        assert "context_length" in error["message"]
    await _still_serves(stack, ["base-0"])


@pytest.mark.parametrize("model_type,model_name,options,param", [
    ("embedding", "all-MiniLM-L6-v2", {"max_batch": "4"}, "max_batch"),
    ("embedding", "all-MiniLM-L6-v2", {"max_batch": 0}, "max_batch"),
    ("embedding", "all-MiniLM-L6-v2", {"packed": "no"}, "packed"),
    ("embedding", "all-MiniLM-L6-v2", {"device": "cuda; rm"}, "device"),
    ("embedding", "all-MiniLM-L6-v2", {"dtype": "int4"}, "dtype"),
    ("rerank", "bge-reranker-base", {"batch_wait_ms": 5000}, "batch_wait_ms"),
    ("rerank", "bge-reranker-base", {"max_length": "long"}, "max_length"),
])
async def test_embedding_and_rerank_options_are_typed(stack, model_type, model_name, options, param):
    body = {"model_name": model_name, "model_type": model_type, "model_uid": "m", **options}
    _refused(await stack.http.post("/v1/models", json=body), 400, param)
    await _still_serves(stack, ["base-0"])


async def test_good_options_reach_the_plan(stack):
    r = await stack.http.post("/v1/models", json=_launch("m", n_ctx=GEMMA_CONTEXT, n_parallel=2,
                                                         use_mmap=False, stream_interval=0))
    assert r.status_code == 200, r.text
    plan = (await stack.worker.launched())["m-0"]
    assert plan["engine_kwargs"] == {"n_ctx": GEMMA_CONTEXT, "n_parallel": 2, "use_mmap": False,
                                     "stream_interval": 0}


# ---- request sizes --------------------------------------------------------------------

BIG = "x" * (MAX_TEXT_CHARS + 1)
HALF = "x" * (MAX_TEXT_CHARS // 2 + 1)


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", {"messages": ASK, "chat_template_kwargs": {"messages": 1}},
     "chat_template_kwargs"),
    ("/v1/chat/completions", {"messages": ASK, "chat_template_kwargs": {"add_generation_prompt": False,
                                                                        "bos_token": "x"}},
     "chat_template_kwargs"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": BIG}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": BIG}]}]},
     "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": HALF}] * 2}, "messages"),
    ("/v1/chat/completions", {"messages": ASK * (MAX_CHAT_MESSAGES + 1)}, "messages"),
    ("/v1/chat/completions", {"messages": ASK, "stop": "s" * (MAX_STOP_CHARS + 1)}, "stop"),
    ("/v1/chat/completions", {"messages": ASK, "stop": ["ok", "s" * (MAX_STOP_CHARS + 1)]}, "stop"),
    ("/v1/completions", {"prompt": BIG}, "prompt"),
    ("/v1/completions", {"prompt": "hi", "stop": ["s" * (MAX_STOP_CHARS + 1)]}, "stop"),
    ("/v1/embeddings", {"input": ["a"] * (MAX_EMBEDDING_INPUTS + 1)}, "input"),
    ("/v1/embeddings", {"input": BIG}, "input"),
    ("/v1/embeddings", {"input": ["a", BIG]}, "input"),
    ("/v1/rerank", {"query": "q", "documents": ["d"] * (MAX_RERANK_DOCUMENTS + 1)}, "documents"),
    ("/v1/rerank", {"query": "q", "documents": ["d", BIG]}, "documents"),
])
async def test_oversized_requests_are_refused(stack, path, body, param):
    r = await stack.http.post(path, json={"model": "base", **body})
    _refused(r, 400, param)
    await _still_serves(stack, ["base-0"])


async def test_oversized_rerank_query_is_refused(stack):
    r = await stack.http.post("/v1/rerank", json={"model": "base", "query": BIG, "documents": ["d"]})
    assert str(MAX_TEXT_CHARS) in _refused(r, 400)["message"]
    await _still_serves(stack, ["base-0"])


async def test_oversized_rerank_query_names_the_field(stack):
    r = await stack.http.post("/v1/rerank", json={"model": "base", "query": BIG, "documents": ["d"]})
    _refused(r, 400, "query")


async def test_limits_show_in_openapi(stack):
    schemas = (await stack.http.get("/openapi.json")).json()["components"]["schemas"]
    chat = schemas["ChatCompletionRequest"]["properties"]
    assert chat["messages"]["maxItems"] == MAX_CHAT_MESSAGES
    rerank = schemas["RerankRequest"]["properties"]
    assert rerank["documents"]["maxItems"] == MAX_RERANK_DOCUMENTS
    assert rerank["query"]["maxLength"] == MAX_TEXT_CHARS
    launch = schemas["LaunchModelRequest"]["properties"]
    assert launch["replica"]["maximum"] == MAX_REPLICAS


@pytest.mark.parametrize("path,body", [
    ("/api/chat", {"messages": ASK * (MAX_CHAT_MESSAGES + 1)}),
    ("/api/chat", {"messages": [{"role": "user", "content": BIG}]}),
    ("/api/chat", {"messages": [{"role": "user", "content": HALF}] * 2}),
    ("/api/chat", {"messages": ASK, "options": {"stop": ["s" * (MAX_STOP_CHARS + 1)]}}),
    ("/api/chat", {"messages": ASK, "options": {"stop": ["s"] * 17}}),
    ("/api/generate", {"prompt": BIG}),
    ("/api/generate", {"prompt": "hi", "system": BIG}),
    ("/api/generate", {"prompt": "hi", "options": {"stop": "s" * (MAX_STOP_CHARS + 1)}}),
    ("/api/embed", {"input": ["a"] * (MAX_EMBEDDING_INPUTS + 1)}),
    ("/api/embed", {"input": BIG}),
    ("/api/embeddings", {"prompt": BIG}),
])
async def test_oversized_ollama_requests_are_refused(stack, path, body):
    r = await stack.http.post(path, json={"model": "base", "stream": False, **body})
    assert r.status_code == 400, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    await _still_serves(stack, ["base-0"])


# ---- the worker's own checks ----------------------------------------------------------


class RecordingPool:
    """A main pool that records each process it is asked to start and starts none."""

    def __init__(self) -> None:
        self.started: List[Dict[str, str]] = []
        self.pythons: List[Optional[str]] = []  # None: the worker's own

    async def append_sub_pool(self, label: str, env: Dict[str, str],
                              start_python: Optional[str] = None) -> str:
        self.started.append(env)
        self.pythons.append(start_python)
        raise RuntimeError("no processes in this test")

    async def remove_sub_pool(self, address: str) -> None:
        return None


@pytest.fixture
async def real_worker():
    pool = await xo.create_actor_pool("127.0.0.1:0", n_process=0)
    address = pool.external_address
    recorder = RecordingPool()
    try:
        sup = await xo.create_actor(SupervisorActor, uid="supervisor", address=address)
        worker = await xo.create_actor(WorkerActor, address, recorder, uid="worker", address=address)
        yield sup, worker, recorder
    finally:
        await pool.stop()


def _plan(model_type: str, name: str) -> Dict[str, Any]:
    from xinference.model.plans import plan_model

    return plan_model(model_type, model_name=name).model_dump()


async def test_worker_refuses_envs_and_remote_code_before_a_process_starts(real_worker, monkeypatch):
    sup, worker, recorder = real_worker
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    gemma = _plan("LLM", "gemma-3")
    for env in ({"LD_PRELOAD": "/x.so"}, {"PYTHONPATH": "/tmp"}, {"HF_TOKEN": "a\u0000"}):
        with pytest.raises(InvalidRequestError) as info:
            await worker.launch_replica("r-0", gemma, env)
        assert info.value.param == "envs"
    with pytest.raises(InvalidRequestError) as info:
        await worker.launch_replica("r-0", _plan("embedding", "jina-embeddings-v2-small-en"), None)
    assert info.value.code == "trust_remote_code_disabled"
    assert recorder.started == []
    # what is allowed reaches the new process, with the GPUs the worker chose
    with pytest.raises(Exception, match="no processes"):
        await worker.launch_replica("r-0", gemma, {"OMP_NUM_THREADS": "2"})
    assert recorder.started == [{"OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": ""}]
    assert recorder.pythons == [None]  # llama.cpp runs in the worker's own Python
    # the worker reports its setting, which placement goes by
    (status,) = [w["status"] for w in await sup.list_workers()]
    assert status["trust_remote_code"] is False


async def test_worker_with_the_setting_starts_a_remote_code_family(real_worker, monkeypatch):
    _, worker, recorder = real_worker
    monkeypatch.setenv(TRUST_REMOTE_CODE_ENV, "1")
    with pytest.raises(Exception, match="no processes"):
        await worker.launch_replica("r-0", _plan("rerank", "jina-reranker-v2"), None)
    assert len(recorder.started) == 1


def test_allow_list_function_returns_a_copy_and_takes_none():
    assert check_launch_env(None) == {}
    given = {"HF_HUB_DOWNLOAD_TIMEOUT": "30"}
    checked = check_launch_env(given)
    assert checked == given and checked is not given
    with pytest.raises(InvalidRequestError):
        check_launch_env(["LD_PRELOAD"])
