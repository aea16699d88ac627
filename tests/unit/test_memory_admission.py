"""Memory-aware admission: what a replica needs is estimated from its weights and
launch options, a launch goes only where it fits in free memory less what placed
replicas reserved, and one that fits nowhere is refused before any process starts."""

import json
import os

import pytest

from xinference.core.placement import WorkerView, check_gpu_memory, choose_workers, outstanding
from xinference.core.resources import unheld_bytes
from xinference.errors import InsufficientMemoryError, InvalidRequestError
from xinference.model.llm.launch import plan_launch
from xinference.model.memory import MemoryNeed, kv_bytes_per_token

GiB = 1 << 30


def test_kv_per_token_from_a_gguf_header_and_a_config():
    path = plan_launch("gemma-3").resolve_weights()
    # Gemma 3 270M: 18 layers, 1 KV head of 256 dims, keys and values in f16
    assert kv_bytes_per_token(path) == 18 * 1 * (256 + 256) * 2


def test_kv_per_token_from_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "hidden_size": 256}))
    assert kv_bytes_per_token(str(tmp_path)) == 2 * 4 * 2 * 32 * 2
    (tmp_path / "config.json").write_text("not json")
    assert kv_bytes_per_token(str(tmp_path)) is None
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    assert kv_bytes_per_token(str(bad)) is None


def test_llama_cpp_reserves_n_ctx_times_n_parallel():
    small = plan_launch("gemma-3", engine_kwargs={"n_ctx": 1024, "n_parallel": 2}).memory_need()
    path = plan_launch("gemma-3").resolve_weights()
    assert small.basis == "disk" and small.weights == os.path.getsize(path)
    assert small.kv_tokens == 2048 and small.kv_cache == 2048 * 18432
    big = plan_launch("gemma-3", engine_kwargs={"n_ctx": 32768, "n_parallel": 256}).memory_need()
    assert big.kv_cache == 32768 * 256 * 18432
    assert "KV cache 144.00 GiB for 8388608 tokens" in big.text()


def test_weights_not_here_are_estimated_from_the_catalogue():
    need = plan_launch("qwen1.5-chat", model_format="ggufv2", model_size_in_billions="0_5",
                       quantization="q4_k_m").memory_need()
    assert need.basis == "catalogue" and need.kv_cache == 0
    assert need.weights == int(0.5e9 * 4.5 / 8)  # Q4_K: 144 bytes per 256 weights
    assert "catalogue estimate" in need.text()


def _need(gib: float) -> MemoryNeed:
    return MemoryNeed(weights=int(gib * GiB))


def test_placement_goes_where_it_fits_with_most_room():
    workers = [WorkerView("a:1", 0, 6 * GiB, memory_total=8 * GiB),
               WorkerView("b:1", 3, 10 * GiB, memory_total=16 * GiB)]
    need = {"a:1": _need(4), "b:1": _need(4)}
    assert choose_workers(workers, 1, need=need) == ["b:1"]  # more room, though busier
    # the second replica sees the first's reservation: b has 6 left, a 6: fewer replicas wins
    assert choose_workers(workers, 2, need=need) == ["b:1", "a:1"]
    assert choose_workers(workers, 3, need=need) == ["b:1", "a:1", "b:1"]
    with pytest.raises(InsufficientMemoryError) as e:
        choose_workers(workers, 4, need=need)
    assert "3 of the 4 replicas fit" in e.value.message and "4.00 GiB" in e.value.message
    # a worker that could not estimate takes replicas as before
    assert choose_workers(workers, 1, need={"a:1": _need(100)}) == ["b:1"]


def test_a_replica_larger_than_any_worker_is_a_400_else_a_503():
    workers = [WorkerView("a:1", 0, 2 * GiB, memory_total=8 * GiB)]
    with pytest.raises(InvalidRequestError) as never:
        choose_workers(workers, 1, need={"a:1": _need(9)})
    assert never.value.code == "insufficient_memory"
    assert "worker a:1 has 2.00 GiB free of 8.00 GiB" in never.value.message
    with pytest.raises(InsufficientMemoryError) as now:
        choose_workers(workers, 1, need={"a:1": _need(3)})
    assert now.value.status_code == 503 and now.value.retry_after


def test_outstanding_takes_the_workers_figure_where_it_has_one():
    assert outstanding({"m-0": 100}, {"m-0": 1000, "m-1": 500}) == 600
    assert outstanding({"orphan": 7}, {}) == 7


def test_unheld_bytes_subtracts_what_the_process_holds():
    me = os.getpid()
    assert unheld_bytes(me, 1) == 0  # this process holds more than a byte
    held = 64 * GiB - unheld_bytes(me, 64 * GiB)
    assert 1 << 20 < held < 8 * GiB
    assert unheld_bytes(None, 5) == 5 and unheld_bytes(2**22 + 12345, 5) == 5  # no such process


def test_gpu_memory_is_checked_on_the_gpus_reserved():
    gpus = [{"index": 0, "name": "A", "memory_free": 10 * GiB, "memory_total": 16 * GiB},
            {"index": 1, "name": "B", "memory_free": 3 * GiB, "memory_total": 16 * GiB}]
    check_gpu_memory(_need(8), gpus, [0])
    check_gpu_memory(_need(6), gpus, [0, 1])  # 3 GiB on each
    with pytest.raises(InsufficientMemoryError, match="GPU 1 .B. has 3.00 GiB free"):
        check_gpu_memory(_need(8), gpus, [0, 1])


def test_the_header_reader_agrees_with_the_gguf_package(tiny_llama, tiny_llama_gguf):
    from gguf import GGUFReader

    from xinference.model.memory import gguf_metadata

    mine = gguf_metadata(tiny_llama_gguf)
    reader = GGUFReader(tiny_llama_gguf)
    for key, f in reader.fields.items():
        if not f.types or key.startswith("GGUF."):
            continue
        theirs = f.contents()
        if isinstance(theirs, list) and len(theirs) > 4096:
            assert mine[key] is None  # a vocabulary: skipped
        elif isinstance(theirs, float):
            assert mine[key] == pytest.approx(theirs), key
        else:
            assert mine[key] == theirs, key
    # the folder it came from says the same per-token size
    assert kv_bytes_per_token(tiny_llama_gguf) == kv_bytes_per_token(str(tiny_llama))
