"""What the Ollama-compatible route costs: the same streaming chat load through
`/api/chat` (NDJSON) and `/v1/chat/completions` (SSE) on one server, interleaved.

A fresh `xinference-local` with the embedded Gemma launched as `gemma` (llama.cpp,
`--n-parallel` slots, `--n-ctx` per slot, `--threads`). Each round sends one wave of
C (`--concurrency`, default 8) concurrent streaming chats through each route, in an
order that alternates per round, so drift of the machine hits both alike. Both routes
ask for the same thing: greedy decoding (temperature 0, no repetition penalty),
`--tokens` tokens at most, one distinct user message per stream (round and route are
part of it, so no wave reuses another's cached prompt). One warm-up wave per route first.

Per wave: aggregate tokens/s = completion tokens (usage / eval_count) / wave wall time;
TTFT = request sent -> first piece of text (p50 over the wave). Printed as min /
median / max over `--rounds`, then the ratio of the medians, /api/chat over
/v1/chat/completions (target: >= 0.95). Run on an otherwise idle machine.

    python benchmarks/bench_ollama.py --rounds 5
    python benchmarks/bench_ollama.py --rounds 1 --tokens 16 --concurrency 2   # smoke
"""

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Dict, List, Optional, Tuple

import httpx
from _local import LOAD_TOPICS, LocalServer, exit_on_sigterm, launch, percentile, table

MODEL_UID = "gemma"
ROUTES = ("openai", "ollama")


def message(route: str, round_no: int, i: int) -> List[Dict[str, str]]:
    tag = f"{round_no}{'AB'[ROUTES.index(route)]}-{i}"  # same length for both routes
    return [{"role": "user", "content": f"Request {tag}. {LOAD_TOPICS[i % len(LOAD_TOPICS)]}"}]


async def openai_stream(client: httpx.AsyncClient, messages: List[Dict[str, str]],
                        tokens: int) -> Tuple[Optional[float], int]:
    """(seconds to the first text, completion tokens) of one streamed chat."""
    body = {"model": MODEL_UID, "messages": messages, "max_tokens": tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    t0, first, count = time.perf_counter(), None, 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            if first is None and any((c.get("delta") or {}).get("content") for c in chunk["choices"]):
                first = time.perf_counter() - t0
            if chunk.get("usage"):
                count = int(chunk["usage"]["completion_tokens"])
    return first, count


async def ollama_stream(client: httpx.AsyncClient, messages: List[Dict[str, str]],
                        tokens: int) -> Tuple[Optional[float], int]:
    body = {"model": MODEL_UID, "messages": messages,
            "options": {"num_predict": tokens, "temperature": 0, "repeat_penalty": 1.0}}
    t0, first, count = time.perf_counter(), None, 0
    async with client.stream("POST", "/api/chat", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line:
                continue
            obj = json.loads(line)
            if "error" in obj:
                raise RuntimeError(obj["error"])
            if first is None and obj.get("message", {}).get("content"):
                first = time.perf_counter() - t0
            if obj.get("done"):
                count = int(obj["eval_count"])
    return first, count


STREAMS = {"openai": openai_stream, "ollama": ollama_stream}


async def wave(url: str, route: str, round_no: int, args: argparse.Namespace) -> Dict[str, float]:
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(STREAMS[route](client, message(route, round_no, i), args.tokens)
                                         for i in range(args.concurrency)))
        wall = time.perf_counter() - start
    return {"tok_s": sum(n for _, n in results) / wall,
            "ttft_p50": percentile([t for t, _ in results if t is not None], 50),
            "tokens": sum(n for _, n in results) / len(results)}


def run(args: argparse.Namespace) -> Dict[str, List[Dict[str, float]]]:
    out: Dict[str, List[Dict[str, float]]] = {r: [] for r in ROUTES}
    with LocalServer() as server:
        server.wait_ready()
        with httpx.Client() as c:
            launch(c, server.url, {"model_name": "gemma-3", "model_uid": MODEL_UID, "n_ctx": args.n_ctx,
                                   "n_parallel": args.n_parallel, "n_threads": args.threads})
        for route in ROUTES:  # warm-up, not counted
            asyncio.run(wave(server.url, route, -1, args))
        for round_no in range(args.rounds):
            order = ROUTES if round_no % 2 == 0 else ROUTES[::-1]
            for route in order:
                result = asyncio.run(wave(server.url, route, round_no, args))
                out[route].append(result)
                print(f"  round {round_no + 1} {route}: {result['tok_s']:.1f} tok/s, "
                      f"TTFT p50 {result['ttft_p50'] * 1000:.0f} ms, {result['tokens']:.0f} tokens/stream",
                      flush=True)
    return out


def report(results: Dict[str, List[Dict[str, float]]], args: argparse.Namespace) -> None:
    def spread(route: str, key: str, scale: float, fmt: str) -> List[str]:
        values = [r[key] * scale for r in results[route]]
        return [format(v, fmt) for v in (min(values), statistics.median(values), max(values))]

    rows = [[f"{route} tok/s", *spread(route, "tok_s", 1, ".1f")] for route in ROUTES]
    rows += [[f"{route} TTFT p50 ms", *spread(route, "ttft_p50", 1000, ".0f")] for route in ROUTES]
    print(f"\n{args.concurrency} concurrent streams, {args.tokens} tokens each, {args.rounds} rounds")
    print(table(["", "min", "median", "max"], rows))
    med = {r: statistics.median(x["tok_s"] for x in results[r]) for r in ROUTES}
    ratio = med["ollama"] / med["openai"]
    print(f"/api/chat / /v1/chat/completions aggregate tokens/s (medians) = {ratio:.3f} "
          f"(target >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--n-ctx", type=int, default=1024, help="context per slot")
    parser.add_argument("--n-parallel", type=int, default=8, help="llama.cpp slots")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    exit_on_sigterm()
    report(run(args), args)


if __name__ == "__main__":
    main()
