"""Tiny random-weight LLaMA files in the legacy GGJT v3 ("GGMLv3") format, built at test time.

Laid out as llama.cpp wrote them until August 2023 (all little-endian):
  u32 magic 0x67676a74 ('ggjt', bytes b'tjgg' on disk), u32 version 3
  7 x u32 hparams: n_vocab n_embd n_mult n_head n_layer n_rot ftype
  n_vocab x {u32 len, bytes text, f32 score}
  tensors to EOF: {u32 n_dims, u32 name_len, u32 ggml_type, u32 ne[n_dims], bytes name,
                   zeros up to a 32-byte file offset, data}
  ne[0] is the row length (the reversed numpy shape).

The vocabulary is what the old SentencePiece export wrote: ids 0-2 are unk/bos/eos (unk as
" \u2047 ", bos/eos empty), 3..258 the 256 byte tokens as single raw bytes, then text pieces
with the SentencePiece '\u2581' written back as a space.

numpy is imported inside the writer so that importing this module costs nothing.
"""

from __future__ import annotations

import struct
from typing import List, Tuple

GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2}
# the file's ftype: ALL_F32, MOSTLY_F16, MOSTLY_Q4_0
FTYPES = {"f32": 0, "f16": 1, "q4_0": 2}
QK4_0 = 32


def _q4_0(x) -> bytes:
    """ggml's reference Q4_0 rows: per 32 values an f16 scale and 16 bytes of nibbles."""
    import numpy as np

    blocks = x.astype(np.float32).reshape(-1, QK4_0)
    peak = blocks[np.arange(len(blocks)), np.argmax(np.abs(blocks), axis=1)]
    d = peak / -8.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip((blocks * inv[:, None] + 8.5).astype(np.int32), 0, 15).astype(np.uint8)
    out = np.empty((len(blocks), 18), dtype=np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)  # value j in the low nibble, j + 16 in the high
    return out.tobytes()


def vocab() -> List[Tuple[bytes, float]]:
    items = [(" \u2047 ".encode(), 0.0), (b"", 0.0), (b"", 0.0)]
    items += [(bytes([b]), 0.0) for b in range(256)]
    pieces = [" ", "e", "t", "a", "o", "h", "l", "r", "d", "w", "n", "s", "i",
              "he", "ll", "or", "th", " t", " a", " w", " h", " the", " hello", " world",
              "hello", "world", "llo", "ld", "in", "ing", " is", " of", " and", "er", "an"]
    pieces += [chr(c) for c in range(ord("b"), ord("z") + 1) if chr(c) not in pieces]
    pieces += [" " + chr(c) for c in range(ord("a"), ord("z") + 1) if " " + chr(c) not in pieces]
    # SentencePiece scores: the higher, the earlier a merge applies
    items += [(p.encode(), -float(i)) for i, p in enumerate(pieces)]
    return items


def write_tiny_ggml(path: str, kind: str = "f32", seed: int = 0, n_embd: int = 64,
                    n_head: int = 4, n_layer: int = 2, n_mult: int = 32) -> str:
    """Writes a LLaMA of `kind` (f32, f16, q4_0) to `path`; returns the path."""
    import numpy as np

    rng = np.random.default_rng(seed)
    items = vocab()
    n_vocab = len(items)
    # the legacy feed-forward size (an OpenLLaMA file's n_ff does not follow it; readers
    # take it from the w1 tensor)
    n_ff = ((2 * (4 * n_embd) // 3 + n_mult - 1) // n_mult) * n_mult
    shapes = [("tok_embeddings.weight", (n_vocab, n_embd)), ("norm.weight", (n_embd,)),
              ("output.weight", (n_vocab, n_embd))]
    for i in range(n_layer):
        p = f"layers.{i}."
        shapes += [(p + "attention.wq.weight", (n_embd, n_embd)),
                   (p + "attention.wk.weight", (n_embd, n_embd)),
                   (p + "attention.wv.weight", (n_embd, n_embd)),
                   (p + "attention.wo.weight", (n_embd, n_embd)),
                   (p + "attention_norm.weight", (n_embd,)),
                   (p + "feed_forward.w1.weight", (n_ff, n_embd)),
                   (p + "feed_forward.w2.weight", (n_embd, n_ff)),
                   (p + "feed_forward.w3.weight", (n_ff, n_embd)),
                   (p + "ffn_norm.weight", (n_embd,))]
    with open(path, "wb") as f:
        f.write(struct.pack("<II", 0x67676A74, 3))
        f.write(struct.pack("<7I", n_vocab, n_embd, n_mult, n_head, n_layer, n_embd // n_head,
                            FTYPES[kind]))
        for text, score in items:
            f.write(struct.pack("<I", len(text)) + text + struct.pack("<f", score))
        for name, shape in shapes:
            if len(shape) == 1:  # norms stay f32 in every real file
                arr, ttype = (1.0 + 0.01 * rng.standard_normal(shape)).astype(np.float32), "f32"
            else:
                arr, ttype = (0.02 * rng.standard_normal(shape)).astype(np.float32), kind
            ne = tuple(reversed(shape))
            raw = name.encode()
            f.write(struct.pack(f"<3I{len(ne)}I", len(ne), len(raw), GGML_TYPES[ttype], *ne) + raw)
            f.write(b"\0" * ((-f.tell()) % 32))
            if ttype == "f32":
                f.write(arr.tobytes())
            elif ttype == "f16":
                f.write(arr.astype(np.float16).tobytes())
            else:
                f.write(_q4_0(arr))
    return path
