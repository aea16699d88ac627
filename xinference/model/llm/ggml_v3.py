"""Legacy GGML LLaMA files (GGJT v3, "ggmlv3"), converted once to GGUF for llama.cpp.

llama.cpp stopped reading GGML files in August 2023, but the catalogue still lists GGJT v3
LLaMA fine-tunes. Their block formats (k-quants included) are today's, so the conversion
only rewrites the header: it re-types the vocabulary and renames tensors, and copies every
tensor's bytes as they are. The GGUF is cached beside the downloaded file, so it happens
once per worker and leaves with the cache entry.

gguf and numpy are imported inside the functions: importing this module costs nothing.
"""

import math
import mmap
import os
import re
import struct
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Optional, Tuple

from ...errors import InvalidRequestError

# GGML types a GGJT v3 file may hold: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K
# (4 and 5 were formats removed before v3; Q8_1 and Q8_K were never stored).
_FILE_TYPES = frozenset({0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14})
_ALIGN = 32
_BYTE_TOKEN = re.compile(rb"<0x[0-9A-Fa-f]{2}>")


@dataclass
class GGJTTensor:
    name: str
    ggml_type: int
    dims: Tuple[int, ...]  # ggml order: dims[0] is the row length
    offset: int
    nbytes: int
    gguf_name: str = ""


@dataclass
class GGJTModel:
    n_vocab: int
    n_embd: int
    n_mult: int
    n_head: int
    n_layer: int
    n_rot: int
    ftype: int
    vocab: List[Tuple[bytes, float]]
    tensors: List[GGJTTensor]
    n_ff: int = 0  # OpenLLaMA 3B's does not follow from n_mult: read off w1's shape


class _NotGGJTv3(ValueError):
    pass


def _magic_error(head: bytes) -> Optional[str]:
    if len(head) < 8:
        return "it is too short to be a model file"
    magic, (version,) = head[:4], struct.unpack("<I", head[4:8])
    if magic == b"tjgg" and version == 3:
        return None
    if magic == b"tjgg":
        return f"it is GGJT v{version}; only v3 files convert (Q4/Q5/Q8 blocks changed in v3)"
    if magic == b"GGUF":
        return "it is already GGUF; launch it with model_format ggufv2"
    if magic in (b"ggml", b"lmgg", b"fmgg"):
        return "it is an older GGML layout (chatglm.cpp's, or llama.cpp's before GGJT v3)"
    return "it is not a GGML model file (no GGJT v3 magic)"


def read_ggjt_v3(path: str) -> GGJTModel:
    """The header, vocabulary and tensor directory of a GGJT v3 LLaMA file (the data stays
    on disk), each tensor with its GGUF name. Anything else is a 400 saying what it is."""
    import gguf

    try:
        with open(path, "rb") as f:
            why = _magic_error(f.read(8))
            if why:
                raise _NotGGJTv3(why)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                model = _parse(mm, gguf.GGML_QUANT_SIZES)
        # named now, before anything is written, so another model's file fails at once
        names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, model.n_layer)
        for t in model.tensors:
            t.gguf_name = names.get_name(t.name, try_suffixes=(".weight", ".bias")) or ""
            if not t.gguf_name:
                raise _NotGGJTv3(f"tensor {t.name} is not a LLaMA tensor")
            if t.name == "layers.0.feed_forward.w1.weight" and len(t.dims) == 2:
                model.n_ff = t.dims[1]
        if not model.n_ff:
            raise _NotGGJTv3("it has no layers.0.feed_forward.w1.weight (not a LLaMA model)")
        return model
    except struct.error:
        why = "it ends early (truncated download?)"
    except _NotGGJTv3 as e:
        why = str(e)
    raise InvalidRequestError(f"Cannot convert {os.path.basename(path)} (ggmlv3) to GGUF: {why}.",
                              param="model_path")


def _parse(mm: mmap.mmap, quant_sizes: Dict[Any, Tuple[int, int]]) -> GGJTModel:
    hp = struct.unpack_from("<7I", mm, 8)
    n_vocab, pos = hp[0], 8 + 28
    if not 3 <= n_vocab < 1 << 20:
        raise _NotGGJTv3(f"its vocabulary size {n_vocab} is not plausible")
    vocab: List[Tuple[bytes, float]] = []
    for _ in range(n_vocab):
        (n,) = struct.unpack_from("<I", mm, pos)
        (score,) = struct.unpack_from("<f", mm, pos + 4 + n)  # past the end: struct.error
        vocab.append((mm[pos + 4:pos + 4 + n], score))
        pos += 8 + n
    tensors: List[GGJTTensor] = []
    while pos < len(mm):
        n_dims, name_len, ggml_type = struct.unpack_from("<3I", mm, pos)
        if not 1 <= n_dims <= 4 or name_len > 4096 or ggml_type not in _FILE_TYPES:
            raise _NotGGJTv3(f"tensor #{len(tensors)} has a bad header (type {ggml_type})")
        dims = struct.unpack_from(f"<{n_dims}I", mm, pos + 12)
        pos += 12 + 4 * n_dims
        name = mm[pos:pos + name_len].decode("utf-8", "replace")
        pos += name_len + (-(pos + name_len)) % _ALIGN
        block, type_size = quant_sizes[ggml_type]
        if dims[0] % block:
            raise _NotGGJTv3(f"tensor {name}'s rows are not whole {block}-value blocks")
        nbytes = math.prod(dims) // block * type_size
        if pos + nbytes > len(mm):
            raise struct.error("truncated")
        tensors.append(GGJTTensor(name, ggml_type, tuple(dims), pos, nbytes))
        pos += nbytes
    n_vocab, n_embd, n_mult, n_head, n_layer, n_rot, ftype = hp
    return GGJTModel(n_vocab, n_embd, n_mult, n_head, n_layer, n_rot, ftype, vocab, tensors)


