"""Served single-stream decode speed and TTFT vs raw llama-cpp-python, side by side.

One run holds both: a raw in-process `llama_cpp.Llama` and a gemma-3 replica in a
fresh `xinference-local`, same GGUF file, n_ctx, n_threads, prompt, greedy sampling.
Rounds alternate raw, served, raw, served... (never both at once: they would share
the cores), so drift of the machine hits both sides alike.

Decode rate excludes time-to-first-token: decode steps / (end - first token), where
"end" is the last token (or the stop token) on the raw side and the chunk carrying
finish_reason on the served side. Steps are tokens - 1 for a length stop, tokens for
an early EOS (one more forward pass ran to sample it).
"""

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Set, Tuple

import httpx
from _local import LocalServer, exit_on_sigterm, launch, percentile, table

DECODE_PROMPT = (
    "The history of the printing press is a long story that begins in China, where "
    "woodblock printing was used centuries before Gutenberg. In this essay we"
)
TTFT_PROMPT = "Question {i}: what is the capital of France? Answer:"


@dataclass
class Run:
    ttft: float  # seconds: call/request -> first token/chunk
    steps: int  # decode steps between the first token and the end
    span: float  # seconds between the first token and the end
    tokens: int  # completion tokens produced

    @property
    def rate(self) -> float:
        return self.steps / self.span if self.span > 0 else float("nan")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="decode rounds per side")
    p.add_argument("--tokens", type=int, default=256, help="max_tokens per decode round")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="n_threads, both sides")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--ttft-rounds", type=int, default=10, help="short-prompt TTFT rounds per side")
    p.add_argument("--warmup", type=int, default=1, help="untimed decode rounds per side")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--prompt", default=DECODE_PROMPT, help="completion prompt for decode rounds")
    p.add_argument("--model", default="gemma-3")
    p.add_argument("--stream-interval", type=float, default=None,
                   help="engine stream_interval in seconds (default: the engine's; 0 = every token)")
    return p.parse_args()


class Raw:
    """In-process llama-cpp-python, driven the way the engine drives it."""

    def __init__(self, path: str, args: argparse.Namespace, stop_ids: Set[int]):
        import llama_cpp

        self.llm = llama_cpp.Llama(
            model_path=path, n_ctx=args.n_ctx, n_threads=args.threads, verbose=False
        )
        vocab = self.llm._model.vocab
        self.is_stop = lambda t: t in stop_ids or bool(llama_cpp.llama_vocab_is_eog(vocab, t))
        self.args = args

    def run(self, prompt: str, max_tokens: int) -> Run:
        ids = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        n, first, end, stopped = 0, 0.0, 0.0, False
        t0 = time.perf_counter()
        gen = self.llm.generate(
            ids, temp=0.0, top_k=self.args.top_k, top_p=self.args.top_p, min_p=0.0,
            repeat_penalty=1.0, reset=True,
        )
        try:
            for tok in gen:
                end = time.perf_counter()
                if n == 0:
                    first = end
                if self.is_stop(tok):
                    stopped = True
                    break
                n += 1
                if n >= max_tokens:
                    break
        finally:
            gen.close()
        return Run(first - t0, n if stopped else n - 1, end - first, n)


class Served:
    """Streaming /v1/completions against one replica, over a kept-alive connection."""

    def __init__(self, url: str, uid: str, args: argparse.Namespace):
        self.client = httpx.Client(base_url=url, timeout=httpx.Timeout(600.0))
        self.uid, self.args = uid, args

    def run(self, prompt: str, max_tokens: int) -> Run:
        body: Dict[str, Any] = {
            "model": self.uid, "prompt": prompt, "max_tokens": max_tokens, "stop": [],
            "temperature": 0.0, "top_k": self.args.top_k, "top_p": self.args.top_p,
            "stream": True, "stream_options": {"include_usage": True},
        }
        first = end = 0.0
        finish, tokens = None, -1
        t0 = time.perf_counter()
        with self.client.stream("POST", "/v1/completions", json=body) as r:
            if r.status_code != 200:
                raise RuntimeError(f"completion failed: {r.status_code} {r.read()!r}")
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                now = time.perf_counter()
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise RuntimeError(f"stream error: {chunk['error']}")
                for choice in chunk.get("choices") or []:
                    if not first and (choice.get("text") or choice.get("finish_reason")):
                        first = now
                    if choice.get("finish_reason"):
                        finish, end = choice["finish_reason"], now
                if chunk.get("usage"):
                    tokens = int(chunk["usage"]["completion_tokens"])
        if tokens < 0 or finish is None:
            raise RuntimeError("stream ended without usage or finish_reason")
        steps = tokens if finish == "stop" else tokens - 1
        return Run(first - t0, steps, end - first, tokens)

    def close(self) -> None:
        self.client.close()


