"""Where replicas go and which replica serves a request. Pure functions."""

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Union

from ..errors import InsufficientMemoryError, InvalidRequestError, NoWorkerError
from ..model import remote_code
from ..model.memory import MemoryNeed, gib


@dataclass(frozen=True)
class WorkerView:
    address: str
    replicas: int
    memory_available: int
    gpus: int = 0
    # whether the worker lets models run code from their folders (trust_remote_code)
    trust_remote_code: bool = False
    memory_total: int = 0

    @property
    def ip(self) -> str:
        return self.address.rsplit(":", 1)[0]


def choose_workers(
    workers: Sequence[WorkerView],
    replicas: int,
    worker_ip: Optional[str] = None,
    n_gpu: int = 0,
    max_per_worker: Optional[int] = None,
    remote_code_model: Optional[str] = None,
    need: Optional[Mapping[str, MemoryNeed]] = None,
) -> List[str]:
    """One worker address per replica, spreading replicas over the least-loaded workers.

    `max_per_worker`: replicas a worker may hold in all (those it has count); a launch
    that does not fit is refused whole, before any process starts. `remote_code_model`:
    the model's name when it runs code from its folder; only workers that allow that
    may take it. `need`: what one replica holds, per worker that could say; a replica
    goes only where it fits in the free memory (`memory_available`: less what the
    worker's replicas reserved), to the worker with the most room left, and a launch
    that does not fit is refused whole."""
    if replicas < 1:
        raise InvalidRequestError("replica must be at least 1.", param="replica")
    candidates = list(workers)
    if worker_ip:
        candidates = [w for w in candidates if worker_ip in (w.ip, w.address)]
        if not candidates:
            known = ", ".join(sorted(w.address for w in workers)) or "none"
            raise InvalidRequestError(
                f"No worker at {worker_ip!r}; workers: {known}.", param="worker_ip"
            )
    if not candidates:
        raise NoWorkerError("No worker is registered with the supervisor yet.")
    if n_gpu > 0:
        candidates = [w for w in candidates if w.gpus >= n_gpu]
        if not candidates:
            most = max((w.gpus for w in workers), default=0)
            raise InvalidRequestError(
                f"n_gpu={n_gpu} asked, but no worker has that many GPUs (most: {most}). "
                "Use n_gpu=auto or null to run on the CPU.",
                param="n_gpu",
            )
    if remote_code_model:
        candidates = [w for w in candidates if w.trust_remote_code]
        if not candidates:
            where = f" at {worker_ip}" if worker_ip else ""
            raise remote_code.refusal(remote_code_model, f"no worker{where} allows that")
    if max_per_worker is not None:
        room = sum(max(0, max_per_worker - w.replicas) for w in candidates)
        if room < replicas:
            raise InvalidRequestError(
                f"replica={replicas} does not fit: a worker holds at most {max_per_worker} "
                f"replicas (XINFERENCE_MAX_REPLICAS_PER_WORKER), and the "
                f"{'worker' if len(candidates) == 1 else f'{len(candidates)} workers'} that may "
                f"take this model have room for {room} more. Terminate a model or add a worker.",
                param="replica", code="replica_limit")
        candidates = [w for w in candidates if w.replicas < max_per_worker]
    load = {w.address: w.replicas for w in candidates}
    free = {w.address: w.memory_available for w in candidates}
    sized = {a: n.total for a, n in (need or {}).items() if a in load}
    chosen: List[str] = []
    for _ in range(replicas):
        fits = [a for a in load if a not in sized or free[a] >= sized[a]]
        if not fits:
            raise _no_room(candidates, need or {}, replicas, len(chosen))
        if sized:  # the most room left after it; then the fewest replicas
            best = min(fits, key=lambda a: (-(free[a] - sized.get(a, 0)), load[a], a))
        else:
            best = min(fits, key=lambda a: (load[a], -free[a], a))
        chosen.append(best)
        load[best] += 1
        free[best] -= sized.get(best, 0)
        if max_per_worker is not None and load[best] >= max_per_worker:
            del load[best]
    return chosen


