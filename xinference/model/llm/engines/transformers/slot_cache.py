"""The KV cache of a continuously batched transformers model.

`SlotKV` keeps up to `rows` sequences in one tensor per layer, `[rows, heads, columns,
head_dim]`, right-aligned on a shared column axis: every sequence's newest token sits
just left of `end`, the column the next forward writes. A decode step therefore
writes one column for every row in place and attends over `[start, end]`, where
`start` is where the longest row begins; shorter rows are masked on the left. Rows
are kept contiguous (`0..active`), so a forward sees a plain slice, never a gather.

Compared with Hugging Face's `DynamicCache`, which concatenates (copies) the whole
cache at every step and can only be merged or split by copying every row, a join
here copies one row and a leave moves one row.

`SlotCache` presents a `SlotKV` to a Hugging Face model as a `Cache`. Masks and
positions are built by the model from the 2D attention mask and the sizes the
cache reports, so sliding-window layers (Gemma, Mistral) stay correct: their window
is counted in columns, and within a row columns are positions.
"""

from typing import Any, List, Optional, Sequence, Tuple

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

MIN_CAPACITY = 64


class SlotKV:
    def __init__(self, rows: int, n_layers: int, capacity: int = MIN_CAPACITY):
        self.rows = rows
        self.capacity = max(capacity, 1)
        self.keys: List[Optional[torch.Tensor]] = [None] * n_layers
        self.values: List[Optional[torch.Tensor]] = [None] * n_layers
        self.lengths = [0] * rows
        self.active = 0
        self.end = 0
        # set by prepare() for the forward in progress
        self._q = 0
        self._start = 0
        self._added: Sequence[int] = ()

    @property
    def start(self) -> int:
        return self.end - max(self.lengths[: self.active], default=0)

    # ---- one forward -----------------------------------------------------------

    def prepare(self, added: Sequence[int], device: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        """Readies a forward of `len(added)` rows (0..b) with q = max(added) new columns,
        row r bringing `added[r]` real tokens (left-padded to q). Returns the 2D attention
        mask over the columns the forward sees, and the position ids of the new tokens."""
        b, q = len(added), max(added)
        self.active = max(self.active, b)
        self._ensure_room(q)
        start = self.start
        kv_len = self.end + q - start
        old = torch.tensor(self.lengths[:b], dtype=torch.long)
        new = torch.tensor(list(added), dtype=torch.long)
        cols = torch.arange(kv_len)
        mask = cols[None, :] >= (kv_len - old - new)[:, None]
        pos = (old[:, None] + torch.arange(q)[None, :] - (q - new)[:, None]).clamp(min=0)
        self._q, self._start, self._added = q, start, added
        return mask.to(device), pos.to(device)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        kbuf, vbuf = self.keys[layer], self.values[layer]
        if kbuf is None or vbuf is None:
            shape = (self.rows, k.shape[1], self.capacity, k.shape[3])
            # zeros, not empty: masked columns get weight 0, and 0 * NaN garbage is NaN
            kbuf = self.keys[layer] = torch.zeros(shape, dtype=k.dtype, device=k.device)
            vbuf = self.values[layer] = torch.zeros(shape, dtype=v.dtype, device=v.device)
        b, q, e = k.shape[0], k.shape[2], self.end
        kbuf[:b, :, e : e + q] = k
        vbuf[:b, :, e : e + q] = v
        return kbuf[:b, :, self._start : e + q], vbuf[:b, :, self._start : e + q]

    def commit(self) -> None:
        """After the forward: the new columns belong to the rows now."""
        for r, n in enumerate(self._added):
            self.lengths[r] += n
        self.end += self._q
        self._q, self._added = 0, ()

    def seen(self) -> int:
        """Columns before the ones the forward in progress writes (for mask sizes)."""
        return self.end - self._start

    # ---- rows --------------------------------------------------------------------

    def adopt(self, src: "SlotKV", src_row: int) -> int:
        """Appends `src`'s row as a new row here (a prefilled sequence joins the batch)."""
        n = src.lengths[src_row]
        if self.active == 0:
            self.end = 0
        if self.end < n:
            self._relayout(room_left=n - self.end, extra=0)
        dst = self.active
        for layer in range(len(self.keys)):
            sk, sv = src.keys[layer], src.values[layer]
            if sk is None or sv is None:
                continue
            if self.keys[layer] is None:
                shape = (self.rows, sk.shape[1], self.capacity, sk.shape[3])
                self.keys[layer] = torch.zeros(shape, dtype=sk.dtype, device=sk.device)
                self.values[layer] = torch.zeros(shape, dtype=sv.dtype, device=sv.device)
            kbuf, vbuf = self.keys[layer], self.values[layer]
            assert kbuf is not None and vbuf is not None
            kbuf[dst, :, self.end - n : self.end] = sk[src_row, :, src.end - n : src.end]
            vbuf[dst, :, self.end - n : self.end] = sv[src_row, :, src.end - n : src.end]
        self.lengths[dst] = n
        self.active += 1
        return dst

    def remove(self, row: int) -> None:
        """Drops a row; the last row moves into its place (callers mirror the swap)."""
        last = self.active - 1
        if row != last:
            s = self.start
            for kbuf, vbuf in zip(self.keys, self.values):
                if kbuf is not None and vbuf is not None:
                    kbuf[row, :, s : self.end] = kbuf[last, :, s : self.end]
                    vbuf[row, :, s : self.end] = vbuf[last, :, s : self.end]
            self.lengths[row] = self.lengths[last]
        self.lengths[last] = 0
        self.active = last

    # ---- columns -----------------------------------------------------------------

    def _ensure_room(self, q: int) -> None:
        if self.end + q <= self.capacity:
            return
        self._relayout(room_left=0, extra=q)

    def _relayout(self, room_left: int, extra: int) -> None:
        """Moves the used columns to `[room_left, room_left + used)`, growing the buffers
        when they are too small (or shrinking them when mostly idle)."""
        start = self.start
        used = self.end - start
        need = room_left + used + extra
        capacity = self.capacity
        if need > capacity:
            capacity = max(need, capacity * 2)
        elif self.active == 0 or need < capacity // 4:
            capacity = max(MIN_CAPACITY, need * 2)
        for i, (kbuf, vbuf) in enumerate(zip(self.keys, self.values)):
            if kbuf is None or vbuf is None:
                continue
            if capacity == self.capacity:
                # in place: clone the used block first, the ranges may overlap
                kbuf[:, :, room_left : room_left + used] = kbuf[:, :, start : self.end].clone()
                vbuf[:, :, room_left : room_left + used] = vbuf[:, :, start : self.end].clone()
                continue
            shape = (kbuf.shape[0], kbuf.shape[1], capacity, kbuf.shape[3])
            nk = torch.zeros(shape, dtype=kbuf.dtype, device=kbuf.device)
            nv = torch.zeros(shape, dtype=vbuf.dtype, device=vbuf.device)
            nk[:, :, room_left : room_left + used] = kbuf[:, :, start : self.end]
            nv[:, :, room_left : room_left + used] = vbuf[:, :, start : self.end]
            self.keys[i], self.values[i] = nk, nv
        self.capacity = capacity
        self.end = room_left + used

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values) if t is not None)


class _SlotLayer(CacheLayerMixin):
    is_sliding = False

    def __init__(self, kv: SlotKV, index: int):
        super().__init__()
        self._kv = kv
        self._index = index
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        return None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        return self._kv.write(self._index, key_states, value_states)

    def get_mask_sizes(self, query_length: int) -> Tuple[int, int]:
        return self._kv.seen() + query_length, 0

    def get_seq_length(self) -> int:
        return self._kv.seen()

    def get_max_length(self) -> int:
        return -1


class SlotCache(Cache):
    """A `SlotKV` as the `past_key_values` of a Hugging Face model."""

    def __init__(self, kv: SlotKV):
        super().__init__(layers=[_SlotLayer(kv, i) for i in range(len(kv.keys))])
        self.kv = kv
