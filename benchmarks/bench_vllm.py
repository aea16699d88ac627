"""Ours with the vLLM engine against vLLM's own OpenAI server: same model, same machine,
one run.

The model is the embedded Gemma 3 270M converted into a Hugging Face folder, the one the
vLLM tests use (tests/hf_gemma.py; vLLM reads the architecture from its config). Both servers run the same vLLM (the environment
scripts/install_vllm.sh made) with the same settings: `--max-model-len`, `--max-num-seqs`,
eager mode, the same dtype and KV cache size, and on a machine of at most 4 cores no core
kept back for vLLM's scheduler (what our engine does there). Both stay loaded and are
measured in interleaved rounds (the order alternates per round), only one under load at
a time, so drift of the machine hits both alike.

Load: waves of C concurrent streaming `/v1/completions` (C in `--concurrency`), a
different prompt per request, greedy, `--tokens` new tokens each (`ignore_eos`).
Aggregate tokens/s = completion tokens (from `usage`) / wave wall time; TTFT = request
sent -> first chunk with text. Printed as min/median/max over `--rounds` rounds, and
the ratio of medians ours / vLLM (goal: 0.95 to 1.1 for tokens/s).

    python benchmarks/bench_vllm.py
    python benchmarks/bench_vllm.py --rounds 1 --tokens 16      # smoke run
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import httpx
from _local import LocalServer, exit_on_sigterm, free_port, launch, percentile, table
from bench_transformers import PROMPTS, stream_completion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.hf_gemma import build_gemma_folder  # noqa: E402
from xinference.model.llm.engines.vllm.engine import SMALL_MACHINE_CORES, vllm_python  # noqa: E402

UID = "gemma-vllm"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokens", type=int, default=64, help="new tokens per request")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--max-num-seqs", type=int, default=8)
    p.add_argument("--max-model-len", type=int, default=1024)
    p.add_argument("--kv-gib", type=int, default=1, help="KV cache (CPU), GiB")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--model-dir", type=Path, help="HF folder (made if missing)",
                   default=Path.home() / ".cache" / "xinference-tests" / "gemma-3-270m-hf")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if max(args.concurrency) > len(PROMPTS):
        p.error(f"at most {len(PROMPTS)} concurrent requests")
    return args


class VllmServer:
    """`python -m vllm.entrypoints.openai.api_server` in its own session."""

    def __init__(self, python: str, folder: Path, args: argparse.Namespace):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile()
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        if (os.cpu_count() or 1) <= SMALL_MACHINE_CORES:
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
        cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1",
               "--port", str(self.port), "--model", str(folder), "--served-model-name", UID,
               "--max-model-len", str(args.max_model_len), "--max-num-seqs", str(args.max_num_seqs),
               "--dtype", args.dtype, "--enforce-eager", "--disable-log-stats",
               "--kv-cache-memory-bytes", str(args.kv_gib << 30)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"vLLM server exited:\n{self._log.read()[-3000:].decode()}")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError("vLLM server not ready")

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=20)
                break
            except subprocess.TimeoutExpired:
                continue


async def wave(url: str, c: int, tokens: int, round_no: int) -> Dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        t0 = time.perf_counter()
        # the round number in the prompt: no side reuses a prompt cached in an earlier round
        reqs = await asyncio.gather(*(stream_completion(client, f"{PROMPTS[i]} ({round_no})", tokens, UID)
                                      for i in range(c)))
        wall = time.perf_counter() - t0
    return {"tok_s": sum(r["tokens"] for r in reqs) / wall,
            "ttft_p50": percentile([r["ttft"] for r in reqs], 50)}


def main() -> None:
    args = parse_args()
    exit_on_sigterm()
    python = vllm_python()
    if python is None:
        raise SystemExit("vLLM is not installed: bash scripts/install_vllm.sh")
    from xinference.model.llm.launch import plan_launch

    folder = Path(build_gemma_folder(plan_launch("gemma-3").resolve_weights(), args.model_dir))
    print(f"model {folder}, vLLM python {python}, cores {os.cpu_count()}", flush=True)
    results: Dict[str, Dict[int, List[Dict[str, float]]]] = {
        side: {c: [] for c in args.concurrency} for side in ("ours", "vllm")}
    peer = VllmServer(python, folder, args)
    ours = LocalServer()
    try:
        t0 = time.perf_counter()
        peer.wait_ready(args.timeout)
        print(f"vLLM server ready in {time.perf_counter() - t0:.0f}s", flush=True)
        ours.wait_ready(args.timeout)
        t0 = time.perf_counter()
        with httpx.Client(timeout=args.timeout) as c:
            launch(c, ours.url, {
                "model_name": "gemma-3", "model_uid": UID, "model_format": "pytorch",
                "model_size_in_billions": "0_27", "model_engine": "vLLM",
                "model_path": str(folder), "max_model_len": args.max_model_len,
                "max_num_seqs": args.max_num_seqs, "dtype": args.dtype,
                "kv_cache_space_gib": args.kv_gib})
        print(f"ours launched in {time.perf_counter() - t0:.0f}s", flush=True)
        urls = {"ours": ours.url, "vllm": peer.url}
        for url in urls.values():  # warm-up, not counted
            asyncio.run(wave(url, 1, 4, -1))
        for r in range(args.rounds):
            order = list(urls) if r % 2 == 0 else list(reversed(urls))
            for c in args.concurrency:
                for side in order:
                    w = asyncio.run(wave(urls[side], c, args.tokens, r))
                    results[side][c].append(w)
                    print(f"  round {r + 1} {side:4} C={c}: {w['tok_s']:.1f} tok/s, "
                          f"TTFT p50 {w['ttft_p50'] * 1000:.0f} ms", flush=True)
    finally:
        ours.stop()
        peer.stop()

    rows = []
    for c in args.concurrency:
        for side in ("ours", "vllm"):
            rates = [w["tok_s"] for w in results[side][c]]
            ttft = [w["ttft_p50"] * 1000 for w in results[side][c]]
            rows.append([f"{side} C={c}", f"{min(rates):.1f}", f"{statistics.median(rates):.1f}",
                         f"{max(rates):.1f}", f"{statistics.median(ttft):.0f}"])
        ratio = (statistics.median(w["tok_s"] for w in results["ours"][c])
                 / statistics.median(w["tok_s"] for w in results["vllm"][c]))
        ttft_ratio = (statistics.median(w["ttft_p50"] for w in results["ours"][c])
                      / statistics.median(w["ttft_p50"] for w in results["vllm"][c]))
        rows.append([f"ours/vLLM C={c}", "", f"{ratio:.2f}", "", f"{ttft_ratio:.2f}"])
    print(f"\nAggregate tokens/s ({args.rounds} rounds, {args.tokens} tokens per request, "
          f"dtype {args.dtype}, max_num_seqs {args.max_num_seqs})")
    print(table(["side", "min", "median", "max", "TTFT p50 ms"], rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