def model_path(model: str) -> Tuple[str, Any]:
    from xinference.model.llm.launch import plan_launch

    plan = plan_launch(model)
    return str(plan.resolve_weights()), plan


def fmt(x: float, nd: int = 1) -> str:
    return f"{x:.{nd}f}"


def main() -> None:
    args = parse_args()
    exit_on_sigterm()
    path, plan = model_path(args.model)
    stop_ids = set(plan.family.stop_token_ids)
    print(f"model file: {path}")
    print(f"n_threads={args.threads} n_ctx={args.n_ctx} max_tokens={args.tokens} "
          f"rounds={args.rounds} ttft_rounds={args.ttft_rounds} stream_interval={args.stream_interval} "
          "(greedy, temp 0)")
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    raw = Raw(path, args, stop_ids)
    with LocalServer() as server:
        server.wait_ready()
        with httpx.Client(timeout=600) as c:
            uid = launch(c, server.url, {
                "model_name": args.model, "model_uid": "bench-decode",
                "n_ctx": args.n_ctx, "n_threads": args.threads,
                **({} if args.stream_interval is None else {"stream_interval": args.stream_interval}),
            })
        served = Served(server.url, uid, args)
        try:
            results: Dict[str, List[Run]] = {"raw": [], "served": []}
            for i in range(args.warmup + args.rounds):
                for name, side in (("raw", raw), ("served", served)):
                    run = side.run(args.prompt, args.tokens)
                    if i >= args.warmup:
                        results[name].append(run)
            ttft: Dict[str, List[float]] = {"raw": [], "served": []}
            for i in range(args.ttft_rounds):
                prompt = TTFT_PROMPT.format(i=i)
                for name, side in (("raw", raw), ("served", served)):
                    ttft[name].append(side.run(prompt, 1).ttft)
        finally:
            served.close()
    report(args, results, ttft)
    print("load average at end: {:.2f} {:.2f} {:.2f}  (other work on the machine skews both sides)"
          .format(*os.getloadavg()))


def report(args: argparse.Namespace, results: Dict[str, List[Run]],
           ttft: Dict[str, List[float]]) -> None:
    rows, medians = [], {}
    for name, runs in results.items():
        rates = [r.rate for r in runs]
        medians[name] = statistics.median(rates)
        toks = sorted({r.tokens for r in runs})
        rows.append([name, fmt(min(rates)), fmt(medians[name]), fmt(max(rates)),
                     "/".join(map(str, toks))])
    print("\nDecode tokens/s (excludes TTFT), single stream")
    print(table(["side", "min", "median", "max", "tokens"], rows))
    ratio = medians["served"] / medians["raw"]
    verdict = "ok" if ratio >= 0.95 else "BELOW TARGET"
    print(f"ratio served/raw of medians: {ratio:.3f}  (target >= 0.95: {verdict})")

    over = [(s - r) * 1000 for s, r in zip(ttft["served"], ttft["raw"])]
    rows = [[name, fmt(percentile(v, 50) * 1000), fmt(percentile(v, 90) * 1000)]
            for name, v in ttft.items()]
    rows.append(["served-raw", fmt(percentile(over, 50)), fmt(percentile(over, 90))])
    print(f"\nTime to first token, ms (short prompt, {args.ttft_rounds} rounds, paired overhead)")
    print(table(["side", "p50", "p90"], rows))
    p50 = percentile(over, 50)
    print(f"TTFT overhead p50: {p50:.1f} ms  (target <= 50 ms: "
          f"{'ok' if p50 <= 50 else 'ABOVE TARGET'})")


if __name__ == "__main__":
    main()
