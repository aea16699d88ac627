"""What a shared prefill saves: one request with n=4 against 4 separate requests for the
same prompt, time to the last token of all four, on the llama.cpp and the Transformers
engine, one run.

Both engines serve the embedded Gemma 3 270M (llama.cpp: its Q4_K_M GGUF; Transformers:
the same weights as a float32 folder, tests/hf_gemma.py, cached per machine). Each
round's prompt is new (a round number leads it), so neither side finds it cached from
an earlier round; the four separate requests are sent at once. Sampling at temperature
0.8 with seeds, `--tokens` new tokens per choice (ignore_eos). Rounds alternate which
side goes first; printed: seconds to the last token, min/median/max, and the ratio of
medians separate / n=4 (goal: >= 1.5).

    python benchmarks/bench_choices.py
    python benchmarks/bench_choices.py --rounds 1 --tokens 8 --engines llama.cpp   # smoke
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import httpx
from _local import measure_on_local, spread, table
from bench_constrained import launch_bodies

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# ~700 tokens of context before the question, as a retrieval-augmented prompt has
CONTEXT = " ".join(f"Note {i}: the shipment of crate {i * 7} left dock {i % 5} at {i % 12 + 1} o'clock"
                   " and reached its warehouse without damage." for i in range(30))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokens", type=int, default=32, help="new tokens per choice")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--engines", default="llama.cpp,Transformers")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    args = p.parse_args()
    args.engines = [e for e in args.engines.split(",") if e]
    return args


def _prompt(round_no: int, side: str) -> str:
    return f"Round {round_no} ({side}). {CONTEXT}\nWhich dock did crate 21 leave from?"


async def _post(client: httpx.AsyncClient, body: Dict[str, Any]) -> Dict[str, Any]:
    r = await client.post("/v1/chat/completions", json=body)
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
    return r.json()


def _body(uid: str, prompt: str, tokens: int, **extra: Any) -> Dict[str, Any]:
    return {"model": uid, "messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
            "temperature": 0.8, "ignore_eos": True, **extra}


async def together(client: httpx.AsyncClient, uid: str, prompt: str, args: argparse.Namespace) -> float:
    t0 = time.perf_counter()
    out = await _post(client, _body(uid, prompt, args.tokens, n=args.n, seed=1))
    took = time.perf_counter() - t0
    if len(out["choices"]) != args.n or out["usage"]["completion_tokens"] != args.n * args.tokens:
        raise RuntimeError(f"expected {args.n} choices of {args.tokens} tokens: {out['usage']}")
    return took


async def apart(client: httpx.AsyncClient, uid: str, prompt: str, args: argparse.Namespace) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(_post(client, _body(uid, prompt, args.tokens, seed=1 + i)) for i in range(args.n)))
    return time.perf_counter() - t0


async def measure(url: str, uids: Dict[str, str], args: argparse.Namespace) -> Dict[str, Any]:
    results: Dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=900) as client:
        for engine, uid in uids.items():
            await together(client, uid, _prompt(-1, "warm-up"), args)
            shared: List[float] = []
            separate: List[float] = []
            for r in range(args.rounds):
                order = ("n", "apart") if r % 2 == 0 else ("apart", "n")
                for side in order:
                    if side == "n":
                        shared.append(await together(client, uid, _prompt(r, side), args))
                    else:
                        separate.append(await apart(client, uid, _prompt(r, side), args))
            results[engine] = {"n": shared, "separate": separate}
    return results


def main() -> None:
    args = parse_args()
    bodies = {engine: {**body, "n_ctx": 2048} if engine == "llama.cpp" else body
              for engine, body in launch_bodies(args.engines).items()}
    results = measure_on_local(bodies, lambda url, uids: measure(url, uids, args))
    rows = []
    for engine, r in results.items():
        ratio = statistics.median(r["separate"]) / statistics.median(r["n"])
        rows.append([engine, spread(r["separate"], 2), spread(r["n"], 2), f"{ratio:.2f}"])
    print(f"seconds to the last token of {args.n} choices x {args.tokens} tokens, ~700-token prompt, "
          f"{args.rounds} rounds (min / median / max)")
    print(table(["engine", f"{args.n} requests", f"n={args.n}", "speed-up"], rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
