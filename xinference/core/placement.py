"""Where replicas go and which replica serves a request. Pure functions."""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Set, Union

from ..errors import InvalidRequestError, NoWorkerError
from ..model import remote_code


@dataclass(frozen=True)
class WorkerView:
    address: str
    replicas: int
    memory_available: int
    gpus: int = 0
    # whether the worker lets models run code from their folders (trust_remote_code)
    trust_remote_code: bool = False

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
) -> List[str]:
    """One worker address per replica, spreading replicas over the least-loaded workers.

    `max_per_worker`: replicas a worker may hold in all (those it has count); a launch
    that does not fit is refused whole, before any process starts. `remote_code_model`:
    the model's name when it runs code from its folder; only workers that allow that
    may take it."""
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
    chosen = []
    for _ in range(replicas):
        best = min(load, key=lambda a: (load[a], -free[a], a))
        chosen.append(best)
        load[best] += 1
        if max_per_worker is not None and load[best] >= max_per_worker:
            del load[best]
    return chosen


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