# unk, bos, eos as the old export wrote them (" \u2047 ", "", "") and as GGUF names them
_SPECIAL = MappingProxyType({0: (b"<unk>", 2), 1: (b"<s>", 3), 2: (b"</s>", 3)})


def _token(tid: int, text: bytes) -> Tuple[bytes, int]:
    """GGUF text and gguf.TokenType (1 normal, 2 unknown, 3 control, 6 byte) of a token of
    the old SentencePiece export, which wrote byte tokens as the raw byte, controls empty
    and the '\u2581' word marker as a space (GGUF's llama tokenizer wants it back)."""
    if tid in _SPECIAL:
        return _SPECIAL[tid]
    if not text:
        return text, 3
    if (tid <= 258 and len(text) == 1) or _BYTE_TOKEN.fullmatch(text):
        return (b"<0x%02X>" % text[0] if len(text) == 1 else text), 6
    return text.replace(b" ", "\u2581".encode()), 1


def convert_to_gguf(src: str, dst: str, context_length: int, rms_norm_eps: float = 1e-6,
                    progress: Optional[Callable[[float], None]] = None) -> None:
    """Writes `src` (GGJT v3) as a GGUF at `dst`; `progress` gets the fraction written."""
    _write(read_ggjt_v3(src), src, dst, context_length, rms_norm_eps, progress)


def _write(m: GGJTModel, src: str, dst: str, context_length: int, eps: float,
           progress: Optional[Callable[[float], None]]) -> None:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(dst, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    w.add_name(os.path.basename(src).split(".ggml")[0])
    w.add_description("converted from GGJT v3 by xinference")
    w.add_file_type(m.ftype)  # the old ftype numbers are today's llama_ftype
    w.add_context_length(context_length)
    w.add_embedding_length(m.n_embd)
    w.add_block_count(m.n_layer)
    w.add_feed_forward_length(m.n_ff)
    w.add_rope_dimension_count(m.n_embd // m.n_head)
    w.add_head_count(m.n_head)
    w.add_head_count_kv(m.n_head)  # no GQA in LLaMA 1 / OpenLLaMA
    w.add_layer_norm_rms_eps(eps)
    w.add_tokenizer_model("llama")
    tokens = [_token(i, text) for i, (text, _) in enumerate(m.vocab)]
    w.add_token_list([t for t, _ in tokens])
    w.add_token_scores([score for _, score in m.vocab])
    w.add_token_types([tt for _, tt in tokens])
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for t in m.tensors:
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(t.ggml_type)]
        # a uint8 tensor's shape is in bytes for gguf: the row becomes its byte count
        shape = [*reversed(t.dims[1:]), t.dims[0] // block * type_size]
        w.add_tensor_info(t.gguf_name, shape, np.dtype(np.uint8), t.nbytes,
                          raw_dtype=gguf.GGMLQuantizationType(t.ggml_type))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    data = np.memmap(src, dtype=np.uint8, mode="r")
    total, done = sum(t.nbytes for t in m.tensors) or 1, 0
    for t in m.tensors:
        w.write_tensor_data(data[t.offset:t.offset + t.nbytes])
        done += t.nbytes
        if progress is not None:
            progress(done / total)
    w.close()


def gguf_for(path: str, context_length: int,
             progress: Optional[Callable[[float], None]] = None) -> str:
    """The GGUF of the GGJT v3 file at `path`: `<path>.gguf`, converted on first use.

    Checked before anything is written, so a bad file leaves nothing behind; written under
    a temporary name and renamed, so a crash never leaves a half file that looks done; and
    converted under a file lock, so the replicas of one worker convert it once."""
    dst = path + ".gguf"
    if _fresh(path, dst):
        return dst
    model = read_ggjt_v3(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.access(folder, os.W_OK):
        raise InvalidRequestError(f"{os.path.basename(path)} (ggmlv3) must become a GGUF beside "
                                  "it, and its folder is read-only.", param="model_path")
    from filelock import FileLock

    with FileLock(dst + ".lock"):
        if _fresh(path, dst):  # another replica converted it while this one waited
            return dst
        tmp = f"{dst}.{os.getpid()}.tmp"
        try:
            _write(model, path, tmp, context_length, 1e-6, progress)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())  # the rename must never publish a file still in cache
            os.replace(tmp, dst)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return dst


def _fresh(src: str, dst: str) -> bool:
    # a re-downloaded source is newer than its old conversion
    try:
        return os.stat(dst).st_mtime >= os.stat(src).st_mtime
    except FileNotFoundError:
        return False
