import pytest

from xinference.core.placement import WorkerView, choose_workers, pick_replica
from xinference.errors import InvalidRequestError, NoWorkerError

W = [WorkerView("10.0.0.1:1000", 0, 8), WorkerView("10.0.0.2:1000", 0, 16)]


def test_replicas_spread_over_workers():
    assert sorted(choose_workers(W, 2)) == ["10.0.0.1:1000", "10.0.0.2:1000"]
    # ties go to the worker with more free memory
    assert choose_workers(W, 1) == ["10.0.0.2:1000"]
    busy = [WorkerView("10.0.0.1:1000", 0, 8), WorkerView("10.0.0.2:1000", 3, 16)]
    assert choose_workers(busy, 3) == ["10.0.0.1:1000"] * 3


def test_worker_ip_and_errors():
    assert choose_workers(W, 2, "10.0.0.1") == ["10.0.0.1:1000"] * 2
    with pytest.raises(InvalidRequestError, match="10.9.9.9"):
        choose_workers(W, 1, "10.9.9.9")
    with pytest.raises(NoWorkerError):
        choose_workers([], 1)
    with pytest.raises(InvalidRequestError, match="GPU"):
        choose_workers(W, 1, n_gpu=1)
    assert choose_workers(W + [WorkerView("10.0.0.3:1", 5, 1, gpus=2)], 1, n_gpu=2) == ["10.0.0.3:1"]


def test_pick_replica_least_busy_then_round_robin():
    assert pick_replica([2, 0, 1], 0) == 1
    assert [pick_replica([0, 0, 0], c) for c in range(4)] == [0, 1, 2, 0]
    assert pick_replica([1, 0, 0], 0) == 1
    assert pick_replica([1, 0, 0], 2) == 2


def test_allocate_gpus():
    from xinference.core.placement import allocate_gpus

    assert allocate_gpus([0, 1, 2], set(), None) == []
    assert allocate_gpus([0, 1, 2], {0}, "auto") == [1]
    assert allocate_gpus([], set(), "auto") == []  # auto on a CPU machine: CPU
    assert allocate_gpus([0, 1, 2], {1}, 2) == [0, 2]
    with pytest.raises(InvalidRequestError, match="1 free GPU"):
        allocate_gpus([0, 1], {0}, 2)
    with pytest.raises(InvalidRequestError):
        allocate_gpus([0], set(), "many")
