"""LoRA adapters applied per row of a batch.

peft can run a batch whose rows use different adapters (`adapter_names=`), but it
re-registers hooks on every LoRA module at every forward and splits each layer's
input per adapter; on the embedded Gemma that cut a batch of 8 from 196 to 57
tokens/s even when no row used an adapter (benchmarks/bench_lora.py). Here each
targeted `nn.Linear` is wrapped once at load: its adapters' A and B matrices are
stacked (index 0 is "no adapter", all zeros), and a forward gathers each row's pair and
adds `x @ A @ B` with two batched matmuls. A batch without adapter rows skips the
LoRA path entirely.

Reads adapters saved by peft (`adapter_config.json` + `adapter_model.safetensors` or
`.bin`): plain LoRA on linear layers. Anything else (DoRA, biases, embedding
adapters, `modules_to_save`) is refused at launch rather than served wrong.
"""

import json
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .....errors import InvalidRequestError
from .....types import LoRASpec

_KEY = re.compile(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$")


class _Rows:
    """Which adapters the rows of the current forward use: `single` when they all use
    the same one (its position), else `mask` ([rows, 1, adapters * rank], 1 on each
    row's own adapter's columns), or neither when no row uses one."""

    single: Optional[int] = None
    mask: Optional[torch.Tensor] = None


class LoRALinear(nn.Module):
    """A linear layer plus every adapter's A and B, side by side along the rank:
    `a` [in, adapters * rank], `b` [adapters * rank, out] (scale folded in). One
    matmul computes every adapter's `x @ A` at once; the mask keeps each row's own
    columns; a second matmul adds `@ B`. No per-row gather, no copy."""

    def __init__(self, base: nn.Linear, rows: _Rows, a: torch.Tensor, b: torch.Tensor, rank: int):
        super().__init__()
        self.base = base
        self._rows = rows
        self.a = a
        self.b = b
        self._rank = rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        rows = self._rows
        if rows.single is not None:
            cols = slice(rows.single * self._rank, (rows.single + 1) * self._rank)
            return y + (x @ self.a[:, cols]) @ self.b[cols]
        if rows.mask is None:
            return y
        return y + ((x @ self.a) * rows.mask) @ self.b


class LoRASet:
    """Adapters wrapped into a model; `select` before each forward."""

    def __init__(self, model: nn.Module, specs: Sequence[LoRASpec]):
        self._order = {spec.lora_name: i for i, spec in enumerate(specs)}
        self._rows = _Rows()
        weights = [_read(spec) for spec in specs]
        targets = sorted({module for w in weights for module in w})
        self._rank = max(a.shape[0] for w in weights for a, _ in w.values())
        self._dtype = next(p.dtype for p in model.parameters())
        modules = dict(model.named_modules())
        for name in targets:
            linear = modules.get(name)
            if not isinstance(linear, nn.Linear):
                raise InvalidRequestError(
                    f"A LoRA adapter targets {name!r}, which is not a linear layer of this model "
                    "(an adapter for another architecture?).",
                    param="peft_model_config",
                )
            a, b = _stack(linear, [w.get(name) for w in weights], self._rank)
            wrapped = LoRALinear(linear, self._rows, a, b, self._rank)
            parent_name, _, attr = name.rpartition(".")
            setattr(modules[parent_name] if parent_name else model, attr, wrapped)

    def select(self, adapters: Sequence[Optional[str]], device: Any) -> None:
        order = [self._order[a] if a else -1 for a in adapters]
        distinct = set(order)
        self._rows.single = order[0] if len(distinct) == 1 and order[0] >= 0 else None
        self._rows.mask = None
        if len(distinct) > 1:
            mask = torch.zeros(len(order), 1, len(self._order) * self._rank, dtype=self._dtype)
            for row, k in enumerate(order):
                if k >= 0:
                    mask[row, 0, k * self._rank : (k + 1) * self._rank] = 1
            self._rows.mask = mask.to(device)


def _read(spec: LoRASpec) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """module name -> (A [r, in], B [out, r] times the adapter's scale)."""
    folder = Path(spec.local_path)
    config = json.loads((folder / "adapter_config.json").read_text())
    _check(spec, config)
    tensors = _load_tensors(folder)
    pairs: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        m = _KEY.match(key)
        if m is None:
            raise InvalidRequestError(
                f"LoRA {spec.lora_name!r}: unexpected weight {key!r} (only LoRA A/B matrices "
                "of linear layers are supported).",
                param="peft_model_config",
            )
        pairs.setdefault(m.group(1), {})[m.group(2)] = value
    out = {}
    for module, pair in pairs.items():
        a, b = pair["A"], pair["B"]
        r = a.shape[0]
        alpha = float(config.get("lora_alpha") or r)
        scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        out[module] = (a.float(), b.float() * scale)
    return out


def _check(spec: LoRASpec, config: Dict[str, Any]) -> None:
    unsupported = {
        "peft_type": config.get("peft_type", "LORA") != "LORA",
        "use_dora": bool(config.get("use_dora")),
        "bias": config.get("bias", "none") != "none" or bool(config.get("lora_bias")),
        "modules_to_save": bool(config.get("modules_to_save")),
        "fan_in_fan_out": bool(config.get("fan_in_fan_out")),
        "alpha_pattern": bool(config.get("alpha_pattern")),
    }
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise InvalidRequestError(
            f"LoRA {spec.lora_name!r} uses {', '.join(bad)}; only plain LoRA on linear layers "
            "is supported.",
            param="peft_model_config",
        )


def _load_tensors(folder: Path) -> Dict[str, torch.Tensor]:
    if (folder / "adapter_model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "adapter_model.safetensors"))
    if (folder / "adapter_model.bin").is_file():
        return torch.load(str(folder / "adapter_model.bin"), map_location="cpu", weights_only=True)
    raise InvalidRequestError(
        f"{folder} has no adapter_model.safetensors (or .bin).", param="peft_model_config"
    )


def _stack(linear: nn.Linear, pairs: List[Optional[Tuple[torch.Tensor, torch.Tensor]]], rank: int):
    """A [in, n * rank], B [n * rank, out]: adapter i owns columns (rows of B)
    i*rank .. (i+1)*rank; an adapter of lower rank, or one that skips this layer, leaves
    zeros there."""
    weight = linear.weight
    a = torch.zeros(linear.in_features, len(pairs) * rank, dtype=weight.dtype)
    b = torch.zeros(len(pairs) * rank, linear.out_features, dtype=weight.dtype)
    for i, pair in enumerate(pairs):
        if pair is None:
            continue
        pa, pb = pair
        if pa.shape[1] != linear.in_features or pb.shape[0] != linear.out_features:
            raise InvalidRequestError(
                f"A LoRA adapter's matrices ({tuple(pa.shape)}, {tuple(pb.shape)}) do not fit the "
                f"layer ({linear.in_features} -> {linear.out_features}): an adapter for another model?",
                param="peft_model_config",
            )
        r = pa.shape[0]
        a[:, i * rank : i * rank + r] = pa.t().to(weight.dtype)
        b[i * rank : i * rank + r, :] = pb.t().to(weight.dtype)
    return a.to(weight.device), b.to(weight.device)
