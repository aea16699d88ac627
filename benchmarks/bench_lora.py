"""What LoRA adapters cost the Transformers engine, and whether rows for different
adapters should share a batch or wait for batches of their own.

In-process (no server), on the embedded Gemma 3 270M as a Hugging Face folder (made by
bench_transformers.py), with random rank-16 adapters on every projection. Each wave
sends C concurrent greedy requests of a fixed length; aggregate tokens/s:

  plain       the engine without peft, C base requests
  base        the engine with adapters loaded, C base requests
  one         C requests for one adapter
  mixed       C/2 requests for adapter a and C/2 for adapter b, in one batch
  grouped     the same requests as two waves of C/2, one per adapter (what grouping
              per adapter would do at best)

Usage: python benchmarks/bench_lora.py [--tokens 64] [--rounds 3] [--concurrency 8]
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

DEFAULT_FOLDER = Path.home() / ".cache" / "xinference-bench" / "gemma-3-270m-hf"
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapter(folder: Path, out: Path, seed: int) -> str:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=PROJECTIONS,
                                            task_type="CAUSAL_LM"))
    with torch.no_grad():  # peft starts lora_B at zero: an adapter that changes nothing
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    peft.save_pretrained(str(out))
    return str(out)


async def load(folder: Path, loras: Dict[str, str], threads: int, seqs: int):
    from xinference.model.llm.engines.transformers.engine import TransformersEngine
    from xinference.model.llm.family import get_family, match_spec
    from xinference.types import LoRASpec

    family = get_family("gemma-3")
    spec, quant = match_spec(family, "pytorch")
    engine = TransformersEngine(str(folder), family, spec, quant, 0, n_threads=threads, max_num_seqs=seqs,
                                lora_list=[LoRASpec(lora_name=n, local_path=p) for n, p in loras.items()])
    await engine.load()
    return engine


async def wave(engine, adapters: List[Optional[str]], tokens: int) -> float:
    from xinference.types import SamplingParams

    async def one(i: int, lora: Optional[str]) -> int:
        ids = engine.tokenize(f"Story number {i}: once upon a time", True)
        params = SamplingParams(temperature=0, max_tokens=tokens, ignore_eos=True, lora_name=lora)
        count = 0
        async for delta in engine.generate(ids, params):
            count = delta.completion_tokens or count
        return count

    start = time.perf_counter()
    done = await asyncio.gather(*(one(i, a) for i, a in enumerate(adapters)))
    return sum(done) / (time.perf_counter() - start)


async def main(args) -> None:
    c, half = args.concurrency, args.concurrency // 2
    results: Dict[str, List[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        loras = {n: make_adapter(args.model_dir, Path(tmp) / n, s) for n, s in (("a", 1), ("b", 2))}
        plain = await load(args.model_dir, {}, args.threads, c)
        adapted = await load(args.model_dir, loras, args.threads, c)
        print(f"engine: dtype={adapted.dtype} device={adapted.device}", flush=True)
        plans = {  # name -> (engine, waves run one after another)
            "plain": (plain, [[None] * c]),
            "base": (adapted, [[None] * c]),
            "one": (adapted, [["a"] * c]),
            "mixed": (adapted, [["a", "b"] * half]),
            "grouped": (adapted, [["a"] * half, ["b"] * half]),
        }
        for engine, waves in plans.values():  # warm-up
            await wave(engine, waves[0][:1], 4)
        # Round-robin, so that a machine slowing down or speeding up hits every kind alike.
        for _ in range(args.rounds):
            for name, (engine, waves) in plans.items():
                start = time.perf_counter()
                for adapters in waves:
                    await wave(engine, adapters, args.tokens)
                tok_s = c * args.tokens / (time.perf_counter() - start)
                results.setdefault(name, []).append(tok_s)
                print(f"  {name}: {tok_s:.1f} tok/s", flush=True)
        await plain.close()
        await adapted.close()
    print(f"\n{'wave':<10}{'min':>8}{'median':>8}{'max':>8}  tok/s, C={c}, {args.tokens} tokens each")
    for name, values in results.items():
        print(f"{name:<10}{min(values):>8.1f}{statistics.median(values):>8.1f}{max(values):>8.1f}")
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nmixed / grouped = {med['mixed'] / med['grouped']:.2f}   "
          f"one / plain = {med['one'] / med['plain']:.2f}   "
          f"mixed / plain = {med['mixed'] / med['plain']:.2f}   base / plain = {med['base'] / med['plain']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    asyncio.run(main(parser.parse_args()))