def _no_room(candidates: Sequence[WorkerView], need: Mapping[str, MemoryNeed], replicas: int,
             placed: int) -> Exception:
    rows = "; ".join(f"worker {w.address} has {gib(max(0, w.memory_available))} free"
                     + (f" of {gib(w.memory_total)}" if w.memory_total else "")
                     for w in candidates)
    first = next(iter(need.values()))
    what = f"One replica needs {first.text()}"
    many = f" {placed} of the {replicas} replicas fit." if replicas > 1 and placed else ""
    message = (f"{what}; {rows}.{many} Lower n_ctx / n_parallel (or max_num_seqs, "
               "kv_cache_space_gib), pick a smaller quantization, terminate a model or add a worker "
               "(XINFERENCE_CHECK_MEMORY=0 on the workers' supervisor skips this check).")
    never = all(w.memory_total and need[w.address].total > w.memory_total
                for w in candidates if w.address in need)
    if never:  # larger than any machine: asking again will not help
        return InvalidRequestError(message, param="engine_kwargs", code="insufficient_memory")
    return InsufficientMemoryError(message, param="engine_kwargs", code="insufficient_memory")


def outstanding(reported: Mapping[str, int], known: Mapping[str, int]) -> int:
    """Memory a worker's replicas reserved but do not hold yet (a loading replica, the
    weights llama.cpp maps from disk): what the worker reported for each, else (a
    replica placed after its last heartbeat) its whole reservation."""
    uids: Dict[str, int] = {**known, **reported}
    return sum(uids.values())


def pick_replica(inflight: Sequence[int], cursor: int) -> int:
    """Index of the least busy replica; ties go round-robin from `cursor`."""
    if not inflight:
        raise ValueError("no replica")
    low = min(inflight)
    n = len(inflight)
    for step in range(n):
        i = (cursor + step) % n
        if inflight[i] == low:
            return i
    return 0  # unreachable: some index holds the minimum


def allocate_gpus(
    available: Sequence[int], taken: Set[int], wanted: Union[int, str, None]
) -> List[int]:
    """GPU indices for one replica: `wanted` GPUs, one for "auto" when one is free,
    none for None/0."""
    free = [g for g in available if g not in taken]
    if wanted is None or wanted == 0:
        return []
    if wanted == "auto":
        return free[:1]
    if not isinstance(wanted, int) or wanted < 0:
        raise InvalidRequestError(f"n_gpu must be a count, auto or null, not {wanted!r}.", param="n_gpu")
    if len(free) < wanted:
        raise InvalidRequestError(
            f"n_gpu={wanted} asked, but this worker has {len(free)} free GPU(s) "
            f"of {len(available)}.",
            param="n_gpu",
        )
    return free[:wanted]


def check_gpu_memory(need: MemoryNeed, gpus: Sequence[Mapping[str, Any]], chosen: Sequence[int]) -> None:
    """A replica's weights and KV cache, split over the GPUs reserved for it, must fit
    in what each has free."""
    per_gpu = (need.weights + need.kv_cache) // max(1, len(chosen))
    for gpu in gpus:
        if gpu["index"] in chosen and gpu.get("memory_free", per_gpu) < per_gpu:
            raise InsufficientMemoryError(
                f"One replica needs {gib(per_gpu)} on each of its {len(chosen)} GPU(s) (of "
                f"{need.text()}); GPU {gpu['index']} ({gpu.get('name', '')}) has "
                f"{gib(gpu['memory_free'])} free of {gib(gpu.get('memory_total', 0))}. Lower "
                "n_ctx or max_model_len, pick a smaller quantization, or use more GPUs (n_gpu).",
                param="n_gpu", code="insufficient_memory")
