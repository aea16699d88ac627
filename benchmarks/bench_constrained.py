"""What constrained decoding costs per token: the same chat requests with and without a
JSON-schema grammar, on the llama.cpp and the Transformers engine, one run.

Both engines serve the embedded Gemma 3 270M (llama.cpp: its Q4_K_M GGUF; Transformers:
the same weights as a float32 folder, tests/hf_gemma.py, cached per machine). A wave is
C concurrent /v1/chat/completions, `--tokens` new tokens each; constrained requests carry
a response_format schema (an array of 40 strings, `--schema` bounded in length or plain)
that cannot end before `--tokens`, so both sides generate the same count. Greedy (a row
checks its argmax against the grammar and masks only when refused) and sampled at 0.8
(every step masks the whole row). Rounds interleave free and constrained waves; printed:
aggregate tokens/s min/median/max and the ratio of medians constrained / free (goal:
>= 0.9).

    python benchmarks/bench_constrained.py
    python benchmarks/bench_constrained.py --rounds 1 --tokens 16 --engines llama.cpp   # smoke
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import httpx
from _local import measure_on_local, spread, table
from bench_transformers import PROMPTS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# 40 short strings: bounded lengths are the costly case for a grammar engine (its
# precomputed JSON-string token sets do not apply, each mask walks the whole vocabulary)
SCHEMAS = {
    "bounded": {"type": "array", "minItems": 40, "maxItems": 40,
                "items": {"type": "string", "minLength": 3, "maxLength": 12}},
    "plain": {"type": "array", "minItems": 40, "maxItems": 40, "items": {"type": "string"}},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokens", type=int, default=96, help="new tokens per request")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--temperatures", default="0,0.8")
    p.add_argument("--schema", choices=sorted(SCHEMAS), default="bounded")
    p.add_argument("--engines", default="llama.cpp,Transformers")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    args = p.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.temperatures = [float(t) for t in args.temperatures.split(",") if t.strip()]
    args.engines = [e for e in args.engines.split(",") if e]
    return args


def launch_bodies(engines: List[str]) -> Dict[str, Dict[str, Any]]:
    bodies: Dict[str, Dict[str, Any]] = {}
    if "llama.cpp" in engines:
        bodies["llama.cpp"] = {"model_name": "gemma-3", "model_uid": "g-llama", "model_engine": "llama.cpp",
                               "n_ctx": 1024, "n_parallel": 8}
    if "Transformers" in engines:
        from tests.hf_gemma import build_gemma_folder
        from xinference.model.llm.launch import plan_launch

        folder = build_gemma_folder(plan_launch("gemma-3").resolve_weights(),
                                    Path.home() / ".cache" / "xinference-tests" / "gemma-3-270m-hf")
        bodies["Transformers"] = {"model_name": "gemma-3", "model_uid": "g-tf", "model_engine": "Transformers",
                                  "model_format": "pytorch", "model_path": str(folder), "dtype": "float32",
                                  "max_num_seqs": 8}
    return bodies


async def one(client: httpx.AsyncClient, uid: str, prompt: str, tokens: int, schema: Optional[Dict[str, Any]],
              temperature: float, seed: int) -> int:
    constrained = schema is not None
    body: Dict[str, Any] = {"model": uid, "messages": [{"role": "user", "content": prompt}],
                            "max_tokens": tokens, "temperature": temperature, "seed": seed, "ignore_eos": True}
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "list", "schema": schema}}
    r = await client.post("/v1/chat/completions", json=body)
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
    out = r.json()
    if constrained and out["choices"][0]["finish_reason"] != "length":
        raise RuntimeError("a constrained answer ended before --tokens; raise the schema's minItems")
    return int(out["usage"]["completion_tokens"])


async def wave(client: httpx.AsyncClient, uid: str, c: int, tokens: int, schema: Optional[Dict[str, Any]],
               temperature: float = 0.0) -> float:
    t0 = time.perf_counter()
    counts = await asyncio.gather(*(one(client, uid, PROMPTS[i % len(PROMPTS)], tokens, schema, temperature, i)
                                    for i in range(c)))
    return sum(counts) / (time.perf_counter() - t0)


async def measure(url: str, uids: Dict[str, str], args: argparse.Namespace) -> Dict[str, Any]:
    results: Dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=900) as client:
        for engine, uid in uids.items():
            # warm-up: the first constrained request builds the grammar's view of the vocabulary
            schema = SCHEMAS[args.schema]
            await wave(client, uid, 1, 8, schema)
            await wave(client, uid, 1, 8, None)
            for t in args.temperatures:
                for c in args.concurrency:
                    free: List[float] = []
                    held: List[float] = []
                    for r in range(args.rounds):
                        for constrained in ((False, True) if r % 2 == 0 else (True, False)):
                            rate = await wave(client, uid, c, args.tokens, schema if constrained else None, t)
                            (held if constrained else free).append(rate)
                    results[f"{engine} T={t:g} C={c}"] = {"free": free, "constrained": held}
    return results


def main() -> None:
    args = parse_args()
    results = measure_on_local(launch_bodies(args.engines), lambda url, uids: measure(url, uids, args))
    rows = []
    for key, r in results.items():
        ratio = statistics.median(r["constrained"]) / statistics.median(r["free"])
        rows.append([key, spread(r["free"]), spread(r["constrained"]), f"{ratio:.3f}"])
    print(f"aggregate tokens/s, {args.tokens} tokens per request, {args.schema} schema, {args.rounds} rounds "
          "(min / median / max)")
    print(table(["engine, temperature, streams", "free", "JSON schema", "constrained/free"], rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
