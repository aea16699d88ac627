"""What a replica will hold in memory, estimated before its process starts.

The figure has three parts: the weights (their size on disk when they are on this
machine, else the catalogue's parameter count times the bits of the quantization),
the KV cache an engine allocates up front (tokens it reserves times the bytes one
token takes in every layer, read from the GGUF header or config.json), and what the
engine's process holds besides (interpreter, libraries, compute buffers; measured,
see each engine's `memory_overhead`). It errs high: sliding-window layers are counted
at full context.
"""

import json
import os
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any, Dict, Optional, Tuple

GiB = float(1 << 30)
MiB = 1 << 20


@dataclass(frozen=True)
class MemoryNeed:
    weights: int
    kv_cache: int = 0
    overhead: int = 0
    kv_tokens: int = 0  # tokens the KV cache holds (0: none, or unknown)
    # where the weights figure comes from: "disk" (the files here) or "catalogue"
    basis: str = "disk"

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    def as_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "total": self.total}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "MemoryNeed":
        return cls(**{k: data[k] for k in ("weights", "kv_cache", "overhead", "kv_tokens", "basis") if k in data})

    def text(self) -> str:
        parts = [f"weights {gib(self.weights)}" + (" (catalogue estimate)" if self.basis == "catalogue" else "")]
        if self.kv_cache:
            parts.append(f"KV cache {gib(self.kv_cache)} for {self.kv_tokens} tokens")
        parts.append(f"engine {gib(self.overhead)}")
        return f"{gib(self.total)} ({', '.join(parts)})"


def gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


def disk_bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def kv_bytes_per_token(path: str, element_bytes: int = 2) -> Optional[int]:
    """Bytes one token of context takes in the KV cache (keys and values of every
    layer), from a GGUF file's header or a folder's config.json; None when the file
    does not say (or is in another format)."""
    try:
        if os.path.isdir(path):
            return _from_config(os.path.join(path, "config.json"), element_bytes)
        return _from_gguf(path, element_bytes)
    except Exception:  # noqa: BLE001 - a header this cannot read: the size is unknown
        return None


def _from_config(config_path: str, element_bytes: int) -> Optional[int]:
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    config = config.get("text_config") or config  # multimodal configs nest the LM's
    layers, heads = config.get("num_hidden_layers"), config.get("num_attention_heads")
    if not layers or not heads:
        return None
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return int(2 * layers * kv_heads * head_dim * element_bytes)


def _from_gguf(path: str, element_bytes: int) -> Optional[int]:
    meta = gguf_metadata(path)
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        return None

    def field(key: str) -> Any:
        return meta.get(f"{arch}.{key}")

    layers, heads = field("block_count"), field("attention.head_count")
    if not layers or not heads:
        return None
    kv_heads = field("attention.head_count_kv") or heads
    head_max = heads if isinstance(heads, int) else max(heads)
    k_len = field("attention.key_length") or field("embedding_length") // head_max
    v_len = field("attention.value_length") or k_len
    per_layer = kv_heads if isinstance(kv_heads, list) else [kv_heads] * int(layers)
    return int(sum(n * (k_len + v_len) for n in per_layer) * element_bytes)


# GGUF value types (the format's spec): struct codes of the fixed-size ones
_SCALARS = MappingProxyType({0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"})
_STRING, _ARRAY = 8, 9
_SMALL_ARRAY = 4096  # arrays kept (per-layer figures); longer ones (a vocabulary) are skipped


def gguf_metadata(path: str) -> Dict[str, Any]:
    """The key/value header of a GGUF file: scalars, strings and short arrays.

    gguf's GGUFReader parses every tensor and every vocabulary entry into numpy views,
    which takes ~17 s for Gemma 3's 262k-token vocabulary here; this reads the header
    alone and skips long arrays by their lengths (~0.1 s)."""
    import mmap
    import struct

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ValueError("not a GGUF file")
        version, _tensors, count = struct.unpack_from("<IQQ", buf, 4)
        if version < 2:
            raise ValueError(f"GGUF version {version} is not supported")
        pos, size = 24, len(buf)

        def string(at: int) -> Tuple[str, int]:
            (n,) = struct.unpack_from("<Q", buf, at)
            if at + 8 + n > size:
                raise ValueError("truncated GGUF header")
            return bytes(buf[at + 8:at + 8 + n]).decode("utf-8", "replace"), at + 8 + n

        def value(kind: int, at: int, keep: bool) -> Tuple[Any, int]:
            if kind in _SCALARS:
                code = "<" + _SCALARS[kind]
                return struct.unpack_from(code, buf, at)[0], at + struct.calcsize(code)
            if kind == _STRING:
                if keep:
                    return string(at)
                (n,) = struct.unpack_from("<Q", buf, at)
                return None, at + 8 + n
            if kind == _ARRAY:
                item, n = struct.unpack_from("<IQ", buf, at)
                at += 12
                keep = keep and n <= _SMALL_ARRAY
                if item in _SCALARS and not keep:  # skip fixed-size items at once
                    return None, at + n * struct.calcsize("<" + _SCALARS[item])
                items = []
                for _ in range(n):
                    v, at = value(item, at, keep)
                    items.append(v)
                    if at > size:
                        raise ValueError("truncated GGUF header")
                return (items if keep else None), at
            raise ValueError(f"unknown GGUF value type {kind}")

        meta: Dict[str, Any] = {}
        for _ in range(count):
            key, pos = string(pos)
            (kind,) = struct.unpack_from("<I", buf, pos)
            meta[key], pos = value(kind, pos + 4, True)
        return meta


def catalogue_weights(size_in_billions: Any, bits_per_weight: float) -> int:
    """Weights that are not on this machine yet: parameters times bits."""
    try:
        params = float(str(size_in_billions).replace("_", ".")) * 1e9
    except ValueError:
        return 0
    return int(params * bits_per_weight / 8)


def gguf_bits_per_weight(quantization: str) -> float:
    """Bits per weight of a GGUF quantization's main tensor type (ggml's block sizes,
    as the gguf package lists them); K-quant mixes (Q4_K_M) keep a few tensors at a
    higher type, which this leaves out. 16 when unknown."""
    try:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    except ImportError:
        return 16.0
    name = quantization.upper()
    for suffix in ("_XS", "_S", "_M", "_L"):  # the mix suffixes of K-quants
        if name.endswith(suffix) and "_K" in name:
            name = name[: -len(suffix)]
    qtype = getattr(GGMLQuantizationType, name, None)
    if qtype is None or qtype not in GGML_QUANT_SIZES:
        return 16.0
    block, size = GGML_QUANT_SIZES[qtype]
    return 8.0 * size / block
